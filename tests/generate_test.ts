import assert from "node:assert/strict";
import { BenchReportSchema, runBench } from "../core/bench.ts";
import { loadModel, saveModel } from "../core/checkpoint.ts";
import { presetConfig, resolveDims } from "../core/config.ts";
import {
  BRIDGE_MAX_ROUNDS,
  continuationDecoder,
  generate,
  Generator,
  type Prompt,
  StopText,
} from "../core/generate.ts";
import { type ErrorKind, TnlError } from "../core/errors.ts";
import { buildCli } from "../main.ts";
import type { Gpu } from "../core/gpu.ts";
import { Activations, forward, TnlModel, writeLogits } from "../core/model.ts";
import { modelBenchCases } from "../core/model_bench.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { errorStats } from "../core/stats.ts";
import { Tensor } from "../core/tensor.ts";
import { loadTokenizer } from "../core/tokenizer.ts";
import type { SamplerSettings } from "../kernels/sample.ts";
import { assertClose, gpuTest, REPO_ROOT, testGpu } from "./_gpu.ts";
import { oneErrorLine, tnl } from "./_cli.ts";
import { f16BitsToF32, f32ToF16Bits } from "../core/half.ts";

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

/** Logits of teacher-forced decode steps after a prefill of `prefill` tokens of each fixture row, [rows, steps, V]. */
async function decodeLogits(gen: Generator, rows: number[][], prefill: number, steps: number) {
  const V = gen.dims.vocab;
  gen.prefill(rows.map((r) => ({ ids: r.slice(0, prefill) })));
  const out = new Float32Array(rows.length * steps * V);
  for (let r = 0; r < steps; r++) {
    if (r > 0) {
      gen.setTokens(rows.map((row) => row[prefill - 1 + r]));
      gen.gpu.run("decode", (step) => gen.encodeForward(step));
    }
    const logits = await gen.readLogits();
    for (let b = 0; b < rows.length; b++) out.set(logits.subarray(b * V, (b + 1) * V), (b * steps + r) * V);
    gen.gpu.run("advance", (step) => gen.encodeSample(step, 0));
  }
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
      const rows = Array.from({ length: g.B }, (_, b) => g.ids.slice(b * g.T, (b + 1) * g.T));
      const got = await decodeLogits(gen, rows, P, steps);
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

Deno.test(
  "decode with f16 weights: exact on f16-representable weights, near f32 on the fixture",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const g = await fixture();
    const rows = Array.from({ length: g.B }, (_, b) => g.ids.slice(b * g.T, (b + 1) * g.T));
    const steps = 6, prefill = g.T - steps + 1;
    // The fixture's weights rounded to f16 everywhere: the f16 copies then hold the very values the f32
    // GEMVs read, and the sums run in the same order, so the two decodes must agree bit for bit.
    const { model: rounded } = await loadModel(gpu, TINY);
    const p = await rounded.params.readF32();
    rounded.params.write(Float32Array.from(p, (x) => f16BitsToF32(f32ToF16Bits(x))));
    const { model } = await loadModel(gpu, TINY);
    const gens: Generator[] = [];
    const make = (m: TnlModel, weights: "f32" | "f16") => {
      const gen = new Generator(m, { batch: g.B, sampling: GREEDY, weights });
      gens.push(gen);
      return gen;
    };
    try {
      const exact16 = await decodeLogits(make(rounded, "f16"), rows, prefill, steps);
      const exact32 = await decodeLogits(make(rounded, "f32"), rows, prefill, steps);
      assert.equal(maxAbs(exact16, exact32), 0, "f16 weights = f32 weights holding the same values");
      const ours16 = await decodeLogits(make(model, "f16"), rows, prefill, steps);
      const ours32 = await decodeLogits(make(model, "f32"), rows, prefill, steps);
      // Rounding the GEMV weights to f16 (relative 2^-11) moves the fixture's logits by max |Δ| 1.2e-4
      // (‖Δ‖/‖ref‖ 1.6e-4) on lavapipe; the bound leaves a margin of 8×.
      const st = errorStats(ours16, ours32);
      assert.ok(st.maxAbs > 0 && st.maxAbs <= 1e-3, `f16 vs f32 decode logits: max |Δ| ${st.maxAbs}`);
      assert.ok(st.rel <= 1.5e-3, `f16 vs f32 decode logits: ‖Δ‖/‖ref‖ ${st.rel}`);
    } finally {
      gens.forEach((x) => x.destroy());
      g.f.close();
      model.destroy();
      rounded.destroy();
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
  weights: "f32" | "f16" = "f32",
) {
  const gen = new Generator(model, { batch: prompts.length, sampling, roundsPerSubmit: 3, weights });
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
    // The chunks read back: 4 rounds, then ×4 each (fewer ~11 ms readbacks), the last cut at -n.
    const gen = new Generator(model, { batch: 1, sampling: GREEDY });
    try {
      const sizes: number[] = [];
      let seen = 0;
      await generate(gen, [prompt], {
        maxTokens: 100,
        eos: null,
        onToken: () => void seen++,
        onChunk: () => void sizes.push(seen - sizes.reduce((a, b) => a + b, 0)),
      });
      assert.deepEqual(sizes, [4, 16, 64, 16]);
      // A stop inside the second chunk (rounds 4..19): the third chunk's first rounds, submitted while the
      // second was read back, are dropped (at most BRIDGE_MAX_ROUNDS of them), and the generator's next
      // generation is not changed by them.
      const [long] = await generate(gen, [prompt], { maxTokens: 30, eos: null });
      const i = long.tokens.findIndex((t, k) => k >= 4 && k < 19 && long.tokens.indexOf(t) === k);
      assert.ok(i >= 4, "a token first drawn in the second chunk");
      const [stopped] = await generate(gen, [prompt], { maxTokens: 30, eos: long.tokens[i] });
      assert.deepEqual(stopped.tokens, long.tokens.slice(0, i + 1));
      const ahead = gen.lengths[0] - prompt.ids.length - 20;
      assert.ok(ahead >= 1 && ahead <= Math.min(10, BRIDGE_MAX_ROUNDS), `${ahead} rounds submitted ahead`);
      const [again] = await generate(gen, [prompt], { maxTokens: 30, eos: null });
      assert.deepEqual(again.tokens, long.tokens);
    } finally {
      gen.destroy();
    }
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
    const last = (await gen.readLogits()).filter((_, i) => i !== pad);
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

// ---------------------------------------------------------------- the CLI

/** `tnl generate ARGS` (stdin: the text piped in). */
const generateCli = (args: string[], stdin?: string) =>
  tnl(["generate", ...args], { stdin: stdin === undefined ? undefined : new TextEncoder().encode(stdin) });

Deno.test(
  "tnl generate --prompt-ids on the fixture: greedy ids as the library draws them, EOS from config.json",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const { model } = await loadModel(gpu, TINY);
    const dir = await Deno.makeTempDir();
    try {
      const ids = [3, 141, 59, 26, 5];
      const [lib] = await run(model, [{ ids }], GREEDY, 10);
      const greedy10 = ["--model", TINY, "--prompt-ids", ids.join(","), "-n", "10", "--temp", "0"];
      const r = await generateCli([...greedy10, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.deepEqual(j.tokens, lib.tokens);
      assert.equal(j.content, null, "no tokenizer: ids only");
      assert.equal(j.stop_type, "limit");
      assert.equal(j.prompt_n, 5);
      for (const k of ["load_ms", "prompt_n", "prompt_per_second", "predicted_n", "predicted_per_second"]) {
        assert.equal(typeof j.timings[k], "number", k);
      }
      assert.equal(j.timings.predicted_n, 10);
      // Plain output: the ids on one line.
      const plain = await generateCli([
        "--model",
        TINY,
        "--prompt-ids",
        ids.join(" "),
        "-n",
        "10",
        "--temp",
        "0",
      ]);
      assert.equal(plain.stdout.trim(), lib.tokens.join(" "));
      // --echo: the prompt's ids first.
      const echoed = await generateCli([...greedy10, "--echo"]);
      assert.equal(echoed.stdout, [...ids, ...lib.tokens].join(" ") + "\n");
      // --weights f16: the library's draws with f16 decode weights.
      const [lib16] = await run(model, [{ ids }], GREEDY, 10, null, "f16");
      const half = await generateCli([...greedy10, "--weights", "f16"]);
      assert.equal(half.code, 0, half.stderr);
      assert.equal(half.stdout.trim(), lib16.tokens.join(" "));
      // The same model with the 4th greedy token as its EOS stops there (the EOS id is reported last).
      for (const f of ["config.json", "model.safetensors"]) {
        await Deno.copyFile(`${TINY}/${f}`, `${dir}/${f}`);
      }
      const config = JSON.parse(await Deno.readTextFile(`${TINY}/config.json`));
      const eos = lib.tokens[3];
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, eos_token_id: eos }));
      const e = await generateCli([
        "--model",
        dir,
        "--prompt-ids",
        ids.join(","),
        "-n",
        "10",
        "--temp",
        "0",
        "--json",
      ]);
      assert.equal(e.code, 0, e.stderr);
      const je = JSON.parse(e.stdout);
      assert.equal(je.stop_type, "eos");
      assert.deepEqual(je.tokens, lib.tokens.slice(0, lib.tokens.indexOf(eos) + 1));
    } finally {
      await Deno.remove(dir, { recursive: true });
      model.destroy();
    }
  },
);

/** A random tnl-tiny-shaped model with the 2000-token byte-level BPE of testdata/tokenizers, BOS on. */
async function textModel(gpu: Gpu, dir: string) {
  const config = { ...presetConfig("tnl-tiny"), vocab_size: 2000, eos_token_id: 2, bos_token_id: 1 };
  const model = TnlModel.init(gpu, { ...resolveDims(config, "test"), initStd: 0.5 }, 9);
  await saveModel(model, config, dir);
  model.destroy();
  await Deno.copyFile(`${REPO_ROOT}/testdata/tokenizers/hf-bytelevel-bpe-2k.json`, `${dir}/tokenizer.json`);
  await Deno.writeTextFile(
    `${dir}/tokenizer_config.json`,
    JSON.stringify({ add_bos_token: true, bos_token: "</s>", eos_token: "</s>" }),
  );
  return await loadTokenizer(dir);
}

Deno.test(
  "tnl generate with a tokenizer: BOS, streamed text = --json content = decoded ids, --stop, -f, --prompts",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = await Deno.makeTempDir();
    try {
      const tok = await textModel(gpu, dir);
      const prompt = "Once upon a time";
      const common = ["--model", dir, "-n", "24", "--temp", "0"];
      const j = JSON.parse((await generateCli([...common, prompt, "--json"])).stdout);
      assert.equal(j.prompt_n, 1 + tok.encode(prompt).length, "</s> is prepended as BOS");
      assert.equal(j.content, tok.decode(j.tokens));
      assert.ok(j.content.length > 10);
      const streamed = await generateCli([...common, prompt]);
      assert.equal(streamed.code, 0, streamed.stderr);
      assert.equal(streamed.stdout, j.content.endsWith("\n") ? j.content : j.content + "\n");
      assert.match(streamed.stderr, /generated 24 tokens/);
      // --echo: the prompt as given, then the same continuation.
      const echoed = await generateCli([...common, prompt, "--echo"]);
      assert.equal(echoed.stdout, prompt + streamed.stdout);
      // A stop string from the middle of the text: the text ends before its first occurrence.
      const m = /[a-z]{3}/.exec(j.content.slice(6))!;
      const stop = m[0], at = j.content.indexOf(stop);
      const s = JSON.parse(
        (await generateCli([...common, prompt, "--json", "--stop", "zzzq", "--stop", stop])).stdout,
      );
      assert.equal(s.stop_type, "word");
      assert.equal(s.stopping_word, stop);
      assert.equal(s.content, j.content.slice(0, at));
      assert.ok(s.tokens.length < j.tokens.length);
      assert.deepEqual(s.tokens, j.tokens.slice(0, s.tokens.length));
      const ss = await generateCli([...common, prompt, "--stop", stop]);
      assert.equal(ss.stdout, s.content + "\n");
      // -f - reads the prompt from stdin; --prompts generates a batch, each as alone (greedy).
      const fs = JSON.parse((await generateCli([...common, "-f", "-", "--json"], prompt)).stdout);
      assert.deepEqual(fs.tokens, j.tokens);
      await Deno.writeTextFile(`${dir}/prompts.txt`, `The dog\n${prompt}\nIt was\n`);
      const b = JSON.parse(
        (await generateCli([...common, "--prompts", `${dir}/prompts.txt`, "--json"])).stdout,
      );
      assert.equal(b.results.length, 3);
      assert.deepEqual(b.results[1].tokens, j.tokens);
      assert.equal(b.results[1].content, j.content);
      const be = await generateCli([...common, "--prompts", `${dir}/prompts.txt`, "--echo"]);
      const lines = ["The dog", prompt, "It was"].map((x, i) => x + b.results[i].content).join("\n");
      assert.equal(be.stdout, lines.endsWith("\n") ? lines : lines + "\n");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "tnl generate: same seed, same text; -s -1 prints the seed it drew; logprobs",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = await Deno.makeTempDir();
    try {
      await textModel(gpu, dir);
      const args = [
        "--model",
        dir,
        "-n",
        "16",
        "--temp",
        "1",
        "--top-k",
        "0",
        "--top-p",
        "1",
        "--min-p",
        "0",
        "Hello",
      ];
      const a = JSON.parse((await generateCli([...args, "-s", "5", "--json", "--logprobs"])).stdout);
      const b = JSON.parse((await generateCli([...args, "-s", "5", "--json"])).stdout);
      assert.deepEqual(a.tokens, b.tokens);
      assert.equal(a.content, b.content);
      assert.equal(a.logprobs.length, 16);
      assert.ok(a.logprobs.every((x: { logprob: number }) => x.logprob < 0 && Number.isFinite(x.logprob)));
      assert.equal(typeof a.logprobs[0].token, "string");
      const r = await generateCli([...args, "--json"]);
      const seed = Number(/seed: (\d+)/.exec(r.stderr)![1]);
      assert.equal(JSON.parse(r.stdout).seed, seed);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("tnl generate: bad flags and inputs are one-line errors of the right kind", gpuTest, async () => {
  const ids = ["--model", TINY, "--prompt-ids", "1,2"];
  const cases: [string[], ErrorKind, RegExp][] = [
    [[...ids, "--top-p", "1.5"], "usage", /--top-p 1.5: expected a number in \(0, 1\]/],
    [[...ids, "--top-p", "0"], "usage", /--top-p 0/],
    [[...ids, "-n", "-2"], "usage", /-n\/--n-predict -2: expected -1/],
    [[...ids, "--temp", "-0.5"], "usage", /--temp -0.5: expected a number ≥ 0/],
    [[...ids, "--top-k", "-1"], "usage", /--top-k -1/],
    [[...ids, "--min-p", "2"], "usage", /--min-p 2/],
    [[...ids, "--repeat-last-n", "-1"], "usage", /--repeat-last-n -1/],
    [[...ids, "-s", "4294967296"], "usage", /-s\/--seed 4294967296/],
    [
      ["--model", TINY, "--prompt-ids", "1,256,3"],
      "input",
      /id 256 at position 1 is outside the model's vocabulary of 256/,
    ],
    [["--model", TINY, "--prompt-ids", "1,x"], "usage", /'x' at position 1 is not a token id/],
    [["--model", TINY, ""], "usage", /the prompt is empty/],
    [["--model", TINY, "--prompt-ids", " "], "usage", /the prompt is empty/],
    [["--model", TINY, "text"], "input", /has no tokenizer.*--prompt-ids/],
    [["--model", TINY], "usage", /give a prompt/],
    [["--model", TINY, "a", "--prompt-ids", "1"], "usage", /one prompt source/],
    [["--model", `${TINY}/missing`, "--prompt-ids", "1"], "io", /cannot read .*missing\/config.json/],
    [["--model", TINY, "-f", `${TINY}/missing.txt`], "io", /cannot read .*missing.txt/],
    [[...ids, "--stop", ""], "usage", /stop string is empty/],
    [[...ids, "--logprobs"], "usage", /--logprobs needs --json/],
    [[...ids, "--echo", "--json"], "usage", /--echo applies to text output/],
    [[...ids, "--weights", "bf16"], "usage", /--weights bf16: expected f32 or f16/],
  ];
  for (const [args, kind, pattern] of cases) {
    await assert.rejects(() => buildCli().parseAsync(["generate", ...args], { from: "user" }), (e) => {
      assert.ok(e instanceof TnlError, `${args.join(" ")}: ${e}`);
      assert.equal(e.kind, kind, `${args.join(" ")}: ${e.message}`);
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
  // As a process: the exit code of the kind, one line on stderr, nothing on stdout.
  for (
    const [args, code] of [[[...ids, "--top-p", "1.5"], 2], [
      ["--model", TINY, "--prompt-ids", "300"],
      3,
    ]] as const
  ) {
    const r = await generateCli([...args]);
    assert.equal(r.code, code, r.stderr);
    oneErrorLine(r.stderr);
    assert.equal(r.stdout, "");
  }
});

Deno.test("stop strings: the text ends before the first one; streaming holds back a possible start", () => {
  const t = new StopText(["END", "xyz"]);
  const shown: string[] = [];
  for (const d of ["Hello E", "N", "x", "y fine ", "EN", "D and more"]) {
    if (t.push(d)) break;
    shown.push(t.take());
  }
  assert.deepEqual(shown, ["Hello ", "", "EN", "xy fine ", ""]);
  assert.equal(t.stop, "END");
  assert.equal(t.text, "Hello ENxy fine ");
  assert.equal(t.take(true), "");
  const u = new StopText(["ab"]);
  u.push("xa");
  assert.equal(u.take(), "x");
  assert.equal(u.take(true), "a", "at the end the held tail is shown");
  const none = new StopText([]);
  none.push("abc");
  assert.equal(none.take(), "abc");
});

Deno.test("tnl bench model: prefill and decode cases report tokens/s", gpuTest, async () => {
  const gpu = await testGpu();
  const cases = modelBenchCases({
    preset: "tnl-tiny",
    batch: 1,
    seq: 16,
    vocab: 256,
    prefill: 40,
    positions: [8, 70],
    decodeTokens: 6,
  }).filter((c) => c.name !== "train-step");
  const r = await runBench(gpu, cases, { quick: true, repeats: 2, warmup: 1 });
  BenchReportSchema.parse(r);
  assert.deepEqual(r.cases.map((c) => [c.name, c.shape.T ?? c.shape.position]), [
    ["prefill", 40],
    ["decode", 8],
    ["decode", 70],
  ]);
  for (const c of r.cases) {
    const tps = c.throughput.find((t) => t.unit === "tokens/s")!;
    assert.ok(tps.value > 0 && c.median_ms > 0, JSON.stringify(c));
  }
});

Deno.test("continuation text keeps the space SentencePiece drops at the start of a decode", async () => {
  for (const file of ["sp-bpe-2k.model", "hf-bytelevel-bpe-2k.json"]) {
    const tok = await loadTokenizer(`${REPO_ROOT}/testdata/tokenizers/${file}`);
    const ids = tok.encode("Once upon a time there was a dog.");
    for (const k of [1, 3, ids.length - 2]) {
      const stream = continuationDecoder(tok, ids.slice(0, k));
      const text = ids.slice(k).map((id) => stream.push(id)).join("") + stream.flush();
      const whole = tok.decode(ids), head = tok.decode(ids.slice(0, k));
      assert.ok(whole.startsWith(head));
      assert.equal(text, whole.slice(head.length), `${file}, prompt of ${k} tokens`);
    }
  }
});

Deno.test(
  "a prompt prefilled in chunks (states carried, positions continued) = in one forward: logits, states, tokens",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const { model } = await loadModel(gpu, TINY);
    const g = await fixture();
    const prompt = { ids: g.ids.slice(0, 90) };
    const run = async (prefillChunk: number) => {
      const gen = new Generator(model, { batch: 1, sampling: GREEDY, prefillChunk });
      try {
        gen.prefill([prompt]);
        const logits = await gen.readLogits();
        const states = await Promise.all(gen.states.map((s) => s.readF32()));
        gen.prefill([prompt]);
        const [out] = await generate(gen, [prompt], { maxTokens: 12, eos: null });
        return { logits, states, tokens: out.tokens };
      } finally {
        gen.destroy();
      }
    };
    try {
      const whole = await run(4096);
      for (const chunk of [32, 7]) {
        const parts = await run(chunk);
        assertClose(parts.logits, whole.logits, 1e-5, `chunks of ${chunk}: logits of the last position`);
        parts.states.forEach((s, l) =>
          assertClose(s, whole.states[l], 1e-5, `chunks of ${chunk}: state ${l}`)
        );
        assert.deepEqual(parts.tokens, whole.tokens, `chunks of ${chunk}: greedy tokens`);
      }
    } finally {
      g.f.close();
      model.destroy();
    }
  },
);
