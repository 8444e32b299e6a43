import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";
import { linearBackward, linearForward, lmHeadLoss, sgluBackward, sgluForward } from "../kernels/layers.ts";
import { linearBackwardRef, linearRef, lmHeadRef, sgluBackwardRef, sgluRef } from "../kernels/layers_ref.ts";
import type { Gpu } from "../core/gpu.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";
import { assertGradient, dot } from "./_fd.ts";

// Matmul-based layers: ‖Δ‖/‖ref‖ ≤ 1e-5.
const REL = 1e-5;
const T = (gpu: Gpu, data: Float32Array, shape: number[], label: string) =>
  Tensor.from(gpu, data, shape, "f32", label);

Deno.test("linear forward and both backward products vs float64 (with accumulation)", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(60);
  for (const [n, inF, outF] of [[1, 1, 1], [5, 7, 3], [130, 64, 257], [33, 300, 20]]) {
    const hx = rng.uniformArray(n * inF), hw = rng.uniformArray(outF * inF), hdy = rng.uniformArray(n * outF);
    const hw0 = rng.uniformArray(outF * inF);
    const x = T(gpu, hx, [n, inF], "x"), w = T(gpu, hw, [outF, inF], "w"), dy = T(gpu, hdy, [n, outF], "dy");
    const y = Tensor.empty(gpu, [n, outF], "f32", "y"), dx = Tensor.empty(gpu, [n, inF], "f32", "dx");
    const dw = T(gpu, hw0, [outF, inF], "dw");
    const step = gpu.step("linear");
    linearForward(step, x, w, y, n, inF, outF);
    linearBackward(step, x, w, dy, dx, dw, n, inF, outF, { w: 1 });
    step.submit();
    const label = `${n}x${inF}->${outF}`;
    assertClose(await y.readF32(), linearRef(hx, hw, n, inF, outF), REL, `y ${label}`);
    const g = linearBackwardRef(hx, hw, hdy, n, inF, outF);
    assertClose(await dx.readF32(), g.dx, REL, `dx ${label}`);
    assertClose(await dw.readF32(), g.dw.map((v, i) => v + hw0[i]), REL, `dw ${label}`);
    [x, w, dy, y, dx, dw].forEach((t) => t.destroy());
  }
});

Deno.test("SGLU forward (with residual add) and backward vs float64", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(61);
  for (const [n, d, f] of [[1, 1, 1], [9, 16, 24], [70, 64, 176], [5, 33, 45]]) {
    const hx = rng.uniformArray(n * d),
      hw12 = rng.uniformArray(2 * f * d, -0.3, 0.3),
      hw3 = rng.uniformArray(d * f, -0.3, 0.3);
    const hres = rng.uniformArray(n * d), hdy = rng.uniformArray(n * d);
    const x = T(gpu, hx, [n, d], "x"), w12 = T(gpu, hw12, [2 * f, d], "w12"), w3 = T(gpu, hw3, [d, f], "w3");
    const h = Tensor.empty(gpu, [n, 2 * f], "f32", "h"), g = Tensor.empty(gpu, [n, f], "f32", "g");
    const y = T(gpu, hres, [n, d], "y"), dy = T(gpu, hdy, [n, d], "dy");
    const dx = Tensor.empty(gpu, [n, d], "f32", "dx"), dw12 = Tensor.empty(gpu, [2 * f, d], "f32", "dw12");
    const dw3 = Tensor.empty(gpu, [d, f], "f32", "dw3");
    const dg = Tensor.empty(gpu, [n, f], "f32", "dg"), dh = Tensor.empty(gpu, [n, 2 * f], "f32", "dh");
    const step = gpu.step("sglu");
    sgluForward(step, { n, d, f }, x, w12, w3, h, g, y, 1);
    sgluBackward(step, { n, d, f }, x, w12, w3, h, g, dy, dx, dw12, dw3, { dg, dh });
    step.submit();
    const label = `n=${n} d=${d} f=${f}`;
    const ref = sgluRef(hx, hw12, hw3, n, d, f);
    assertClose(await y.readF32(), ref.y.map((v, i) => v + hres[i]), REL, `y ${label}`);
    const b = sgluBackwardRef(hx, hw12, hw3, hdy, n, d, f);
    assertClose(await dx.readF32(), b.dx, REL, `dx ${label}`);
    assertClose(await dw12.readF32(), b.dw12, REL, `dw12 ${label}`);
    assertClose(await dw3.readF32(), b.dw3, REL, `dw3 ${label}`);
    [x, w12, w3, h, g, y, dy, dx, dw12, dw3, dg, dh].forEach((t) => t.destroy());
  }
});

async function checkLmHead(gpu: Gpu, n: number, d: number, vocab: number, chunkRows: number, rng: Rng) {
  const hx = rng.uniformArray(n * d),
    hw = rng.uniformArray(vocab * d, -0.5, 0.5),
    hw0 = rng.uniformArray(vocab * d);
  const ht = Int32Array.from({ length: n }, (_, i) => (i % 5 === 4 ? IGNORE_INDEX : rng.int(vocab)));
  const valid = ht.filter((t) => t !== IGNORE_INDEX).length;
  const x = T(gpu, hx, [n, d], "x"), w = T(gpu, hw, [vocab, d], "w"), dw = T(gpu, hw0, [vocab, d], "dw");
  const targets = Tensor.from(gpu, ht, [n], "i32", "targets");
  const loss = Tensor.empty(gpu, [n], "f32", "loss"), dx = Tensor.empty(gpu, [n, d], "f32", "dx");
  const logits = Tensor.empty(gpu, [chunkRows, vocab], "f32", "logits");
  const step = gpu.step("lm head");
  lmHeadLoss(step, { x, w, targets, loss, logits, n, d, vocab, gradScale: 1 / valid, dx, dw, betaW: 1 });
  step.submit();
  const ref = lmHeadRef(hx, hw, ht, n, d, vocab, 1 / valid);
  const label = `n=${n} d=${d} V=${vocab} chunk=${chunkRows}`;
  assertClose(await loss.readF32(), ref.loss, REL, `loss ${label}`);
  assertClose(await dx.readF32(), ref.dx, REL, `dx ${label}`);
  assertClose(await dw.readF32(), ref.dw.map((v, i) => v + hw0[i]), REL, `dw ${label}`);
  [x, w, dw, targets, loss, dx, logits].forEach((t) => t.destroy());
}

Deno.test("LM head with fused cross-entropy over row chunks vs float64", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(62);
  await checkLmHead(gpu, 1, 1, 2, 1, rng);
  await checkLmHead(gpu, 37, 16, 300, 8, rng);
  await checkLmHead(gpu, 20, 64, 2001, 20, rng);
  await checkLmHead(gpu, 9, 8, 64000, 4, rng);
});

Deno.test("LM head logits chunks over the binding limit are sliced by the matmul", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 32768 });
  try {
    await checkLmHead(gpu, 12, 8, 5000, 3, new Rng(63)); // logits chunk 60000 bytes, W 160000 bytes
  } finally {
    gpu.close();
  }
});

Deno.test("SGLU and LM head reference backwards equal finite differences", () => {
  const rng = new Rng(64);
  const n = 3, d = 4, f = 5;
  const x = Float64Array.from(rng.uniformArray(n * d)), w12 = Float64Array.from(rng.uniformArray(2 * f * d));
  const w3 = Float64Array.from(rng.uniformArray(d * f)), wy = Float64Array.from(rng.uniformArray(n * d));
  const b = sgluBackwardRef(x, w12, w3, wy, n, d, f);
  assertGradient((v) => dot(wy, sgluRef(v, w12, w3, n, d, f).y), x, b.dx, "sglu dx");
  assertGradient((v) => dot(wy, sgluRef(x, v, w3, n, d, f).y), w12, b.dw12, "sglu dw12");
  assertGradient((v) => dot(wy, sgluRef(x, w12, v, n, d, f).y), w3, b.dw3, "sglu dw3");
  const vocab = 6, t = [1, -100, 5];
  const w = Float64Array.from(rng.uniformArray(vocab * d));
  const total = (xv: Float64Array, wv: Float64Array) =>
    lmHeadRef(xv, wv, t, n, d, vocab, 1).loss.reduce((a, c) => a + c, 0);
  const g = lmHeadRef(x, w, t, n, d, vocab, 1);
  assertGradient((v) => total(v, w), x, g.dx, "lm head dx");
  assertGradient((v) => total(x, v), w, g.dw, "lm head dw");
});
