import assert from "node:assert/strict";
import type { Gpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import {
  NO_TOKEN,
  SAMPLER_GATHER,
  type SamplerSettings,
  samplerStride,
  sampleTokens,
} from "../kernels/sample.ts";
import { drawOrder, sampleRef, samplerUniform } from "../kernels/sample_ref.ts";
import { gpuTest, testGpu } from "./_gpu.ts";

const BASE: SamplerSettings = {
  temp: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  repeatPenalty: 1,
  repeatLastN: 0,
  seed: 1234,
  banned: null,
  logprobs: true,
};

interface Seq {
  logits: Float32Array;
  /** tokens of positions 0..len−1 (the history the penalty sees) */
  history: number[];
  stream: number;
}

interface Drawn {
  token: number;
  logprob: number;
  info: Float32Array;
  cur: number;
  len: number;
  ringSlot: number;
}

/** One sampling dispatch over several sequences; returns what the kernel wrote for each. */
async function draw(
  gpu: Gpu,
  seqs: Seq[],
  s: SamplerSettings,
  histW = 64,
  loads?: number,
): Promise<Drawn[]> {
  const n = seqs.length, V = seqs[0].logits.length, stride = samplerStride(V);
  // rows padded to a multiple of 4 with values the sampler must never look at
  const rows = new Float32Array(n * stride).fill(1e30);
  seqs.forEach((q, b) => rows.set(q.logits, b * stride));
  const logits = Tensor.from(gpu, rows, [n, stride], "f32", "logits");
  const ring = new Uint32Array(n * histW);
  const seqInfo = new Uint32Array(n * 4);
  seqs.forEach((q, b) => {
    q.history.forEach((t, pos) => (ring[b * histW + (pos % histW)] = t));
    seqInfo[b * 4] = q.history.length;
    seqInfo[b * 4 + 1] = q.stream;
  });
  const hist = Tensor.from(gpu, ring, [n, histW], "u32", "hist");
  const seq = Tensor.from(gpu, seqInfo, [n, 4], "u32", "seq");
  const cur = Tensor.empty(gpu, [n], "u32", "cur");
  const out = Tensor.empty(gpu, [2, n, 2], "u32", "out");
  const info = Tensor.empty(gpu, [n, 4], "f32", "info");
  gpu.run(
    "sample test",
    (step) =>
      sampleTokens(
        step,
        { logits, stride, hist, seq, cur, out, info, nseq: n, vocab: V, histW },
        s,
        1,
        loads,
      ),
  );
  const o = (await out.read()) as Uint32Array;
  const inf = await info.readF32();
  const c = (await cur.read()) as Uint32Array;
  const sq = (await seq.read()) as Uint32Array;
  const h = (await hist.read()) as Uint32Array;
  const r = seqs.map((q, b) => ({
    token: o[(n + b) * 2],
    logprob: new Float32Array(o.buffer.slice((n + b) * 8 + 4, (n + b) * 8 + 8))[0],
    info: inf.slice(b * 4, b * 4 + 4),
    cur: c[b],
    len: sq[b * 4],
    ringSlot: h[b * histW + (q.history.length % histW)],
  }));
  [logits, hist, seq, cur, out, info].forEach((t) => t.destroy());
  return r;
}

/** Distance of u·Z from the nearest cumulative boundary of the reference's draw order, relative to Z. */
function boundaryDistance(probs: Float64Array, u: number): number {
  let cum = 0, best = Infinity;
  for (const i of drawOrder(probs.length)) {
    if (probs[i] === 0) continue;
    cum += probs[i];
    best = Math.min(best, Math.abs(cum - u));
  }
  return best;
}

function logSoftmax(l: Float32Array, i: number): number {
  const mx = Math.max(...l);
  let s = 0;
  for (const x of l) s += Math.exp(x - mx);
  return l[i] - mx - Math.log(s);
}

function randomSeq(rng: Rng, V: number, len: number, stream: number): Seq {
  return {
    logits: rng.uniformArray(V, -6, 6),
    history: Array.from({ length: len }, () => (rng.next() < 0.5 ? rng.int(8) : rng.int(V))),
    stream,
  };
}

async function checkAgainstRef(
  gpu: Gpu,
  V: number,
  s: SamplerSettings,
  rng: Rng,
  label: string,
  loads?: number,
) {
  const seqs = [randomSeq(rng, V, 30, 0), randomSeq(rng, V, 1, 5), randomSeq(rng, V, 200, 2)];
  const got = await draw(gpu, seqs, s, 64, loads);
  seqs.forEach((q, b) => {
    const window = q.history.slice(Math.max(0, q.history.length - s.repeatLastN));
    const u = samplerUniform(s.seed, q.stream, q.history.length);
    const ref = sampleRef(q.logits, window, s, u);
    const g = got[b];
    const what = `${label} V=${V} seq ${b}`;
    const count = ref.kept.filter((k) => k).length;
    assert.equal(g.info[2], count, `${what}: kept ${g.info[2]} tokens, reference ${count}`);
    assert.equal(g.info[0], Math.fround(ref.threshold), `${what}: smallest kept logit`);
    assert.ok(Math.abs(g.info[1] - ref.keptMass) <= 1e-5 * ref.keptMass, `${what}: kept mass ${g.info[1]}`);
    if (s.temp > 0) assert.equal(g.info[3], Math.fround(u), `${what}: u`);
    if (s.temp === 0 || boundaryDistance(ref.probs, u) > 1e-5) {
      assert.equal(g.token, ref.chosen, `${what}: token`);
    }
    assert.ok(ref.kept[g.token], `${what}: the drawn token ${g.token} is kept`);
    assert.ok(Math.abs(g.logprob - logSoftmax(q.logits, g.token)) <= 1e-5, `${what}: logprob`);
    assert.equal(g.cur, g.token);
    assert.equal(g.len, q.history.length + 1);
    assert.equal(g.ringSlot, g.token, `${what}: the history ring gets the token`);
  });
}

Deno.test(
  "sampler = float64 reference for each filter: greedy, temperature, top-k, top-p, min-p, penalty, ban",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(80);
    const cases: [string, Partial<SamplerSettings>][] = [
      ["greedy", { temp: 0 }],
      ["greedy + penalty", { temp: 0, repeatPenalty: 1.5, repeatLastN: 64 }],
      ["temperature", { temp: 0.7 }],
      ["top-k 1", { topK: 1 }],
      ["top-k 40", { topK: 40, temp: 0.8 }],
      ["top-p 0.9", { topP: 0.9 }],
      ["top-k 40 + top-p 0.5", { topK: 40, topP: 0.5 }],
      ["top-k 600 + top-p 0.8 (not gathered)", { topK: SAMPLER_GATHER + 88, topP: 0.8 }],
      ["min-p 0.05", { minP: 0.05, temp: 1.3 }],
      ["penalty 1.3 over 64", { repeatPenalty: 1.3, repeatLastN: 64, topK: 20 }],
      ["penalty 0.8 over 16", { repeatPenalty: 0.8, repeatLastN: 16 }],
      ["all filters", { temp: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, repeatLastN: 64 }],
    ];
    for (const [label, over] of cases) {
      for (const V of [1000, 300]) await checkAgainstRef(gpu, V, { ...BASE, ...over }, rng, label);
    }
    // Vocabularies over 8192 = 8 loads of 4 logits × 256 invocations (2048 with llvmpipe's 2 loads): passes
    // of several strides, a partial last one and a partial last unit.
    for (const [label, over] of [cases[0], cases[4], cases[5], cases[11]]) {
      await checkAgainstRef(gpu, 20001, { ...BASE, ...over }, rng, `${label}, V = 20001`);
      // both forms whatever this adapter uses: 8 unit loads in flight (GPUs) and 2 (llvmpipe)
      for (const loads of [8, 2]) {
        await checkAgainstRef(
          gpu,
          20001,
          { ...BASE, ...over },
          rng,
          `${label}, V = 20001, ${loads} loads`,
          loads,
        );
      }
    }
    // Top-k from the invocations' maxima: k at and past the 256 invocations, a vocabulary smaller than the
    // workgroup (invocations without ids), and ties that leave too many candidates (the full passes).
    for (const k of [NT_SAMPLER, NT_SAMPLER + 1]) {
      await checkAgainstRef(gpu, 1000, { ...BASE, topK: k, topP: 0.9 }, rng, `top-k ${k}`);
    }
    await checkAgainstRef(gpu, 200, { ...BASE, topK: 190, minP: 0.01 }, rng, "top-k 190 of 200");
    await checkTies(gpu, { ...BASE, topK: 40, topP: 0.9, minP: 0.05 });
    // A ban (EOS with --ignore-eos), a vocabulary of 1 and odd sizes.
    await checkAgainstRef(gpu, 257, { ...BASE, banned: 3, topK: 5 }, rng, "banned");
    await checkAgainstRef(gpu, 7, { ...BASE, topP: 0.6 }, rng, "tiny vocabulary");
    await checkAgainstRef(gpu, 1, { ...BASE, topK: 3 }, rng, "one token");
  },
);

const NT_SAMPLER = 256;

/** Logits with long runs of equal values (more logits ≥ any bound than the candidate buffer holds). */
async function checkTies(gpu: Gpu, s: SamplerSettings) {
  const V = 3000;
  const logits = Float32Array.from({ length: V }, (_, i) => (i % 7 === 0 ? 2 : i % 3 === 0 ? 1 : -1));
  const q = { logits, history: [1, 2, 3], stream: 4 };
  const [g] = await draw(gpu, [q], s);
  const u = samplerUniform(s.seed, q.stream, q.history.length);
  const ref = sampleRef(q.logits, q.history, s, u);
  assert.equal(g.info[2], ref.kept.filter((k) => k).length, "ties: kept count (every tie at the k-th value)");
  assert.equal(g.info[0], Math.fround(ref.threshold), "ties: smallest kept logit");
  assert.ok(ref.kept[g.token], "ties: the drawn token is kept");
  if (boundaryDistance(ref.probs, u) > 1e-5) assert.equal(g.token, ref.chosen, "ties: token");
}

Deno.test(
  "sampler: the penalty hits each distinct window token once, ties go to the lowest id",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const logits = Float32Array.from([1, 4, 4, 2, -1, 4, 0, 0, 0, 0]);
    // Token 1 three times in the window: divided by 2 once (4 → 2), so tokens 2 and 5 tie at 4: lowest id 2.
    const [g] = await draw(gpu, [{ logits, history: [1, 9, 1, 1], stream: 0 }], {
      ...BASE,
      temp: 0,
      repeatPenalty: 2,
      repeatLastN: 4,
    });
    assert.equal(g.token, 2);
    // Penalising 2 and 5 as well leaves 3 (2) and 1 (2): lowest id 1; a negative logit is multiplied.
    const [h] = await draw(gpu, [{ logits, history: [5, 2, 1, 4], stream: 0 }], {
      ...BASE,
      temp: 0,
      repeatPenalty: 2,
      repeatLastN: 4,
    });
    assert.equal(h.token, 1);
    // Outside the window (repeat_last_n = 2) token 1 is not penalised.
    const [k] = await draw(gpu, [{ logits, history: [1, 1, 9, 8], stream: 0 }], {
      ...BASE,
      temp: 0,
      repeatPenalty: 2,
      repeatLastN: 2,
    });
    assert.equal(k.token, 1);
  },
);

Deno.test("sampler: non-finite logits and an all-banned vocabulary give no token", gpuTest, async () => {
  const gpu = await testGpu();
  const [a] = await draw(gpu, [{ logits: Float32Array.from([0, NaN, 1]), history: [0], stream: 0 }], BASE);
  assert.equal(a.token, NO_TOKEN);
  const [b] = await draw(gpu, [{ logits: Float32Array.from([0, Infinity]), history: [0], stream: 0 }], BASE);
  assert.equal(b.token, NO_TOKEN);
  const [c] = await draw(gpu, [{ logits: Float32Array.from([2]), history: [0], stream: 0 }], {
    ...BASE,
    banned: 0,
  });
  assert.equal(c.token, NO_TOKEN);
});

Deno.test(
  "sampler: rows of logits must be a multiple of 4 long (they are read as vec4)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const [t, info] = [0, 1].map((i) => Tensor.empty(gpu, [64], "f32", `t${i}`));
    const [hist, seq, cur, out] = [0, 1, 2, 3].map((i) => Tensor.empty(gpu, [64], "u32", `u${i}`));
    const bufs = { logits: t, hist, seq, cur, out, info, nseq: 2, vocab: 6, histW: 1 };
    for (const stride of [undefined, 5, 10]) {
      assert.throws(
        () => gpu.run("x", (step) => sampleTokens(step, { ...bufs, stride }, BASE, 0)),
        /rows of (6|5|10) logits \(a multiple of 4, ≥ 6/,
      );
    }
    assert.equal(samplerStride(6), 8);
    gpu.run("x", (step) => sampleTokens(step, { ...bufs, stride: 8 }, BASE, 0));
    await gpu.sync();
    [t, info, hist, seq, cur, out].forEach((x) => x.destroy());
  },
);

Deno.test(
  "sampler: draws follow the filtered distribution (inverse CDF of a uniform hash)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    const s = { ...BASE, topP: 0.9 }; // drops the 0.05 token; the rest renormalised: 0.526, 0.316, 0.158
    const counts = [0, 0, 0, 0];
    const n = 8, draws = 40;
    const seqs = Array.from({ length: n }, (_, b) => ({ logits, history: [] as number[], stream: b }));
    for (let pos = 0; pos < draws; pos++) {
      for (const q of seqs) q.history = Array.from({ length: pos + 1 }, () => 0);
      for (const g of await draw(gpu, seqs, s)) counts[g.token]++;
    }
    const total = n * draws;
    const expect = [0.5, 0.3, 0.15].map((p) => p / 0.95);
    assert.equal(counts[3], 0, "top-p removed the last token");
    for (let i = 0; i < 3; i++) {
      const sd = Math.sqrt(total * expect[i] * (1 - expect[i]));
      assert.ok(Math.abs(counts[i] - total * expect[i]) < 4 * sd, `token ${i}: ${counts[i]} of ${total}`);
    }
  },
);

Deno.test("sampler hash: the CPU mirror is uniform and depends on seed, stream and position", () => {
  const bins = new Array(16).fill(0);
  const n = 64000;
  for (let i = 0; i < n; i++) bins[Math.floor(samplerUniform(7, i % 5, Math.floor(i / 5)) * 16)]++;
  for (const b of bins) assert.ok(Math.abs(b - n / 16) < 5 * Math.sqrt(n / 16), `bins ${bins}`);
  assert.notEqual(samplerUniform(1, 0, 0), samplerUniform(2, 0, 0));
  assert.notEqual(samplerUniform(1, 0, 0), samplerUniform(1, 1, 0));
  assert.notEqual(samplerUniform(1, 0, 0), samplerUniform(1, 0, 1));
});
