import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { type Gpu, openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { type AttnDims, lightningBackwardRef, lightningRef } from "../kernels/lightning_ref.ts";
import {
  naiveLinearBackward,
  naiveLinearForward,
  naiveLinearGroup,
  naiveLinearReleaseScratch,
} from "../kernels/naive_linear.ts";
import {
  softmaxFlashBackward,
  softmaxFlashForward,
  softmaxFlashReleaseScratch,
} from "../kernels/softmax_flash.ts";
import { softmaxAttentionBackwardRef, softmaxAttentionRef } from "../kernels/softmax_flash_ref.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";

// Attention, fp32 on the GPU vs float64: ‖Δ‖/‖ref‖ ≤ 1e-5 (measured: ≤ 4e-7 here).
const REL = 1e-5;

function data(dims: AttnDims, seed: number) {
  const { B, H, T, d, e } = dims;
  const rng = new Rng(seed);
  return {
    hq: rng.uniformArray(B * H * T * d),
    hk: rng.uniformArray(B * H * T * d),
    hv: rng.uniformArray(B * H * T * e),
    hdo: rng.uniformArray(B * H * T * e),
  };
}

function upload(gpu: Gpu, a: Float32Array, label: string): Tensor {
  return Tensor.from(gpu, a, [a.length], "f32", label);
}

// ---------------------------------------------------------------- softmax flash

async function checkSoftmax(gpu: Gpu, dims: AttnDims, seed: number): Promise<void> {
  const { B, H, T, d, e } = dims;
  const x = data(dims, seed);
  const q = upload(gpu, x.hq, "q"), k = upload(gpu, x.hk, "k"), v = upload(gpu, x.hv, "v");
  const dO = upload(gpu, x.hdo, "do");
  const n = B * H * T;
  const o = Tensor.empty(gpu, [n * e], "f32", "o"), lse = Tensor.empty(gpu, [n], "f32", "lse");
  const dq = Tensor.empty(gpu, [n * d], "f32", "dq"), dk = Tensor.empty(gpu, [n * d], "f32", "dk");
  const dv = Tensor.empty(gpu, [n * e], "f32", "dv");
  const step = gpu.step("softmax test");
  softmaxFlashForward(step, { ...dims, q, k, v, o, lse });
  softmaxFlashBackward(step, { ...dims, q, k, v, o, lse, do: dO, dq, dk, dv });
  step.submit();
  const ref = softmaxAttentionRef(x.hq, x.hk, x.hv, dims);
  const g = softmaxAttentionBackwardRef(x.hq, x.hk, x.hv, x.hdo, dims);
  const label = JSON.stringify(dims);
  assertClose(await o.readF32(), ref.o, REL, `${label}: o`);
  assertClose(await lse.readF32(), ref.lse, REL, `${label}: logsumexp`);
  assertClose(await dq.readF32(), g.dq, REL, `${label}: dq`);
  assertClose(await dk.readF32(), g.dk, REL, `${label}: dk`);
  assertClose(await dv.readF32(), g.dv, REL, `${label}: dv`);
  [q, k, v, dO, o, lse, dq, dk, dv].forEach((t) => t.destroy());
}

Deno.test("softmax reference: backward matches central finite differences; rows sum to one", () => {
  const dims = { B: 1, H: 2, T: 7, d: 4, e: 3 };
  const x = data(dims, 1);
  const q = Float64Array.from(x.hq), k = Float64Array.from(x.hk), v = Float64Array.from(x.hv);
  const w = Float64Array.from(x.hdo);
  const loss = () => softmaxAttentionRef(q, k, v, dims).o.reduce((acc, o, i) => acc + o * w[i], 0);
  const g = softmaxAttentionBackwardRef(q, k, v, w, dims);
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
  // With v = 1 every output is 1 (the weights of a row sum to one); the first row attends to itself.
  const ones = new Float64Array(2 * 7 * 3).fill(1);
  softmaxAttentionRef(q, k, ones, dims).o.forEach((o) => assert.ok(Math.abs(o - 1) < 1e-12));
  const first = softmaxAttentionRef(q, k, v, dims).o.slice(0, 3);
  assert.deepEqual([...first].map((x) => x.toFixed(12)), [...v.slice(0, 3)].map((x) => x.toFixed(12)));
});

Deno.test(
  "softmax flash: forward, logsumexp and gradients vs float64 over T and (d, e)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    let seed = 10;
    for (const [d, e] of [[16, 16], [32, 16], [64, 64], [128, 128], [128, 64], [4, 8]]) {
      for (const T of [1, 7, 31, 32, 33, 100]) await checkSoftmax(gpu, { B: 1, H: 2, T, d, e }, seed++);
    }
    softmaxFlashReleaseScratch(gpu);
  },
);

Deno.test(
  "softmax flash: groups of heads when tensors exceed one binding; bad dims refused",
  gpuTest,
  async () => {
    const gpu = await openGpu({ maxBindingBytes: 16384 }); // 1 head of T=70, d=32 (8960 bytes) per dispatch
    try {
      await checkSoftmax(gpu, { B: 2, H: 2, T: 70, d: 32, e: 24 }, 40);
    } finally {
      gpu.close();
    }
    const g = await testGpu();
    const t = Tensor.empty(g, [4 * 256], "f32", "t");
    const step = g.step("bad");
    for (const d of [256, 6]) {
      assert.throws(
        () => softmaxFlashForward(step, { B: 1, H: 1, T: 4, d, e: 4, q: t, k: t, v: t, o: t, lse: t }),
        (err) => err instanceof TnlError && err.message.includes(`d = ${d}`),
      );
    }
    step.abandon();
    t.destroy();
  },
);

// ---------------------------------------------------------------- naive linear

async function checkNaive(gpu: Gpu, dims: AttnDims, seed: number): Promise<void> {
  const { B, H, T, d, e } = dims;
  const x = data(dims, seed);
  const hs = Float32Array.from({ length: H }, (_, h) => [5e-6, 0.05, 0.7][h % 3]);
  const q = upload(gpu, x.hq, "q"), k = upload(gpu, x.hk, "k"), v = upload(gpu, x.hv, "v");
  const dO = upload(gpu, x.hdo, "do"), slopes = upload(gpu, hs, "slopes");
  const n = B * H * T;
  const o = Tensor.empty(gpu, [n * e], "f32", "o");
  const dq = Tensor.empty(gpu, [n * d], "f32", "dq"), dk = Tensor.empty(gpu, [n * d], "f32", "dk");
  const dv = Tensor.empty(gpu, [n * e], "f32", "dv");
  const step = gpu.step("naive test");
  naiveLinearForward(step, { ...dims, q, k, v, o, slopes });
  naiveLinearBackward(step, { ...dims, q, k, v, do: dO, dq, dk, dv, slopes });
  step.submit();
  const ref = lightningRef(x.hq, x.hk, x.hv, hs, dims);
  const g = lightningBackwardRef(x.hq, x.hk, x.hv, x.hdo, hs, dims);
  const label = `naive ${JSON.stringify(dims)}`;
  assertClose(await o.readF32(), ref, REL, `${label}: o`);
  assertClose(await dq.readF32(), g.dq, REL, `${label}: dq`);
  assertClose(await dk.readF32(), g.dk, REL, `${label}: dk`);
  assertClose(await dv.readF32(), g.dv, REL, `${label}: dv`);
  [q, k, v, dO, slopes, o, dq, dk, dv].forEach((t) => t.destroy());
}

Deno.test("naive linear: forward and gradients vs the float64 quadratic form", gpuTest, async () => {
  const gpu = await testGpu();
  let seed = 50;
  for (const [d, e] of [[16, 16], [32, 16], [64, 64], [128, 128], [256, 128]]) {
    for (const T of [1, 7, 127, 128, 129, 200]) await checkNaive(gpu, { B: 1, H: 3, T, d, e }, seed++);
  }
  naiveLinearReleaseScratch(gpu);
});

Deno.test(
  "naive linear: score matrices in groups of heads; a T×T over one binding is refused",
  gpuTest,
  async () => {
    const gpu = await openGpu({ maxBindingBytes: 65536 }); // one 100×100 score matrix (40000 bytes) at a time
    try {
      assert.equal(naiveLinearGroup(gpu, { B: 2, H: 3, T: 100, d: 8, e: 8 }), 1);
      await checkNaive(gpu, { B: 2, H: 3, T: 100, d: 8, e: 12 }, 60);
      assert.throws(
        () => naiveLinearGroup(gpu, { B: 1, H: 1, T: 200, d: 8, e: 8 }),
        (err) =>
          err instanceof TnlError && err.kind === "gpu" && err.message.includes("T×T") &&
          err.message.includes("156.3 KiB"),
      );
    } finally {
      gpu.close();
    }
  },
);
