import assert from "node:assert/strict";
import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { crossEntropy, IGNORE_INDEX } from "../kernels/cross_entropy.ts";
import { crossEntropyHitsRef, crossEntropyRef } from "../kernels/cross_entropy_ref.ts";
import {
  embeddingBackward,
  embeddingBuckets,
  embeddingForward,
  type GpuBuckets,
  uploadBuckets,
} from "../kernels/embedding.ts";
import { embeddingBackwardRef, embeddingRef } from "../kernels/embedding_ref.ts";
import type { Gpu } from "../core/gpu.ts";
import { TnlError } from "../core/errors.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";
import { assertGradient, dot } from "./_fd.ts";

function upload(gpu: Gpu, ids: Uint32Array | number[], vocab: number, pad: number | null): GpuBuckets {
  return uploadBuckets(gpu, embeddingBuckets(ids, vocab, pad));
}

async function checkEmbedding(gpu: Gpu, n: number, vocab: number, d: number, pad: number | null, rng: Rng) {
  const ids = Uint32Array.from({ length: n }, () => rng.int(vocab));
  if (n > 3 && pad !== null) ids[1] = ids[3] = pad;
  const hemb = rng.uniformArray(vocab * d),
    hdx = rng.uniformArray(n * d),
    hprev = rng.uniformArray(vocab * d);
  const scale = Math.sqrt(d);
  const tIds = Tensor.from(gpu, ids, [n], "u32", "ids"),
    emb = Tensor.from(gpu, hemb, [vocab, d], "f32", "emb");
  const x = Tensor.empty(gpu, [n, d], "f32", "x"), dx = Tensor.from(gpu, hdx, [n, d], "f32", "dx");
  const demb = Tensor.from(gpu, hprev, [vocab, d], "f32", "demb");
  const buckets = upload(gpu, ids, vocab, pad);
  const step = gpu.step("embedding");
  embeddingForward(step, tIds, emb, x, n, d, vocab, scale);
  embeddingBackward(step, buckets, dx, demb, d, vocab, scale, 1);
  step.submit();
  const label = `n=${n} vocab=${vocab} d=${d} pad=${pad}`;
  // A gather and a scale: exact up to the one rounding of the product.
  assertClose(await x.readF32(), embeddingRef(ids, hemb, d, scale), 1e-7, `forward ${label}`);
  const g = embeddingBackwardRef(ids, hdx, vocab, d, scale, pad).map((v, i) => v + hprev[i]);
  const got = await demb.readF32();
  assertClose(got, g, 1e-5, `backward ${label}`); // a sum over positions: reduction tolerance
  if (pad !== null) {
    for (let c = 0; c < d; c++) {
      assert.equal(got[pad * d + c], hprev[pad * d + c], "the pad row gets no gradient");
    }
  }
  [tIds, emb, x, dx, demb, buckets.order, buckets.tokens, buckets.starts].forEach((t) => t.destroy());
  return got;
}

Deno.test("embedding gather and deterministic backward (pad row excluded) vs float64", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(40);
  for (
    const [n, vocab, d, pad] of [[1, 1, 1, null], [7, 5, 3, 0], [300, 50, 64, 0], [1000, 7, 257, 2]] as const
  ) {
    await checkEmbedding(gpu, n, vocab, d, pad, rng);
  }
});

Deno.test("embedding backward gives the same bits on two runs", gpuTest, async () => {
  const gpu = await testGpu();
  const a = await checkEmbedding(gpu, 2000, 11, 33, 0, new Rng(41));
  const b = await checkEmbedding(gpu, 2000, 11, 33, 0, new Rng(41));
  assert.deepEqual(new Uint32Array(a.buffer), new Uint32Array(b.buffer));
});

Deno.test("embedding over one storage binding is sliced by vocabulary", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 4096 });
  try {
    await checkEmbedding(gpu, 20, 100, 40, 0, new Rng(42)); // emb = 16000 bytes: 4 slices
  } finally {
    gpu.close();
  }
});

Deno.test(
  "embedding backward of a token seen more often than the loop limit allows in one invocation",
  gpuTest,
  async () => {
    // 70000 positions of 3 tokens: on llvmpipe one invocation may run only 65535 loop iterations, so the
    // backward splits each group into rounds (elsewhere: one round).
    const gpu = await testGpu();
    await checkEmbedding(gpu, 70000, 3, 2, null, new Rng(46));
  },
);

Deno.test("embedding backward where the device has no loop limit (as on real GPUs)", gpuTest, async () => {
  const gpu = await openGpu({ loopLimit: Infinity });
  try {
    await checkEmbedding(gpu, 300, 50, 64, 0, new Rng(47));
  } finally {
    gpu.close();
  }
});

Deno.test("embedding ids outside the vocabulary are refused naming the position", () => {
  assert.throws(
    () => embeddingBuckets([1, 2, 9], 5, 0),
    (e) => e instanceof TnlError && /token id 9 at position 2/.test(e.message),
  );
});

Deno.test("embedding reference backward equals finite differences", () => {
  const rng = new Rng(43);
  const ids = [2, 0, 2, 1], vocab = 3, d = 2;
  const emb = Float64Array.from(rng.uniformArray(vocab * d)),
    w = Float64Array.from(rng.uniformArray(ids.length * d));
  assertGradient(
    (e) => dot(w, embeddingRef(ids, e, d, 1.5)),
    emb,
    embeddingBackwardRef(ids, w, vocab, d, 1.5, null),
    "embedding",
  );
});

Deno.test(
  "cross-entropy loss and d(logits) vs float64, with ignored rows and large logits",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(44);
    for (const [rows, vocab, spread] of [[1, 1, 1], [3, 7, 3], [17, 300, 10], [5, 5000, 30], [2, 64000, 5]]) {
      const hl = rng.uniformArray(rows * vocab, -spread, spread);
      if (rows > 2) hl[vocab + 1] = 80; // a dominant logit: exp would overflow without the max shift
      const ht = Int32Array.from(
        { length: rows },
        (_, i) => (i === 1 && rows > 2 ? IGNORE_INDEX : rng.int(vocab)),
      );
      const valid = ht.filter((t) => t !== IGNORE_INDEX).length;
      const logits = Tensor.from(gpu, hl, [rows, vocab], "f32", "logits");
      const evalLogits = Tensor.from(gpu, hl, [rows, vocab], "f32", "eval logits");
      const targets = Tensor.from(gpu, ht, [rows], "i32", "targets");
      const loss = Tensor.empty(gpu, [rows], "f32", "loss"),
        loss2 = Tensor.empty(gpu, [rows], "f32", "loss2");
      const step = gpu.step("ce");
      crossEntropy(step, logits, targets, loss, rows, vocab, { gradScale: 1 / valid });
      crossEntropy(step, evalLogits, targets, loss2, rows, vocab);
      step.submit();
      const ref = crossEntropyRef(hl, ht, rows, vocab, 1 / valid);
      const label = `${rows}x${vocab} (subgroups ${gpu.features.subgroups})`;
      assertClose(await loss.readF32(), ref.loss, 1e-5, `loss ${label}`);
      assertClose(await loss2.readF32(), ref.loss, 1e-5, `eval loss ${label}`);
      assertClose(await logits.readF32(), ref.dlogits, 1e-5, `dlogits ${label}`);
      assert.deepEqual(await evalLogits.readF32(), hl, "without a gradient the logits stay");
      [logits, evalLogits, targets, loss, loss2].forEach((t) => t.destroy());
    }
  },
);

Deno.test("cross-entropy reference gradient equals finite differences", () => {
  const rng = new Rng(45);
  const rows = 2, vocab = 5, targets = [3, 0];
  const l = Float64Array.from(rng.uniformArray(rows * vocab, -2, 2));
  const lossSum = (x: Float64Array) =>
    crossEntropyRef(x, targets, rows, vocab, 1).loss.reduce((a, b) => a + b, 0);
  assertGradient(lossSum, l, crossEntropyRef(l, targets, rows, vocab, 1).dlogits, "cross-entropy");
});

Deno.test(
  "cross-entropy hits (the target is the unique largest logit) vs float64, with ties and ignored rows",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(46);
    for (const [rows, vocab] of [[1, 1], [6, 7], [40, 300], [9, 5000]]) {
      // Few distinct values, so that ties happen; some rows get their target as the clear winner.
      const hl = Float32Array.from({ length: rows * vocab }, () => rng.int(4));
      const ht = Int32Array.from({ length: rows }, () => rng.int(vocab));
      for (let r = 0; r < rows; r += 2) hl[r * vocab + ht[r]] = 5;
      if (rows > 2) ht[1] = IGNORE_INDEX;
      if (rows > 3) hl[3 * vocab + ((ht[3] + 1) % vocab)] = 5; // a tie with the target: a miss
      const logits = Tensor.from(gpu, hl, [rows, vocab], "f32", "logits");
      const targets = Tensor.from(gpu, ht, [rows], "i32", "targets");
      const loss = Tensor.empty(gpu, [rows + 3], "f32", "loss");
      const hits = Tensor.empty(gpu, [rows + 3], "f32", "hits");
      gpu.run(
        "ce hits",
        (step) => crossEntropy(step, logits, targets, loss, rows, vocab, { lossOffset: 3, hits }),
      );
      const want = crossEntropyHitsRef(hl, ht, rows, vocab);
      const got = (await hits.readF32()).slice(3);
      assert.deepEqual([...got], [...want], `${rows}x${vocab}`);
      assert.ok(vocab === 1 || want.some((h) => h === 1), "some hits");
      if (rows > 3) assert.equal(got[3], 0, "a tie is a miss");
      assertClose(
        (await loss.readF32()).slice(3),
        crossEntropyRef(hl, ht, rows, vocab, 1).loss,
        1e-5,
        "loss",
      );
      [logits, targets, loss, hits].forEach((t) => t.destroy());
    }
  },
);
