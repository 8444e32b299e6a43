import assert from "node:assert/strict";
import type { Gpu } from "../core/gpu.ts";
import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { fixedSubgroupSize, gemv, GEMV_MAX_BATCH, type GemvForm, recurrentStep } from "../kernels/decode.ts";
import { gemvRef, recurrentStepRef } from "../kernels/decode_ref.ts";
import { f16BitsToF32, f32ToF16Bits } from "../core/half.ts";
import { TnlError } from "../core/errors.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";

// GEMVs and the recurrence are reductions: ‖Δ‖/‖ref‖ ≤ 1e-5 against float64.

interface GemvCase {
  nb: number;
  out: number;
  in: number;
  mode: "plain" | "norm" | "gate" | "glu";
  beta?: number;
  form?: GemvForm;
  /** weights stored as f16 (the reference uses the same rounded weights, so the bound is unchanged) */
  f16?: boolean;
}

async function checkGemv(gpu: Gpu, c: GemvCase, rng: Rng) {
  const { nb, out } = c, inF = c.in;
  // Inputs laid out as the decode step lays them out: x [nb, in]; the gate reads o [nb, in] and u = the
  // last quarter of qkvu [nb, 4·in]; SGLU reads h = [h1 | h2] [nb, 2·in]; a scalar offset into y.
  let aStride = inF, aOffset = 0, bStride = inF, bOffset = 0;
  let aLen = nb * inF, bLen = 0;
  if (c.mode === "gate") [bStride, bOffset, bLen] = [4 * inF, 3 * inF, nb * 4 * inF];
  if (c.mode === "glu") {
    [aStride, bStride, bOffset, aLen, bLen] = [2 * inF, 2 * inF, inF, nb * 2 * inF, nb * 2 * inF];
  }
  if (c.mode === "glu") aOffset = 0;
  const ha = rng.uniformArray(aLen, -2, 2);
  const hb = bLen ? rng.uniformArray(bLen, -2, 2) : null;
  let hw = rng.uniformArray(out * inF);
  const hw16 = c.f16 ? Uint16Array.from(hw, (x) => f32ToF16Bits(x)) : null;
  if (hw16) hw = Float32Array.from(hw16, (h) => f16BitsToF32(h));
  const yStride = out + 3, yOffset = 1;
  const hy = rng.uniformArray(yOffset + nb * yStride);
  const a = Tensor.from(gpu, ha, [aLen], "f32", "a");
  const bT = hb ? Tensor.from(gpu, hb, [bLen], "f32", "b") : undefined;
  const w = hw16
    ? Tensor.from(gpu, hw16, [out, inF], "f16", "w16")
    : Tensor.from(gpu, hw, [out, inF], "f32", "w");
  const y = Tensor.from(gpu, hy, [hy.length], "f32", "y");
  const norm = c.mode === "norm" || c.mode === "gate";
  const args = {
    nb,
    out,
    in: inF,
    norm,
    beta: c.beta ?? 0,
    aOffset,
    aStride,
    bOffset,
    bStride,
    yOffset,
    yStride,
    form: c.form,
  };
  gpu.run("gemv test", (step) => gemv(step, { ...args, a, b: bT, w, y }));
  const got = await y.readF32();
  const ref = gemvRef(ha, hb, hw, hy, args);
  assertClose(got, ref, 1e-5, `gemv ${JSON.stringify(c)}`);
  [a, bT, w, y].forEach((t) => t?.destroy());
}

Deno.test(
  "GEMV (plain, fused SRMSNorm, gate, SGLU product) vs float64, batches 1..8, odd sizes, both row sums",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(70);
    const fixed = fixedSubgroupSize(gpu) > 0;
    // The workgroup tree, and one subgroup per row where the adapter has one subgroup size (lavapipe: 8).
    const forms: GemvForm[] = fixed ? ["tree", "subgroup"] : ["tree"];
    if (!fixed) {
      assert.throws(
        () =>
          gpu.run(
            "x",
            (step) =>
              gemv(step, {
                a: dummy(gpu),
                w: dummy(gpu),
                y: dummy(gpu),
                nb: 1,
                out: 1,
                in: 1,
                form: "subgroup",
              }),
          ),
        /subgroup form needs subgroups of one fixed size/,
      );
    }
    for (const form of forms) {
      for (const mode of ["plain", "norm", "gate", "glu"] as const) {
        for (const nb of [1, 3, GEMV_MAX_BATCH]) {
          await checkGemv(gpu, { nb, out: 37, in: 64, mode, form }, rng);
          await checkGemv(gpu, { nb, out: 5, in: 23, mode, beta: 1, form }, rng); // scalar path
        }
      }
      await checkGemv(gpu, { nb: 1, out: 1, in: 1, mode: "norm", form }, rng);
      await checkGemv(gpu, { nb: 2, out: 300, in: 1024, mode: "norm", form }, rng); // 64 lanes per row
      await checkGemv(gpu, { nb: 2, out: 70, in: 2816, mode: "glu", beta: 1, form }, rng);
      await checkGemv(gpu, { nb: 1, out: 33, in: 4 * 71, mode: "gate", form }, rng); // unrolled loop + tail
    }
  },
);

Deno.test(
  "GEMV with f16 weights vs float64 on the same rounded weights, every mode and form",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(72);
    const forms: GemvForm[] = fixedSubgroupSize(gpu) > 0 ? ["tree", "subgroup"] : ["tree"];
    for (const form of forms) {
      for (const mode of ["plain", "norm", "gate", "glu"] as const) {
        for (const nb of [1, 3, GEMV_MAX_BATCH]) {
          await checkGemv(gpu, {
            nb,
            out: 37,
            in: 64,
            mode,
            form,
            f16: true,
          }, rng);
        }
      }
      await checkGemv(gpu, { nb: 2, out: 300, in: 1024, mode: "norm", form, f16: true }, rng);
      await checkGemv(gpu, { nb: 1, out: 70, in: 2816, mode: "glu", beta: 1, form, f16: true }, rng);
      await checkGemv(gpu, { nb: 1, out: 33, in: 4 * 71, mode: "gate", form, f16: true }, rng);
    }
    // Rows that are not whole vec4 cannot be read as f16 quads: refused, naming the weights.
    await assert.rejects(
      () => checkGemv(gpu, { nb: 1, out: 5, in: 23, mode: "plain", f16: true }, rng),
      (e) => e instanceof TnlError && e.message.includes("'w16'") && e.message.includes("multiple of 4"),
    );
  },
);

const dummy = (gpu: Gpu) => Tensor.from(gpu, new Float32Array(4), [4], "f32", "dummy");

Deno.test("GEMV cuts output rows to the binding limit", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 4096 }); // 1024 floats: 16 rows of 64 per binding
  try {
    await checkGemv(gpu, { nb: 2, out: 50, in: 64, mode: "norm" }, new Rng(71));
  } finally {
    gpu.close();
  }
});

async function checkRecurrent(
  gpu: Gpu,
  dims: { B: number; H: number; d: number },
  lrpe: boolean,
  positions: number[],
  rng: Rng,
  columns?: number,
) {
  const { B, H, d } = dims, e = H * d, dk = lrpe ? 2 * d : d;
  const hq = rng.uniformArray(B * 4 * e, -3, 3);
  const hth = lrpe
    ? Float32Array.from({ length: e }, (_, i) => 10000 ** ((-2 * i) / e) * (1 + 0.1 * rng.next()))
    : null;
  const decay = Float32Array.from({ length: H }, (_, h) => Math.fround(Math.exp(-(2 ** -(h + 1)))));
  const kv0 = rng.uniformArray(B * H * dk * d);
  const seq = new Uint32Array(B * 4);
  positions.forEach((p, b) => (seq[b * 4] = p + 1));
  const qkvu = Tensor.from(gpu, hq, [B, 4 * e], "f32", "qkvu");
  const theta = hth ? Tensor.from(gpu, hth, [H, d], "f32", "theta") : null;
  const seqT = Tensor.from(gpu, seq, [B, 4], "u32", "seq");
  const decayT = Tensor.from(gpu, decay, [H], "f32", "decay");
  const kv = Tensor.from(gpu, kv0, [B, H, dk, d], "f32", "kv");
  const o = Tensor.empty(gpu, [B, H, d], "f32", "o");
  gpu.run(
    "recurrent test",
    (step) => recurrentStep(step, { qkvu, theta, seq: seqT, decay: decayT, kv, o, B, H, d, columns }),
  );
  const ref = recurrentStepRef(hq, hth, positions, decay, kv0, dims);
  const label = `${JSON.stringify(dims)} lrpe=${lrpe} positions ${positions} columns ${columns ?? "auto"}`;
  assertClose(await kv.readF32(), ref.kv, 1e-5, `state ${label}`);
  assertClose(await o.readF32(), ref.o, 1e-5, `o ${label}`);
  [qkvu, theta, seqT, decayT, kv, o].forEach((t) => t?.destroy());
}

Deno.test(
  "recurrent step (SiLU, LRPE at each sequence's position, kv ← λkv + kᵀv, o = q·kv) vs float64",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(72);
    for (const lrpe of [true, false]) {
      await checkRecurrent(gpu, { B: 1, H: 1, d: 1 }, lrpe, [0], rng);
      await checkRecurrent(gpu, { B: 2, H: 4, d: 16 }, lrpe, [79, 3], rng);
      await checkRecurrent(gpu, { B: 3, H: 3, d: 5 }, lrpe, [0, 1, 70000], rng);
      await checkRecurrent(gpu, { B: 1, H: 2, d: 128 }, lrpe, [4096], rng); // 4 column slices per head
      await checkRecurrent(gpu, { B: 2, H: 1, d: 48 }, lrpe, [5, 6], rng); // a partial last slice
      // vec4 form (d a multiple of 4): rows per invocation 1 … 16, partial slices, and the scalar form
      await checkRecurrent(gpu, { B: 1, H: 1, d: 256 }, lrpe, [9], rng);
      await checkRecurrent(gpu, { B: 2, H: 2, d: 36 }, lrpe, [1, 2], rng);
      for (const columns of [4, 32, 64]) {
        await checkRecurrent(gpu, { B: 1, H: 2, d: 128 }, lrpe, [77], rng, columns);
      }
      await checkRecurrent(gpu, { B: 1, H: 2, d: 20 }, lrpe, [3], rng, 8);
      await checkRecurrent(gpu, { B: 2, H: 3, d: 7 }, lrpe, [3, 4], rng, 4); // scalar, 2 slices
    }
  },
);

Deno.test("GEMV refuses batches it was not written for", gpuTest, async () => {
  const gpu = await testGpu();
  const t = Tensor.empty(gpu, [9 * 4], "f32", "t");
  assert.throws(
    () => gpu.run("x", (step) => gemv(step, { a: t, w: t, y: t, nb: 9, out: 4, in: 4 })),
    /batch 9/,
  );
  t.destroy();
});
