import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { type Gpu, openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { errorStats } from "../core/stats.ts";
import { Tensor } from "../core/tensor.ts";
import {
  alibiSlopes,
  chunkedUnsupported,
  LIGHTNING_CHUNK_ROWS,
  LIGHTNING_SEQUENTIAL_MIN_WORKGROUPS,
  lightningBackward,
  lightningForward,
  type LightningOptions,
  lightningPlan,
  lightningPrefillState,
  lightningReleaseScratch,
  lightningScratchElements,
  tnlDecayRates,
} from "../kernels/lightning.ts";
import {
  type AttnDims,
  lightningBackwardRef,
  lightningRecurrenceBackwardRef,
  lightningRecurrenceRef,
  lightningRef,
} from "../kernels/lightning_ref.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";

// Attention, fp32 on the GPU vs float64: ‖Δ‖/‖ref‖ ≤ 1e-5 (measured: ~2e-7 at T ≤ 300).
const REL = 1e-5;

// Rates of the three regimes, one per head of a launch: the last layer's (tiny, λ^T ≈ 1 over the whole
// sequence), a middle one, and the first layer's largest (λ^32 ≈ 1e-10).
const RATES = [tnlDecayRates(8, 23, 24)[0], 0.05, tnlDecayRates(16, 0, 24)[0]];

interface Inputs {
  dims: AttnDims;
  hq: Float32Array;
  hk: Float32Array;
  hv: Float32Array;
  hdo: Float32Array;
  hs: Float32Array;
}

function inputs(dims: AttnDims, rates: readonly number[], seed: number): Inputs {
  const { B, H, T, d, e } = dims;
  const rng = new Rng(seed);
  return {
    dims,
    hq: rng.uniformArray(B * H * T * d),
    hk: rng.uniformArray(B * H * T * d),
    hv: rng.uniformArray(B * H * T * e),
    hdo: rng.uniformArray(B * H * T * e),
    hs: Float32Array.from({ length: H }, (_, h) => rates[h % rates.length]),
  };
}

interface Results {
  o: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  state: Float32Array;
  /** Outputs of the prefill entry run with `o` (must equal o). */
  prefillO: Float32Array;
  /** State of the prefill entry run with outputs. */
  prefillState: Float32Array;
}

/** Forward, backward, state only, and state + outputs, all in one step. */
async function runAll(gpu: Gpu, x: Inputs, opts: LightningOptions): Promise<Results> {
  const { B, H, T, d, e } = x.dims;
  const t = (data: Float32Array | number, label: string) =>
    typeof data === "number"
      ? Tensor.empty(gpu, [data], "f32", label)
      : Tensor.from(gpu, data, [data.length], "f32", label);
  const q = t(x.hq, "q"), k = t(x.hk, "k"), v = t(x.hv, "v"), dO = t(x.hdo, "do"), slopes = t(x.hs, "slopes");
  const o = t(B * H * T * e, "o"), o2 = t(B * H * T * e, "o2");
  const dq = t(B * H * T * d, "dq"), dk = t(B * H * T * d, "dk"), dv = t(B * H * T * e, "dv");
  const state = t(B * H * d * e, "state"), state2 = t(B * H * d * e, "state2");
  const step = gpu.step("lightning test");
  const args = { ...x.dims, q, k, v, slopes, ...opts };
  lightningForward(step, { ...args, o });
  lightningBackward(step, { ...args, do: dO, dq, dk, dv });
  if (T > 0) {
    lightningPrefillState(step, { ...args, state });
    lightningPrefillState(step, { ...args, o: o2, state: state2 });
  }
  step.submit();
  const r: Results = {
    o: await o.readF32(),
    dq: await dq.readF32(),
    dk: await dk.readF32(),
    dv: await dv.readF32(),
    state: await state.readF32(),
    prefillO: await o2.readF32(),
    prefillState: await state2.readF32(),
  };
  [q, k, v, dO, slopes, o, o2, dq, dk, dv, state, state2].forEach((x) => x.destroy());
  return r;
}

async function checkAll(gpu: Gpu, x: Inputs, opts: LightningOptions, label: string): Promise<void> {
  const r = await runAll(gpu, x, opts);
  const ref = lightningRef(x.hq, x.hk, x.hv, x.hs, x.dims);
  const g = lightningBackwardRef(x.hq, x.hk, x.hv, x.hdo, x.hs, x.dims);
  const rec = lightningRecurrenceRef(x.hq, x.hk, x.hv, x.hs, x.dims);
  assertClose(r.o, ref, REL, `${label}: o`);
  assertClose(r.dq, g.dq, REL, `${label}: dq`);
  assertClose(r.dk, g.dk, REL, `${label}: dk`);
  assertClose(r.dv, g.dv, REL, `${label}: dv`);
  assertClose(r.state, rec.state, REL, `${label}: prefill state`);
  assertClose(r.prefillState, rec.state, REL, `${label}: prefill state with outputs`);
  assert.deepEqual(r.prefillO, r.o, `${label}: prefill outputs equal the forward's`);
}

// ---------------------------------------------------------------- references

Deno.test("references: the quadratic form and the recurrence agree, forward and backward", () => {
  for (
    const [dims, seed] of [[{ B: 2, H: 3, T: 37, d: 5, e: 3 }, 1], [
      { B: 1, H: 3, T: 1, d: 2, e: 4 },
      2,
    ]] as const
  ) {
    const x = inputs(dims, RATES, seed);
    const quad = lightningRef(x.hq, x.hk, x.hv, x.hs, dims);
    const rec = lightningRecurrenceRef(x.hq, x.hk, x.hv, x.hs, dims);
    assertClose(rec.o, quad, 1e-13, "o");
    const g1 = lightningBackwardRef(x.hq, x.hk, x.hv, x.hdo, x.hs, dims);
    const g2 = lightningRecurrenceBackwardRef(x.hq, x.hk, x.hv, x.hdo, x.hs, dims);
    assertClose(g2.dq, g1.dq, 1e-13, "dq");
    assertClose(g2.dk, g1.dk, 1e-13, "dk");
    assertClose(g2.dv, g1.dv, 1e-13, "dv");
  }
  // The state of a one-token prompt is k_0ᵀ v_0.
  const dims = { B: 1, H: 1, T: 1, d: 2, e: 3 };
  const { state } = lightningRecurrenceRef([1, 2], [3, 4], [5, 6, 7], [0.3], dims);
  assert.deepEqual([...state], [15, 18, 21, 20, 24, 28]);
});

Deno.test("reference backward matches central finite differences of the quadratic form (float64)", () => {
  const dims = { B: 1, H: 2, T: 9, d: 3, e: 2 };
  const x = inputs(dims, [0.3, 1e-5], 3);
  const q = Float64Array.from(x.hq), k = Float64Array.from(x.hk), v = Float64Array.from(x.hv);
  const w = Float64Array.from(x.hdo);
  // L = Σ o ⊙ w, so dL/dO = w.
  const loss = () => lightningRef(q, k, v, x.hs, dims).reduce((acc, o, i) => acc + o * w[i], 0);
  const g = lightningBackwardRef(q, k, v, w, x.hs, dims);
  const h = 1e-6;
  for (const [name, arr, grad] of [["q", q, g.dq], ["k", k, g.dk], ["v", v, g.dv]] as const) {
    const fd = new Float64Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const keep = arr[i];
      arr[i] = keep + h;
      const up = loss();
      arr[i] = keep - h;
      const down = loss();
      arr[i] = keep;
      fd[i] = (up - down) / (2 * h);
    }
    assertClose(grad, fd, 1e-8, `d${name} vs finite differences`);
  }
});

Deno.test("tnlDecayRates follows spec §2.5: ALiBi slopes × (1 − l/(L−1) + 1e−5) in fp32", () => {
  const f32 = Math.fround;
  // Power-of-two heads.
  assert.deepEqual(alibiSlopes(4), [1 / 4, 1 / 16, 1 / 64, 1 / 256]);
  assert.deepEqual(alibiSlopes(8), Array.from({ length: 8 }, (_, h) => 2 ** -(h + 1)));
  alibiSlopes(16).forEach((m, h) => assert.ok(Math.abs(m / 2 ** (-(h + 1) / 2) - 1) < 1e-14, `H=16 h=${h}`));
  alibiSlopes(32).forEach((m, h) => assert.ok(Math.abs(m / 2 ** (-(h + 1) / 4) - 1) < 1e-14, `H=32 h=${h}`));
  // H = 40: slopes(32) then every other slope of 64 heads, 2^-(2j+1)/8.
  const s40 = alibiSlopes(40);
  assert.equal(s40.length, 40);
  for (let i = 0; i < 32; i++) assert.ok(Math.abs(s40[i] / 2 ** (-(i + 1) / 4) - 1) < 1e-14);
  for (let j = 0; j < 8; j++) assert.ok(Math.abs(s40[32 + j] / 2 ** (-(2 * j + 1) / 8) - 1) < 1e-14);
  // Layer factors: (1 + 1e-5) for layer 0, 1e-5 for the last, as fp32 products of fp32 values.
  assert.deepEqual(
    [...tnlDecayRates(4, 0, 24)],
    [1 / 4, 1 / 16, 1 / 64, 1 / 256].map((m) => f32(m * f32(1 + 1e-5))),
  );
  assert.deepEqual(
    [...tnlDecayRates(4, 23, 24)],
    [1 / 4, 1 / 16, 1 / 64, 1 / 256].map((m) => f32(m * f32(1e-5))),
  );
  const mid = tnlDecayRates(16, 8, 17);
  mid.forEach((s, h) => assert.equal(s, f32(f32(2 ** (-(h + 1) / 2)) * f32(0.5 + 1e-5))));
  assert.ok(tnlDecayRates(40, 41, 42).every((s) => s > 0 && s < 1e-5));
  assert.throws(() => tnlDecayRates(4, 0, 1), (e) => e instanceof TnlError && e.message.includes("2 layers"));
  assert.throws(() => tnlDecayRates(4, 5, 5), TnlError);
});

// ---------------------------------------------------------------- GPU vs float64

const VARIANTS = ["chunked", "sequential", "parallel"] as const;
const DIMS: [number, number][] = [[16, 16], [32, 16], [64, 64], [128, 128], [256, 128]];

// The same grid for every variant, at T around its block or chunk length (one, a partial one, several).
const GRID: [LightningOptions, string, number][] = [
  [{ variant: "chunked", chunkGroup: 1 }, "chunked variant (chunks of 64 rows)", 64],
  [{ variant: "chunked", chunkGroup: 3 }, "chunked variant, states of 3 chunks per scan step", 64],
  [{ variant: "sequential" }, "sequential variant (blocks of 32 rows)", 32],
  [{ variant: "parallel", chunkRows: 64 }, "block-parallel variant, with chunks of 64 rows", 64],
];
for (const [opts, name, rows] of GRID) {
  Deno.test(
    `${name}: forward, gradients and prefill state vs float64 over T, (d, e) and rates`,
    gpuTest,
    async () => {
      const gpu = await testGpu();
      let seed = 100;
      for (const [d, e] of DIMS) {
        for (const T of [1, 7, rows - 1, rows, rows + 1, 300]) {
          const dims = { B: 1, H: 3, T, d, e };
          const label = `${opts.variant}${
            opts.chunkGroup ? ` G=${opts.chunkGroup}` : ""
          } d=${d} e=${e} T=${T}`;
          await checkAll(gpu, inputs(dims, RATES, seed++), opts, label);
        }
      }
      lightningReleaseScratch(gpu);
    },
  );
}

Deno.test("block rows 16 and 64, every variant, batch > 1 and odd head dims", gpuTest, async () => {
  const gpu = await testGpu();
  let seed = 300;
  for (const bt of [16, 64] as const) {
    for (const T of [bt - 1, bt, bt + 1, 5 * bt + 3]) {
      for (const variant of VARIANTS) {
        if (variant === "chunked" && bt === 16) continue; // block rows do not apply: once is enough
        const dims = { B: 2, H: 3, T, d: 24, e: 40 };
        const opts = { variant, blockRows: bt, chunkRows: variant === "parallel" ? 2 * bt : undefined };
        await checkAll(gpu, inputs(dims, RATES, seed++), opts, `bt=${bt} ${variant} T=${T}`);
      }
    }
  }
  // Head dims that are not multiples of 4 (any d, e ≤ 256 work).
  for (const variant of VARIANTS) {
    const T = variant === "chunked" ? 131 : 45; // chunked: several chunks, a partial last one
    await checkAll(
      gpu,
      inputs({ B: 1, H: 2, T, d: 3, e: 5 }, RATES, seed++),
      { variant },
      `${variant} d=3 e=5`,
    );
    await checkAll(
      gpu,
      inputs({ B: 1, H: 1, T: 40, d: 130, e: 1 }, RATES, seed++),
      { variant },
      `${variant} d=130 e=1`,
    );
  }
  lightningReleaseScratch(gpu);
});

Deno.test(
  "T = 4099 at the last layer's rate vs the float64 recurrence (drift over 129 blocks)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const s = tnlDecayRates(8, 23, 24)[0]; // 0.5 · 1e-5
    const dims = { B: 1, H: 1, T: 4099, d: 16, e: 16 };
    const x = inputs(dims, [s], 400);
    const rec = lightningRecurrenceRef(x.hq, x.hk, x.hv, x.hs, dims);
    const grads = lightningRecurrenceBackwardRef(x.hq, x.hk, x.hv, x.hdo, x.hs, dims);
    for (
      const opts of [...VARIANTS.map((variant) => ({ variant })), {
        variant: "chunked",
        chunkGroup: 8,
      }] as const
    ) {
      const r = await runAll(gpu, x, opts);
      const label = `T=4099 ${JSON.stringify(opts)}`;
      assertClose(r.o, rec.o, REL, `${label}: o`);
      assertClose(r.state, rec.state, REL, `${label}: state`);
      assertClose(r.dq, grads.dq, REL, `${label}: dq`);
      assertClose(r.dk, grads.dk, REL, `${label}: dk`);
      assertClose(r.dv, grads.dv, REL, `${label}: dv`);
      // The last rows carry all 4099 terms: the worst place for drift.
      const tail = (a: ArrayLike<number>) => Array.from(a).slice(-16 * 64);
      assert.ok(errorStats(tail(r.o), tail(rec.o)).rel <= REL, `${label}: last 64 rows`);
    }
    lightningReleaseScratch(gpu);
  },
);

Deno.test("tensors over the binding limit are processed in groups of heads", gpuTest, async () => {
  // 8 KiB bindings: one head of T=70, d=16 (4480 bytes) per dispatch.
  const gpu = await openGpu({ maxBindingBytes: 8192 });
  try {
    let seed = 500;
    for (const variant of VARIANTS) {
      const dims = { B: 2, H: 3, T: 70, d: 16, e: 24 };
      await checkAll(gpu, inputs(dims, RATES, seed++), { variant, chunkRows: 32 }, `sliced ${variant}`);
    }
    // One head larger than a binding is refused, naming the limit.
    const T = 200, d = 16;
    const q = Tensor.empty(gpu, [T * d], "f32", "q"), s = Tensor.empty(gpu, [1], "f32", "s");
    const step = gpu.step("too big");
    assert.throws(
      () => lightningForward(step, { B: 1, H: 1, T, d, e: d, q, k: q, v: q, o: q, slopes: s }),
      (e) => e instanceof TnlError && e.kind === "gpu" && e.message.includes("8192 bytes"),
    );
    step.abandon();
  } finally {
    gpu.close();
  }
});

Deno.test(
  "the dispatcher picks the variant by device and shape, and the caller can pass the scratch",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const few = { B: 4, H: 16, T: 4096, d: 128, e: 128 };
    const many = { B: 16, H: 16, T: 4096, d: 128, e: 128 };
    // Chunked wherever the device runs it; chunk states capped at LIGHTNING_CHUNKED_SCRATCH_BYTES.
    assert.equal(chunkedUnsupported(gpu, 65536), null);
    for (const shape of [few, many, { ...few, T: 1 }]) {
      assert.equal(lightningPlan(gpu, shape).variant, "chunked");
    }
    // With the H200's 2 GiB bindings: 1 set × 16 heads × 1024 chunks × 64 KiB = 1 GiB in the forward,
    // 2 sets × 8 heads in the backward.
    const h200 = { ...gpu, maxBindingBytes: 2 ** 31 - 4 } as Gpu;
    const long = lightningPlan(h200, { B: 4, H: 16, T: 65536, d: 128, e: 128 });
    assert.equal(long.chunks, 65536 / LIGHTNING_CHUNK_ROWS);
    assert.equal(long.headsPerGroup, 16);
    assert.equal(long.headsPerGroupBackward, 8);
    assert.equal(lightningPlan(h200, { ...many, B: 4 }).headsPerGroup, 64); // T = 4K: one group
    // The largest G ≤ 32 with ≥ 512 workgroups per dispatch of state products: at 16K one dispatch group of
    // 64 heads × 8 groups of 32 chunks; at the training shape 32 heads × 16 groups of 2 chunks.
    assert.equal(lightningPlan(h200, { ...few, T: 16384 }).chunkGroup, 32);
    assert.equal(lightningPlan(h200, { ...few, T: 16384 }).headsPerGroup, 64);
    assert.equal(lightningPlan(h200, { B: 4, H: 8, T: 2048, d: 128, e: 128 }).chunkGroup, 2);
    assert.equal(lightningPlan(h200, { B: 4, H: 8, T: 2048, d: 256, e: 128 }).chunkGroup, 4); // 2 tiles
    assert.equal(lightningPlan(h200, { B: 4, H: 8, T: 8192, d: 128, e: 128 }).chunkGroup, 8);
    assert.equal(lightningPlan(h200, { ...few, T: 65536 }).chunkGroup, 32); // 16 heads × 32 groups
    assert.equal(lightningScratchElements(h200, many), 2 * 128 * 64 * 128 * 128); // 128 of 256 heads: 1 GiB
    // The forward's one set can take more heads than half the backward's two: 5000 chunks × 64 KiB per head,
    // 3 heads forward (3 × 312.5 MiB ≤ 1 GiB), 1 backward (2 × 312.5 MiB): scratch for the larger.
    const odd = { B: 1, H: 4, T: 5000 * LIGHTNING_CHUNK_ROWS, d: 128, e: 128 };
    assert.equal(lightningPlan(h200, odd).headsPerGroup, 3);
    assert.equal(lightningPlan(h200, odd).headsPerGroupBackward, 1);
    assert.equal(lightningScratchElements(h200, odd), 3 * 5000 * 128 * 128);
    assert.equal(lightningScratchElements(gpu, { ...many, T: 64 }), 0); // one chunk: no states
    // Elsewhere the block variants, by the number of workgroups.
    const small = { ...gpu, limits: { ...gpu.limits, maxComputeWorkgroupStorageSize: 24576 } } as Gpu;
    assert.match(chunkedUnsupported(small, 100) ?? "", /32768 bytes.*24576/);
    assert.throws(
      () => lightningPlan(small, few, { variant: "chunked" }),
      (e) =>
        e instanceof TnlError && e.kind === "gpu" && e.message.includes("maxComputeWorkgroupStorageSize"),
    );
    assert.match(chunkedUnsupported(gpu, 65535 * 64 + 1) ?? "", /65536 chunks/);
    assert.equal(lightningPlan(small, few).variant, "parallel");
    assert.ok(4 * 16 * 4 < LIGHTNING_SEQUENTIAL_MIN_WORKGROUPS);
    assert.equal(lightningPlan(small, many).variant, "sequential");
    assert.equal(lightningPlan(small, { ...few, T: 64 }).variant, "sequential"); // too short to split
    const p = lightningPlan(small, { B: 1, H: 1, T: 65536, d: 128, e: 128 });
    assert.equal(p.variant, "parallel");
    const slices = 128 / p.sliceWidth; // 16 columns where 24 KiB cannot hold 32
    assert.ok(p.chunks * slices >= 1000 && p.chunkRows % p.blockRows === 0, JSON.stringify(p));
    assert.equal(lightningScratchElements(small, many), 0);
    // A caller-owned scratch is used (and one that is too small is refused).
    const dims = { B: 1, H: 2, T: 100, d: 8, e: 12 };
    const x = inputs(dims, RATES, 600);
    for (const opts of [{ variant: "parallel", chunkRows: 32 }, { variant: "chunked" }] as const) {
      const need = lightningScratchElements(gpu, dims, opts);
      assert.ok(need > 0);
      const scratch = Tensor.empty(gpu, [need], "f32", "own scratch");
      await checkAll(gpu, x, { ...opts, scratch }, `own scratch ${opts.variant}`);
      const tooSmall = Tensor.empty(gpu, [need - 1], "f32", "small scratch");
      const step = gpu.step("small scratch");
      const qk = Tensor.empty(gpu, [2 * 100 * 8], "f32", "qk"),
        vo = Tensor.empty(gpu, [2 * 100 * 12], "f32", "vo");
      const dqk = Tensor.empty(gpu, [2 * 100 * 8], "f32", "dqk"),
        dv = Tensor.empty(gpu, [2 * 100 * 12], "f32", "dv");
      const s = Tensor.empty(gpu, [2], "f32", "s");
      // The backward needs the most (two state sets in the chunked variant).
      assert.throws(
        () =>
          lightningBackward(step, {
            ...dims,
            ...opts,
            q: qk,
            k: qk,
            v: vo,
            do: vo,
            dq: dqk,
            dk: dqk,
            dv,
            slopes: s,
            scratch: tooSmall,
          }),
        (e) => e instanceof TnlError && e.message.includes("small scratch"),
      );
      step.abandon();
      [scratch, tooSmall, qk, vo, dqk, dv, s].forEach((x) => x.destroy());
    }
  },
);

Deno.test("bad shapes are refused clearly", gpuTest, async () => {
  const gpu = await testGpu();
  const t = Tensor.empty(gpu, [300 * 4], "f32", "t"), s = Tensor.empty(gpu, [1], "f32", "s");
  const step = gpu.step("bad");
  assert.throws(
    () => lightningForward(step, { B: 1, H: 1, T: 4, d: 300, e: 1, q: t, k: t, v: t, o: t, slopes: s }),
    (e) => e instanceof TnlError && e.message.includes("d = 300") && e.message.includes("256"),
  );
  assert.throws(
    () => lightningForward(step, { B: 1, H: 1, T: 5, d: 4, e: 4, q: t, k: t, v: t, o: t, slopes: s }),
    (e) => e instanceof TnlError && e.message.includes("'t'") && e.message.includes("expected 20"),
  );
  for (const chunkGroup of [0, 1.5, 65]) {
    assert.throws(
      () => lightningPlan(gpu, { B: 1, H: 1, T: 4096, d: 4, e: 4 }, { variant: "chunked", chunkGroup }),
      (e) => e instanceof TnlError && e.message.includes(`chunk group ${chunkGroup}`),
    );
  }
  step.abandon();
  [t, s].forEach((x) => x.destroy());
});

// ---------------------------------------------------------------- continuing from a given state

/** Forward, state only, and state + outputs from the initial state `init`, in one step. */
async function runFrom(gpu: Gpu, x: Inputs, init: Float32Array, opts: LightningOptions) {
  const { B, H, T, d, e } = x.dims;
  const t = (data: Float32Array | number, label: string) =>
    typeof data === "number"
      ? Tensor.empty(gpu, [data], "f32", label)
      : Tensor.from(gpu, data, [data.length], "f32", label);
  const q = t(x.hq, "q"), k = t(x.hk, "k"), v = t(x.hv, "v"), slopes = t(x.hs, "slopes");
  const initialState = t(init, "initial state");
  const o = t(B * H * T * e, "o"), o2 = t(B * H * T * e, "o2");
  const state = t(B * H * d * e, "state"), state2 = t(B * H * d * e, "state2");
  const args = { ...x.dims, q, k, v, slopes, initialState, ...opts };
  gpu.run("lightning from a state", (step) => {
    lightningForward(step, { ...args, o });
    lightningPrefillState(step, { ...args, state });
    lightningPrefillState(step, { ...args, o: o2, state: state2 });
  });
  const r = {
    o: await o.readF32(),
    state: await state.readF32(),
    prefillO: await o2.readF32(),
    prefillState: await state2.readF32(),
  };
  [q, k, v, slopes, initialState, o, o2, state, state2].forEach((x) => x.destroy());
  return r;
}

Deno.test(
  "both variants continue a sequence from a given state: outputs and states vs the float64 recurrence",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    let seed = 700;
    for (const variant of ["sequential", "parallel"] as const) {
      for (const [d, e] of [[16, 16], [32, 16], [24, 40], [3, 5]] as [number, number][]) {
        for (const T of [1, 7, 33, 200]) {
          const dims = { B: 2, H: 3, T, d, e };
          const x = inputs(dims, RATES, seed++);
          // A state of the size many earlier tokens leave: sums of products of unit-scale rows.
          const init = new Rng(seed++).uniformArray(dims.B * dims.H * d * e, -20, 20);
          const rec = lightningRecurrenceRef(x.hq, x.hk, x.hv, x.hs, dims, init);
          const r = await runFrom(gpu, x, init, { variant, chunkRows: 64 });
          const label = `${variant} d=${d} e=${e} T=${T} from a state`;
          assertClose(r.o, rec.o, REL, `${label}: o`);
          assertClose(r.state, rec.state, REL, `${label}: state`);
          assertClose(r.prefillState, rec.state, REL, `${label}: state with outputs`);
          assert.deepEqual(r.prefillO, r.o, `${label}: the prefill's outputs equal the forward's`);
        }
      }
    }
    lightningReleaseScratch(gpu);
  },
);

Deno.test(
  "from a given state, auto takes a variant that can start from it; the chunked variant refuses one",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dims = { B: 1, H: 2, T: 200, d: 16, e: 16 };
    // auto would pick the chunked variant for this shape where the adapter runs it.
    const plan = lightningPlan(gpu, dims);
    const x = inputs(dims, RATES, 900);
    const init = new Rng(901).uniformArray(dims.B * dims.H * dims.d * dims.e, -20, 20);
    const rec = lightningRecurrenceRef(x.hq, x.hk, x.hv, x.hs, dims, init);
    const r = await runFrom(gpu, x, init, {});
    assertClose(r.o, rec.o, REL, `auto (plan without a state: ${plan.variant}) from a state: o`);
    assertClose(r.state, rec.state, REL, "auto from a state: state");
    await assert.rejects(
      () => runFrom(gpu, x, init, { variant: "chunked" }),
      (e) => e instanceof TnlError && /chunked variant: an initial state is not supported/.test(e.message),
    );
    lightningReleaseScratch(gpu);
  },
);

Deno.test(
  "a sequence cut in two parts, the second from the first's state, equals the whole",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const whole = { B: 1, H: 3, T: 300, d: 32, e: 16 };
    const x = inputs(whole, RATES, 800);
    const cut = 117;
    const part = (a: Float32Array, w: number, t0: number, t1: number) => {
      const out = new Float32Array(whole.H * (t1 - t0) * w);
      for (let h = 0; h < whole.H; h++) {
        out.set(a.subarray((h * whole.T + t0) * w, (h * whole.T + t1) * w), h * (t1 - t0) * w);
      }
      return out;
    };
    const slice = (t0: number, t1: number): Inputs => ({
      dims: { ...whole, T: t1 - t0 },
      hq: part(x.hq, whole.d, t0, t1),
      hk: part(x.hk, whole.d, t0, t1),
      hv: part(x.hv, whole.e, t0, t1),
      hdo: part(x.hdo, whole.e, t0, t1),
      hs: x.hs,
    });
    const rec = lightningRecurrenceRef(x.hq, x.hk, x.hv, x.hs, whole);
    for (const variant of ["sequential", "parallel"] as const) {
      const first = await runAll(gpu, slice(0, cut), { variant, chunkRows: 32 });
      const second = await runFrom(gpu, slice(cut, whole.T), first.state, { variant, chunkRows: 32 });
      assertClose(second.o, part(Float32Array.from(rec.o), whole.e, cut, whole.T), REL, `${variant}: o`);
      assertClose(second.state, rec.state, REL, `${variant}: final state`);
    }
    // The state written must not be the initial state it reads.
    const s = Tensor.empty(gpu, [whole.H * whole.d * whole.e], "f32", "s");
    const k = Tensor.empty(gpu, [whole.H * whole.T * whole.d], "f32", "k");
    const v = Tensor.empty(gpu, [whole.H * whole.T * whole.e], "f32", "v");
    const r = Tensor.from(gpu, x.hs, [3], "f32", "r");
    const step = gpu.step("in place");
    assert.throws(
      () => lightningPrefillState(step, { ...whole, k, v, slopes: r, state: s, initialState: s }),
      (e) => e instanceof TnlError && e.message.includes("share memory"),
    );
    step.abandon();
    [s, k, v, r].forEach((x) => x.destroy());
    lightningReleaseScratch(gpu);
  },
);
