import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { colsum, colsumPartialRows } from "../kernels/reduce.ts";
import {
  type MixerShape,
  normGateBackward,
  normGateForward,
  qkvPrepBackward,
  qkvPrepForward,
} from "../kernels/token_mixer.ts";
import {
  normGateBackwardRef,
  normGateRef,
  qkvPrepBackwardRef,
  qkvPrepRef,
} from "../kernels/token_mixer_ref.ts";
import type { Gpu } from "../core/gpu.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";
import { assertGradient, dot } from "./_fd.ts";

// Elementwise stages: ‖Δ‖/‖ref‖ ≤ 1e-6; the norm and the dθ sum over tokens are reductions: ≤ 1e-5.
const thetaInit = (h: number, d: number) =>
  Float32Array.from({ length: h * d }, (_, i) => 10000 ** ((-2 * i) / (h * d)));

async function checkPrep(gpu: Gpu, s: MixerShape, lrpe: boolean, offset: number, rng: Rng) {
  const e = s.h * s.d, n = s.b * s.t, dq = lrpe ? 2 * s.d : s.d;
  const hu = rng.uniformArray(n * 4 * e, -4, 4);
  const hth = lrpe ? thetaInit(s.h, s.d).map((x) => x * (1 + 0.1 * rng.next())) : null;
  const hdq = rng.uniformArray(n * s.h * dq),
    hdk = rng.uniformArray(n * s.h * dq),
    hdv = rng.uniformArray(n * e);
  const qkvu = Tensor.from(gpu, hu, [n, 4 * e], "f32", "qkvu");
  const theta = hth ? Tensor.from(gpu, hth, [s.h, s.d], "f32", "theta") : null;
  const q = Tensor.empty(gpu, [s.b, s.h, s.t, dq], "f32", "q"),
    k = Tensor.empty(gpu, [s.b, s.h, s.t, dq], "f32", "k");
  const v = Tensor.empty(gpu, [s.b, s.h, s.t, s.d], "f32", "v");
  const dqT = Tensor.from(gpu, hdq, [n * s.h * dq], "f32", "dq"),
    dkT = Tensor.from(gpu, hdk, [n * s.h * dq], "f32", "dk");
  const dvT = Tensor.from(gpu, hdv, [n * e], "f32", "dv");
  const dqkvu = Tensor.from(gpu, new Float32Array(n * 4 * e).fill(7), [n, 4 * e], "f32", "dqkvu");
  const terms = lrpe ? Tensor.empty(gpu, [n, e], "f32", "dθ terms") : null;
  const dtheta = Tensor.empty(gpu, [e], "f32", "dθ");
  const partials = Tensor.empty(gpu, [Math.max(1, colsumPartialRows(n) * e)], "f32", "partials");
  const step = gpu.step("prep");
  qkvPrepForward(step, s, qkvu, theta, q, k, v, offset);
  qkvPrepBackward(step, s, qkvu, theta, dqT, dkT, dvT, dqkvu, terms, offset);
  if (terms) colsum(step, terms, dtheta, n, e, { partials });
  step.submit();
  const ref = qkvPrepRef(s, hu, hth, offset);
  const label = `${JSON.stringify(s)} lrpe=${lrpe} offset=${offset}`;
  assertClose(await q.readF32(), ref.q, 1e-6, `q ${label}`);
  assertClose(await k.readF32(), ref.k, 1e-6, `k ${label}`);
  assertClose(await v.readF32(), ref.v, 1e-6, `v ${label}`);
  const bref = qkvPrepBackwardRef(s, hu, hth, hdq, hdk, hdv, offset);
  const got = await dqkvu.readF32();
  const gotQkv = got.filter((_, i) => i % (4 * e) < 3 * e),
    refQkv = bref.dqkvu.filter((_, i) => i % (4 * e) < 3 * e);
  assertClose(gotQkv, refQkv, 1e-6, `dqkv ${label}`);
  for (let i = 0; i < got.length; i++) {
    if (i % (4 * e) >= 3 * e && got[i] !== 7) throw new Error("u columns were written");
  }
  if (lrpe) assertClose(await dtheta.readF32(), bref.dtheta, 1e-5, `dθ ${label}`);
  [qkvu, theta, q, k, v, dqT, dkT, dvT, dqkvu, terms, dtheta, partials].forEach((t) => t?.destroy());
}

Deno.test("qkv prep (head split, SiLU, LRPE) forward and backward vs float64", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(50);
  for (const lrpe of [true, false]) {
    await checkPrep(gpu, { b: 1, t: 1, h: 1, d: 1 }, lrpe, 0, rng);
    await checkPrep(gpu, { b: 2, t: 7, h: 4, d: 16 }, lrpe, 0, rng);
    await checkPrep(gpu, { b: 3, t: 33, h: 3, d: 5 }, lrpe, 0, rng);
  }
});

Deno.test("LRPE stays exact at long positions (angles up to ~1e5) and with an offset", gpuTest, async () => {
  const gpu = await testGpu();
  await checkPrep(gpu, { b: 1, t: 5, h: 2, d: 8 }, true, 70000, new Rng(51));
  await checkPrep(gpu, { b: 1, t: 300, h: 1, d: 4 }, true, 99700, new Rng(52));
});

Deno.test("qkv prep and norm gate process sequences in binding-sized batches", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 8192 });
  try {
    await checkPrep(gpu, { b: 5, t: 8, h: 2, d: 8 }, true, 0, new Rng(53)); // qkvu: 4 KiB per sequence
    await checkGate(gpu, { b: 5, t: 8, h: 2, d: 8 }, new Rng(54));
  } finally {
    gpu.close();
  }
});

async function checkGate(gpu: Gpu, s: MixerShape, rng: Rng) {
  const e = s.h * s.d, n = s.b * s.t;
  const ho = rng.uniformArray(n * e), hu = rng.uniformArray(n * 4 * e, -2, 2), hdog = rng.uniformArray(n * e);
  const o = Tensor.from(gpu, ho, [s.b, s.h, s.t, s.d], "f32", "o"),
    qkvu = Tensor.from(gpu, hu, [n, 4 * e], "f32", "qkvu");
  const on = Tensor.empty(gpu, [n, e], "f32", "on"), rstd = Tensor.empty(gpu, [n], "f32", "rstd");
  const og = Tensor.empty(gpu, [n, e], "f32", "og"), dog = Tensor.from(gpu, hdog, [n, e], "f32", "dog");
  const dqkvu = Tensor.from(gpu, new Float32Array(n * 4 * e).fill(7), [n, 4 * e], "f32", "dqkvu");
  const dO = Tensor.empty(gpu, [s.b, s.h, s.t, s.d], "f32", "do");
  const step = gpu.step("gate");
  normGateForward(step, s, o, qkvu, on, rstd, og);
  normGateBackward(step, s, dog, on, rstd, qkvu, dqkvu, dO);
  step.submit();
  const ref = normGateRef(s, ho, hu), bref = normGateBackwardRef(s, ho, hu, hdog);
  const label = `${JSON.stringify(s)} (subgroups ${gpu.features.subgroups})`;
  assertClose(await on.readF32(), ref.on, 1e-5, `on ${label}`);
  assertClose(await rstd.readF32(), ref.rstd, 1e-5, `rstd ${label}`);
  assertClose(await og.readF32(), ref.og, 1e-5, `og ${label}`);
  const got = await dqkvu.readF32();
  assertClose(got.filter((_, i) => i % (4 * e) >= 3 * e), bref.du, 1e-5, `du ${label}`);
  for (let i = 0; i < got.length; i++) {
    if (i % (4 * e) < 3 * e && got[i] !== 7) throw new Error("q/k/v columns were written");
  }
  assertClose(await dO.readF32(), bref.dO, 1e-5, `do ${label}`);
  [o, qkvu, on, rstd, og, dog, dqkvu, dO].forEach((t) => t.destroy());
}

Deno.test(
  "norm gate (head merge, SRMSNorm over E, u ⊙) forward and backward vs float64",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(55);
    for (
      const s of [{ b: 1, t: 1, h: 1, d: 2 }, { b: 2, t: 5, h: 4, d: 16 }, { b: 1, t: 9, h: 8, d: 128 }, {
        b: 2,
        t: 3,
        h: 3,
        d: 7,
      }]
    ) {
      await checkGate(gpu, s, rng);
    }
  },
);

Deno.test("token mixer reference backwards equal finite differences", () => {
  const rng = new Rng(56);
  const s = { b: 2, t: 3, h: 2, d: 2 }, e = 4, n = 6;
  const u = Float64Array.from(rng.uniformArray(n * 4 * e, -2, 2));
  const th = Float64Array.from(rng.uniformArray(e, 0.1, 1));
  const wq = Float64Array.from(rng.uniformArray(n * s.h * 2 * s.d)),
    wk = Float64Array.from(rng.uniformArray(wq.length));
  const wv = Float64Array.from(rng.uniformArray(n * e));
  const lossPrep = (qkvu: Float64Array, theta: Float64Array) => {
    const r = qkvPrepRef(s, qkvu, theta, 3, false);
    return dot(wq, r.q) + dot(wk, r.k) + dot(wv, r.v);
  };
  const g = qkvPrepBackwardRef(s, u, th, wq, wk, wv, 3, false);
  assertGradient(
    (x) => lossPrep(x, th),
    u,
    g.dqkvu.map((v, i) => (i % (4 * e) < 3 * e ? v : 0)),
    "qkv prep dqkvu",
  );
  assertGradient((x) => lossPrep(u, x), th, g.dtheta, "qkv prep dθ");
  const o = Float64Array.from(rng.uniformArray(n * e)), wog = Float64Array.from(rng.uniformArray(n * e));
  const gb = normGateBackwardRef(s, o, u, wog);
  assertGradient((x) => dot(wog, normGateRef(s, x, u).og), o, gb.dO, "norm gate do");
  const du = new Float64Array(n * 4 * e);
  gb.du.forEach((v, i) => (du[Math.floor(i / e) * 4 * e + 3 * e + (i % e)] = v));
  assertGradient((x) => dot(wog, normGateRef(s, o, x).og), u, du, "norm gate du");
});
