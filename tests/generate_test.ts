import assert from "node:assert/strict";
import { loadModel } from "../core/checkpoint.ts";
import { generate, Generator, type Prompt } from "../core/generate.ts";
import type { Gpu } from "../core/gpu.ts";
import { Activations, forward, type TnlModel, writeLogits } from "../core/model.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { errorStats } from "../core/stats.ts";
import { Tensor } from "../core/tensor.ts";
import type { SamplerSettings } from "../kernels/sample.ts";
import { assertClose, gpuTest, REPO_ROOT, testGpu } from "./_gpu.ts";

const TINY = `${REPO_ROOT}/testdata/tnl-tiny`;

export const GREEDY: SamplerSettings = {
  temp: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repeatPenalty: 1,
  repeatLastN: 0,
  seed: 0,
  banned: null,
  logprobs: true,
};
const SAMPLED: SamplerSettings = { ...GREEDY, temp: 0.9, topK: 40, topP: 0.95, minP: 0.05, seed: 77 };

async function fixture() {
  const f = await SafetensorsFile.open(`${TINY}/golden.safetensors`);
  const ids = await f.readInt("input_ids");
  const [B, T] = f.tensors.get("input_ids")!.shape;
  return { f, ids: Array.from(ids), B, T };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Logits [n, V] of the full (parallel) forward of `ids`. */
async function fullLogits(gpu: Gpu, model: TnlModel, ids: number[]): Promise<Float32Array> {
  const acts = new Activations(gpu, model.dims, 1, ids.length, false);
  acts.setBatch(ids, { train: false });
  const logits = Tensor.empty(gpu, [ids.length, model.dims.vocab], "f32", "logits");
  gpu.run("full forward", (step) => {
    forward(step, model, acts, { lossScale: 1 });
    writeLogits(step, model, acts, logits);
  });
  const out = await logits.readF32();
  logits.destroy();
  acts.destroy();
  return out;
}

Deno.test(
  "prefill + recurrent decode = the official decode logits, the full forward, and the final states",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const { model } = await loadModel(gpu, TINY);
    const g = await fixture();
    const gen = new Generator(model, { batch: g.B, sampling: GREEDY });
    try {
      const P = (await g.f.readInt("decode_prefill"))[0];
      const want = await g.f.readF32("decode_logits"); // [B, T − P + 1, V]
      const full = await g.f.readF32("logits"); // [B, T, V]
      const V = model.dims.vocab, steps = g.T - P + 1;
      const rows = (b: number) => g.ids.slice(b * g.T, (b + 1) * g.T);
      gen.prefill(Array.from({ length: g.B }, (_, b) => ({ ids: rows(b).slice(0, P) })));
      const got = new Float32Array(g.B * steps * V);
      for (let r = 0; r < steps; r++) {
        if (r > 0) {
          gen.setTokens(Array.from({ length: g.B }, (_, b) => rows(b)[P - 1 + r]));
          gpu.run("decode", (step) => gen.encodeForward(step));
        }
        const logits = await gen.logits.readF32();
        for (let b = 0; b < g.B; b++) got.set(logits.subarray(b * V, (b + 1) * V), (b * steps + r) * V);
        gpu.run("advance", (step) => gen.encodeSample(step, 0)); // the sampler moves the positions on
      }
      const dWant = maxAbs(got, want);
      assert.ok(dWant <= 1e-4, `decode logits vs the official decode: max |Δ| ${dWant}`);
      const fullRows = new Float32Array(got.length);
      for (let b = 0; b < g.B; b++) {
        fullRows.set(full.subarray((b * g.T + P - 1) * V, (b * g.T + g.T) * V), b * steps * V);
      }
      const dFull = maxAbs(got, fullRows);
      assert.ok(dFull <= 1e-4, `decode logits vs the full forward: max |Δ| ${dFull}`);
      for (let l = 0; l < model.dims.layers; l++) {
        const ref = await g.f.readF32(`state.${l}`);
        const ours = await gen.states[l].readF32();
        assert.deepEqual(gen.states[l].shape, g.f.tensors.get(`state.${l}`)!.shape);
        assertClose(ours, ref, 1e-5, `state.${l}`);
        assert.ok(maxAbs(ours, ref) <= 1e-4 * Math.max(...ref.map(Math.abs)), `state.${l} max |Δ|`);
      }
    } finally {
      gen.destroy();
      g.f.close();
      model.destroy();
    }
  },
);

Deno.test("greedy generation is the argmax chain of the full forward's logits", gpuTest, async () => {
  const gpu = await testGpu();
  const { model } = await loadModel(gpu, TINY);
  const g = await fixture();
  const gen = new Generator(model, { batch: 1, sampling: GREEDY });
  try {
    const prompt = g.ids.slice(0, 11);
    const [out] = await generate(gen, [{ ids: prompt }], { maxTokens: 24, eos: null, firstChunk: 3 });
    assert.equal(out.tokens.length, 24);
    assert.equal(out.stop, "limit");
    const all = [...prompt, ...out.tokens];
    const logits = await fullLogits(gpu, model, all);
    const V = model.dims.vocab;
    let checked = 0;
    for (let i = 0; i < out.tokens.length; i++) {
      const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
      const sorted = [...row].sort((a, b) => b - a);
      if (sorted[0] - sorted[1] < 1e-4) continue; // a near-tie may go either way in fp32
      assert.equal(out.tokens[i], row.indexOf(sorted[0]), `token ${i}`);
      // log-probability of the drawn token under the full forward
      let s = 0;
      for (const x of row) s += Math.exp(x - sorted[0]);
      assert.ok(Math.abs(out.logprobs[i] - (row[out.tokens[i]] - sorted[0] - Math.log(s))) <= 1e-4);
      checked++;
    }
    assert.ok(checked >= 20, `${checked} tokens checked`);
  } finally {
    gen.destroy();
    g.f.close();
    model.destroy();
  }
});

async function run(
  model: TnlModel,
  prompts: Prompt[],
  sampling: SamplerSettings,
  maxTokens = 20,
  eos: number | null = null,
) {
  const gen = new Generator(model, { batch: prompts.length, sampling, roundsPerSubmit: 3 });
  try {
    return await generate(gen, prompts, { maxTokens, eos, firstChunk: 2 });
  } finally {
    gen.destroy();
  }
}

Deno.test(
  "same seed, same tokens; batch generation equals one-by-one (greedy and sampled)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const { model } = await loadModel(gpu, TINY);
    const g = await fixture();
    try {
      // Prompts of different lengths; each keeps its stream id (its index), as `--prompts` numbers them.
      const prompts: Prompt[] = [
        { ids: g.ids.slice(0, 5), stream: 0 },
        { ids: g.ids.slice(96, 96 + 17), stream: 1 },
        { ids: g.ids.slice(40, 41), stream: 2 },
      ];
      for (const sampling of [GREEDY, SAMPLED, { ...SAMPLED, repeatPenalty: 1.3, repeatLastN: 8 }]) {
        const batch = await run(model, prompts, sampling);
        for (let i = 0; i < prompts.length; i++) {
          const [alone] = await run(model, [prompts[i]], sampling);
          assert.deepEqual(
            alone.tokens,
            batch[i].tokens,
            `prompt ${i} alone vs in the batch (temp ${sampling.temp})`,
          );
          assert.deepEqual(alone.logprobs, batch[i].logprobs);
        }
      }
      const a = await run(model, [prompts[1]], SAMPLED, 30);
      const b = await run(model, [prompts[1]], SAMPLED, 30);
      assert.deepEqual(a[0].tokens, b[0].tokens, "same seed, same tokens");
      const c = await run(model, [prompts[1]], { ...SAMPLED, seed: 78 }, 30);
      assert.notDeepEqual(a[0].tokens, c[0].tokens, "another seed, other tokens");
      const greedy = await run(model, [prompts[1]], GREEDY, 30);
      assert.notDeepEqual(a[0].tokens, greedy[0].tokens, "sampling is not greedy");
    } finally {
      g.f.close();
      model.destroy();
    }
  },
);

Deno.test("EOS and -n end generation; the EOS token is the last one", gpuTest, async () => {
  const gpu = await testGpu();
  const { model } = await loadModel(gpu, TINY);
  const g = await fixture();
  try {
    const prompt = { ids: g.ids.slice(0, 9) };
    const [free] = await run(model, [prompt], GREEDY, 12);
    assert.equal(free.stop, "limit");
    assert.equal(free.tokens.length, 12);
    // Declare the 6th greedy token the EOS: generation ends there (earlier if it came before).
    const eos = free.tokens[5];
    const [ended] = await run(model, [prompt], GREEDY, 12, eos);
    const at = free.tokens.indexOf(eos);
    assert.equal(ended.stop, "eos");
    assert.deepEqual(ended.tokens, free.tokens.slice(0, at + 1));
    // With the EOS banned (--ignore-eos) it never appears.
    const [banned] = await run(model, [prompt], { ...GREEDY, banned: eos }, 12, null);
    assert.ok(!banned.tokens.includes(eos));
    assert.equal(banned.tokens.length, 12);
    const [one] = await run(model, [prompt], GREEDY, 1);
    assert.deepEqual(one.tokens, free.tokens.slice(0, 1));
  } finally {
    g.f.close();
    model.destroy();
  }
});

Deno.test("a long decode (300 recurrent steps) stays within 1e-4 of the full forward", gpuTest, async () => {
  const gpu = await testGpu();
  const { model } = await loadModel(gpu, TINY);
  const g = await fixture();
  // The pad token (0) has a zero embedding: once drawn, this random model only repeats it, so it is banned.
  const pad = model.dims.padId;
  const gen = new Generator(model, { batch: 1, sampling: { ...GREEDY, banned: pad }, maxChunk: 128 });
  try {
    const prompt = g.ids.slice(0, 5);
    const [out] = await generate(gen, [{ ids: prompt }], { maxTokens: 300, eos: null, firstChunk: 64 });
    assert.ok(new Set(out.tokens).size > 20, "the chain does not collapse");
    const all = [...prompt, ...out.tokens];
    const logits = await fullLogits(gpu, model, all.slice(0, -1));
    const V = model.dims.vocab;
    // The decode's last logits (position 303, which drew the last token) against the full forward's; the
    // sampler set the banned token's logit to −∞ in place.
    const last = (await gen.logits.readF32()).filter((_, i) => i !== pad);
    const ref = logits.subarray((all.length - 2) * V, (all.length - 1) * V).filter((_, i) => i !== pad);
    const e = errorStats(last, ref);
    assert.ok(
      e.maxRef > 0.1 && e.maxAbs <= 1e-4,
      `position ${all.length - 2}: max |Δ| ${e.maxAbs} of ${e.maxRef}`,
    );
  } finally {
    gen.destroy();
    g.f.close();
    model.destroy();
  }
});
