import assert from "node:assert/strict";
import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { adamw, type AdamWHyper } from "../kernels/adamw.ts";
import { adamwRef } from "../kernels/adamw_ref.ts";
import { colsum, colsumPartialRows, FLAG_CLEAR, gradNorm, partialsFor, sum } from "../kernels/reduce.ts";
import { colsumRef, sumRef } from "../kernels/reduce_ref.ts";
import type { Gpu } from "../core/gpu.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";

// Reductions: ‖Δ‖/‖ref‖ ≤ 1e-5.
const REL = 1e-5;

async function checkSums(gpu: Gpu, rng: Rng) {
  for (const n of [1, 255, 4096, 4097, 70001]) {
    const hx = rng.uniformArray(n);
    const x = Tensor.from(gpu, hx, [n], "f32", "x");
    const out = Tensor.from(gpu, new Float32Array([2, 0]), [2], "f32", "out");
    const partials = Tensor.empty(gpu, [partialsFor(n)], "f32", "partials");
    const step = gpu.step("sum");
    sum(step, x, out, partials, { square: true, alpha: 0.5, beta: 1 });
    step.submit();
    const got = (await out.readF32())[0];
    assertClose(
      [got],
      [2 + 0.5 * sumRef(hx, true)],
      REL,
      `sumsq n=${n} (subgroups ${gpu.features.subgroups})`,
    );
    const step2 = gpu.step("sum2");
    sum(step2, x, out, partials);
    step2.submit();
    assertClose([(await out.readF32())[0]], [sumRef(hx)], REL, `sum n=${n}`);
    [x, out, partials].forEach((t) => t.destroy());
  }
}

Deno.test(
  "sum and sum of squares match float64, with and without subgroups, in binding-sized pieces",
  gpuTest,
  async () => {
    await checkSums(await testGpu(), new Rng(30));
    const small = await openGpu({ disable: ["subgroups"], maxBindingBytes: 65536 });
    try {
      await checkSums(small, new Rng(31));
    } finally {
      small.close();
    }
  },
);

Deno.test("column sums over rows match float64 (one and two stages)", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(32);
  for (const [rows, cols] of [[1, 1], [3, 300], [64, 17], [65, 17], [1000, 33]]) {
    const hx = rng.uniformArray(rows * cols), h0 = rng.uniformArray(cols);
    const x = Tensor.from(gpu, hx, [rows, cols], "f32", "x"),
      out = Tensor.from(gpu, h0, [cols], "f32", "out");
    const pr = colsumPartialRows(rows);
    const partials = Tensor.empty(gpu, [Math.max(1, pr * cols)], "f32", "partials");
    const step = gpu.step("colsum");
    colsum(step, x, out, rows, cols, { alpha: 2, beta: 1, partials });
    step.submit();
    const ref = colsumRef(hx, rows, cols).map((v, i) => 2 * v + h0[i]);
    assertClose(await out.readF32(), ref, REL, `colsum ${rows}x${cols}`);
    [x, out, partials].forEach((t) => t.destroy());
  }
});

Deno.test(
  "gradient norm is deterministic (same bits twice) and flags the first non-finite step",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(33);
    const n = 100_003;
    const hg = rng.uniformArray(n);
    const g = Tensor.from(gpu, hg, [n], "f32", "g"), norm = Tensor.empty(gpu, [1], "f32", "norm");
    const flag = Tensor.from(gpu, new Uint32Array([FLAG_CLEAR]), [1], "u32", "flag");
    const partials = Tensor.empty(gpu, [partialsFor(n)], "f32", "partials");
    const bits: number[] = [];
    for (let i = 0; i < 2; i++) {
      const step = gpu.step("norm");
      gradNorm(step, g, norm, flag, 7, partials);
      step.submit();
      bits.push(new Uint32Array((await norm.readF32()).buffer)[0]);
    }
    assert.equal(bits[0], bits[1], "two runs, same bits");
    assertClose(await norm.readF32(), [Math.sqrt(sumRef(hg, true))], REL, "norm");
    assert.equal((await flag.read())[0], FLAG_CLEAR);
    // A NaN gradient at step 9, then an inf at step 12: the flag keeps 9.
    hg[500] = NaN;
    g.write(hg);
    let step = gpu.step("nan");
    gradNorm(step, g, norm, flag, 9, partials);
    step.submit();
    hg[500] = Infinity;
    g.write(hg);
    step = gpu.step("inf");
    gradNorm(step, g, norm, flag, 12, partials);
    step.submit();
    assert.equal((await flag.read())[0], 9);
    [g, norm, flag, partials].forEach((t) => t.destroy());
  },
);

Deno.test(
  "AdamW with clipping and weight decay matches float64 over several steps; non-finite norm skips",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(34);
    const n = 3001, decayEnd = 2000;
    const hp = rng.uniformArray(n);
    const state = { p: Float64Array.from(hp), m: new Float64Array(n), v: new Float64Array(n) };
    const p = Tensor.from(gpu, hp, [n], "f32", "p"), g = Tensor.empty(gpu, [n], "f32", "g");
    const m = Tensor.empty(gpu, [n], "f32", "m"), v = Tensor.empty(gpu, [n], "f32", "v");
    const norm = Tensor.empty(gpu, [1], "f32", "norm");
    const flag = Tensor.from(gpu, new Uint32Array([FLAG_CLEAR]), [1], "u32", "flag");
    const partials = Tensor.empty(gpu, [partialsFor(n)], "f32", "partials");
    for (let t = 1; t <= 4; t++) {
      const hg = rng.uniformArray(n, -t, t); // norms above and below the clip
      const h: AdamWHyper = {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weightDecay: 0.1,
        clip: t < 3 ? 1 : 1e3,
        step: t,
      };
      g.write(hg);
      const step = gpu.step("adamw");
      gradNorm(step, g, norm, flag, t, partials);
      adamw(step, p, g, m, v, norm, h, decayEnd);
      step.submit();
      assert.equal(adamwRef(state, hg, h, decayEnd), true);
      assertClose(await p.readF32(), state.p, 1e-6, `params after step ${t}`);
      assertClose(await m.readF32(), state.m, 1e-6, `m after step ${t}`);
      assertClose(await v.readF32(), state.v, 1e-5, `v after step ${t}`);
    }
    const before = await p.readF32();
    const bad = rng.uniformArray(n);
    bad[7] = NaN;
    g.write(bad);
    const step = gpu.step("adamw nan");
    gradNorm(step, g, norm, flag, 5, partials);
    adamw(step, p, g, m, v, norm, {
      lr: 1e-2,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.1,
      clip: 1,
      step: 5,
    });
    step.submit();
    assert.deepEqual(await p.readF32(), before, "no update on a non-finite norm");
    assert.equal((await flag.read())[0], 5);
    [p, g, m, v, norm, flag, partials].forEach((t) => t.destroy());
  },
);
