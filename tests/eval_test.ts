import assert from "node:assert/strict";
import { trainBpe } from "../core/bpe_train.ts";
import { saveModel } from "../core/checkpoint.ts";
import { encodePair, evaluateChoices, parseChoiceTask } from "../core/choices.ts";
import { HF_DEFAULTS, presetConfig, resolveDims, type TnlConfig } from "../core/config.ts";
import { EXIT_CODES, TnlError } from "../core/errors.ts";
import {
  bitsPerByte,
  chunkRows,
  type EvalDocument,
  evaluatePerplexity,
  loadDocuments,
  Scorer,
} from "../core/eval.ts";
import type { Gpu } from "../core/gpu.ts";
import { Activations, forward, TnlModel } from "../core/model.ts";
import { loadModel } from "../core/checkpoint.ts";
import { Rng } from "../core/random.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { writeTokenFile } from "../core/tokenfile.ts";
import { loadTokenizer, type Tokenizer } from "../core/tokenizer.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";
import { gpuTest, REPO_ROOT, testGpu } from "./_gpu.ts";
import { oneErrorLine, tnl } from "./_cli.ts";

const TINY = `${REPO_ROOT}/testdata/tnl-tiny`;
const TASK = `${REPO_ROOT}/testdata/tasks/tiny-choices.jsonl`;
const LN2 = Math.LN2;

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

async function fixtureRows(): Promise<number[][]> {
  const f = await SafetensorsFile.open(`${TINY}/golden.safetensors`);
  try {
    const ids = await f.readInt("input_ids");
    const [B, T] = f.tensors.get("input_ids")!.shape;
    return Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * T, (b + 1) * T)));
  } finally {
    f.close();
  }
}

async function fixtureLoss(): Promise<number> {
  const f = await SafetensorsFile.open(`${TINY}/golden.safetensors`);
  try {
    return (await f.readF32("loss"))[0];
  } finally {
    f.close();
  }
}

Deno.test(
  "perplexity of the tiny fixture's ids = exp(the official loss), in one chunk, in chunks, and from a token file",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const { model } = await loadModel(gpu, TINY);
    const rows = await fixtureRows(), loss = await fixtureLoss();
    const dir = await Deno.makeTempDir();
    try {
      const docs = rows.map((ids, b) => ({ ids, bytes: null, label: `row ${b}` }));
      for (const chunk of [2048, 32, 7]) {
        const r = await evaluatePerplexity(model, docs, { bos: null, chunk });
        assert.equal(r.tokens, 2 * 95, "without BOS the first token of each document is context only");
        assert.ok(
          rel(r.perplexity, Math.exp(loss)) <= 1e-5,
          `chunk ${chunk}: ${r.perplexity} vs ${Math.exp(loss)}`,
        );
        assert.equal(r.bitsPerByte, null);
      }
      // The same ids as a token file, the documents separated by </s> (id 2, absent from the rows).
      assert.ok(rows.every((r) => !r.includes(2)));
      await writeTokenFile(`${dir}/ids.bin`, [...rows[0], 2, ...rows[1], 2], 256);
      const out = await tnl(["eval", "--model", TINY, `${dir}/ids.bin`, "--json", "--chunk", "40"]);
      assert.equal(out.code, 0, out.stderr);
      const j = JSON.parse(out.stdout);
      assert.equal(j.tokens, 190);
      assert.equal(j.documents, 2);
      assert.ok(rel(j.perplexity, Math.exp(loss)) <= 1e-5, `${j.perplexity}`);
      assert.ok(rel(j.loss, loss) <= 1e-5);
      assert.ok(!("bits_per_byte" in j), "no bytes without a tokenizer");
      assert.equal(j.constant_memory, true);
    } finally {
      model.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** Σ NLL of one sequence by the plain forward of the whole sequence (no chunks, no states). */
async function plainNll(gpu: Gpu, model: TnlModel, ids: readonly number[]): Promise<number> {
  const acts = new Activations(gpu, model.dims, 1, ids.length, false);
  const n = acts.setBatch(ids, { train: false });
  gpu.run("plain forward", (step) => forward(step, model, acts, { lossScale: 1 }));
  const rows = await acts.lossRows.readF32();
  acts.destroy();
  assert.equal(n, ids.length - 1);
  return rows.reduce((a, b) => a + b, 0);
}

Deno.test(
  "a long document in chunks (states carried, LRPE positions continued) = the whole in one forward",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    // LRPE on layer 0, three layers (three decay regimes), weights large enough that the states matter.
    const dims = resolveDims({
      ...presetConfig("tnl-tiny"),
      vocab_size: 300,
      decoder_layers: 3,
      linear_use_lrpe_list: [1, 0, 0],
    }, "test");
    const model = TnlModel.init(gpu, { ...dims, initStd: 0.15 }, 5);
    try {
      const rng = new Rng(6);
      const long = Array.from({ length: 700 }, () => 3 + rng.int(297));
      const whole = await plainNll(gpu, model, long);
      const doc = { ids: long, bytes: 1000, label: "long" };
      for (const chunk of [1024, 256, 100, 33]) {
        const r = await evaluatePerplexity(model, [doc], { bos: null, chunk });
        assert.equal(r.tokens, 699);
        assert.ok(rel(r.nll, whole) <= 1e-5, `chunk ${chunk}: Σ NLL ${r.nll} vs ${whole}`);
        assert.ok(rel(r.bitsPerByte!, whole / (LN2 * 1000)) <= 1e-5);
      }
      // Documents of different lengths batched together (padding, several chunks) score as each alone.
      const docs: EvalDocument[] = [
        doc,
        ...[1, 2, 40, 333].map((n, i) => ({
          ids: long.slice(i, i + n),
          bytes: n,
          label: `doc ${i}`,
        })),
      ];
      const batched = await evaluatePerplexity(model, docs, { bos: 1, chunk: 128, batchTokens: 1024 });
      for (const [i, d] of docs.entries()) {
        const alone = await plainNll(gpu, model, [1, ...Array.from(d.ids)]);
        const got = batched.perDocument[i];
        assert.equal(got.tokens, d.ids.length, "after BOS every token is predicted");
        assert.ok(rel(got.nll, alone) <= 1e-5, `${d.label}: ${got.nll} vs ${alone}`);
      }
    } finally {
      model.destroy();
    }
  },
);

Deno.test("chunk lengths: the chunk, or a power of two of at least 16 below it", () => {
  assert.deepEqual([1, 16, 17, 100, 2047, 2048, 5000].map((n) => chunkRows(n, 2048)), [
    16,
    16,
    32,
    128,
    2048,
    2048,
    2048,
  ]);
  assert.equal(chunkRows(70, 100), 100);
  assert.equal(chunkRows(3, 7), 7);
  assert.equal(bitsPerByte(10 * LN2, 4), 2.5);
});

// ---------------------------------------------------------------- the bigram model: NLL by hand

/**
 * Next-token probabilities of a model whose every layer is zero: the residual stream is the embedding,
 * SRMSNorm makes it √D·e_slot, and the LM head turns slot s into the logits log P(· | s). Tokens are the
 * bytes of a byte-level BPE without merges.
 */
const BIGRAM: Record<string, Record<string, number>> = {
  "</s>": { a: 1 / 2, b: 1 / 4, c: 1 / 4 },
  a: { a: 1 / 2, b: 1 / 4, " ": 1 / 4 },
  b: { a: 1 / 4, b: 1 / 4, c: 1 / 2 },
  c: { a: 1 / 2, " ": 1 / 2 },
  " ": { a: 1 / 4, b: 1 / 4, c: 1 / 2 },
};

/** Writes the bigram model (config, weights, tokenizer, tokenizer_config) into `dir`. */
async function bigramModel(gpu: Gpu, dir: string, bos: boolean): Promise<Tokenizer> {
  const tok = trainBpe(new Map([["a", 1]]), { vocabSize: 259 }); // specials + 256 bytes, no merges
  await Deno.writeTextFile(`${dir}/tokenizer.json`, tok.toJsonText());
  await Deno.writeTextFile(
    `${dir}/tokenizer_config.json`,
    JSON.stringify({ add_bos_token: bos, bos_token: "</s>", eos_token: "</s>" }),
  );
  const id = (s: string) => (s === "</s>" ? tok.tokenToId("</s>")! : tok.encode(s)[0]);
  const config: TnlConfig = {
    ...HF_DEFAULTS,
    vocab_size: 259,
    decoder_embed_dim: 8,
    hidden_dim: 8,
    decoder_layers: 2,
    decoder_attention_heads: 2,
    glu_dim: 8,
  };
  const dims = resolveDims(config, "bigram");
  const model = TnlModel.empty(gpu, dims);
  const D = dims.d, V = dims.vocab;
  const emb = new Float32Array(V * D), head = new Float32Array(V * D).fill(-40 / Math.sqrt(D));
  Object.keys(BIGRAM).forEach((from, slot) => {
    emb[id(from) * D + slot] = 1;
    for (const [to, p] of Object.entries(BIGRAM[from])) head[id(to) * D + slot] = Math.log(p) / Math.sqrt(D);
  });
  model.param("model.embed_tokens.weight").write(emb);
  model.param("lm_head.weight").write(head);
  await saveModel(model, config, dir);
  model.destroy();
  return await loadTokenizer(dir);
}

Deno.test(
  "bits per byte by hand: the bigram model on two documents, with BOS and without",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = await Deno.makeTempDir();
    try {
      await bigramModel(gpu, dir, true);
      // "aab": P(a|</s>) P(a|a) P(b|a) = 1/2 · 1/2 · 1/4 → 4 ln 2 over 3 bytes;
      // "ca c": 1/4 · 1/2 · 1/4 · 1/2 → 6 ln 2 over 4 bytes.
      await Deno.writeTextFile(`${dir}/docs.txt`, "aab\n\n\nca c\n");
      const j = JSON.parse(
        (await tnl(["eval", "--model", dir, `${dir}/docs.txt`, "--json", "--details"])).stdout,
      );
      assert.equal(j.tokens, 7);
      assert.equal(j.bytes, 7);
      assert.equal(j.documents, 2);
      assert.ok(Math.abs(j.bits_per_byte - 10 / 7) <= 1e-5, `bits per byte ${j.bits_per_byte}`);
      assert.ok(Math.abs(j.loss - (10 * LN2) / 7) <= 1e-5, `loss ${j.loss}`);
      assert.ok(rel(j.perplexity, 2 ** (10 / 7)) <= 1e-5);
      assert.deepEqual(j.details.map((d: { tokens: number; bytes: number }) => [d.tokens, d.bytes]), [
        [3, 3],
        [4, 4],
      ]);
      assert.ok(Math.abs(j.details[0].nll - 4 * LN2) <= 1e-5 && Math.abs(j.details[1].nll - 6 * LN2) <= 1e-5);
      const text = await tnl(["eval", "--model", dir, `${dir}/docs.txt`]);
      assert.match(
        text.stdout,
        /perplexity 2\.692, bits per byte 1\.4286 over 2 documents \(7 tokens, 7 bytes\), constant memory: chunks of 2048 tokens/,
      );
      // Without BOS the first token of each document is context only, and its byte is not counted:
      // "aab" → P(a|a) P(b|a) = 3 ln 2 over 2 bytes; "ca c" → 4 ln 2 over 3 bytes.
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ add_bos_token: false }));
      const n = JSON.parse((await tnl(["eval", "--model", dir, `${dir}/docs.txt`, "--json"])).stdout);
      assert.equal(n.tokens, 5);
      assert.equal(n.bytes, 5);
      assert.ok(Math.abs(n.bits_per_byte - 7 / 5) <= 1e-5, `${n.bits_per_byte}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "multiple choice by hand: the shipped tiny task with the bigram model (harness tokenization, acc, acc_norm)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = await Deno.makeTempDir();
    try {
      const tok = await bigramModel(gpu, dir, true);
      // Trailing whitespace of the context moves to the continuation; each part is encoded on its own.
      const pair = encodePair(tok, "c ", "a", [2]);
      assert.deepEqual(pair, { context: [2, ...tok.encode("c")], continuation: tok.encode(" a") });
      const items = parseChoiceTask(await Deno.readTextFile(TASK), TASK);
      const { model } = await loadModel(gpu, dir);
      const r = await evaluateChoices(model, tok, items, { bos: 2, eos: 2, path: TASK, chunk: 64 });
      model.destroy();
      // log-probabilities in units of ln 2, worked out in testdata/tasks/README.md
      const want = [[-2, -3], [-3, -2], [-1, -2, -3], [-1, -2]];
      r.details.forEach((d, i) => {
        d.logprobs.forEach((lp, j) =>
          assert.ok(Math.abs(lp - want[i][j] * LN2) <= 1e-5, `item ${i} choice ${j}: ${lp}`)
        );
      });
      assert.deepEqual(r.details.map((d) => [d.pred, d.pred_norm]), [[0, 1], [1, 1], [0, 0], [0, 0]]);
      assert.equal(r.acc, 0.5);
      assert.equal(r.acc_norm, 0.75);
      assert.equal(r.items, 4);
      // The CLI: the same figures, per-item details only with --json --details.
      const j = JSON.parse(
        (await tnl(["eval", "--model", dir, "--task", "choices", TASK, "--json", "--details"])).stdout,
      );
      assert.equal(j.acc, 0.5);
      assert.equal(j.acc_norm, 0.75);
      assert.deepEqual(j.details.map((d: { line: number }) => d.line), [1, 2, 3, 4]);
      const plain = JSON.parse(
        (await tnl(["eval", "--model", dir, "--task", "choices", TASK, "--json"])).stdout,
      );
      assert.ok(!("details" in plain));
      const text = await tnl(["eval", "--model", dir, "--task", "choices", TASK]);
      assert.match(text.stdout, /^acc 0\.5000 ± 0\.2887, acc_norm 0\.7500 ± 0\.2500 over 4 items/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "the scorer's batches give every sequence its own sums (targets anywhere, hits counted)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dims = resolveDims({ ...presetConfig("tnl-tiny"), vocab_size: 50 }, "test");
    const model = TnlModel.init(gpu, { ...dims, initStd: 0.3 }, 7);
    try {
      const rng = new Rng(8);
      const seqs = [5, 64, 17, 130].map((n, i) => {
        const ids = Array.from({ length: n + 1 }, () => rng.int(50));
        const targets = Int32Array.from(ids.slice(1), (y, t) => (t % 3 === 1 ? IGNORE_INDEX : y));
        return { inputs: ids.slice(0, n), targets, label: `seq ${i}` };
      });
      const together = await new Scorer(model, { chunk: 32, batchTokens: 256, hits: true }).score(seqs);
      for (const [i, s] of seqs.entries()) {
        const [alone] = await new Scorer(model, { chunk: 1024, hits: true }).score([s]);
        assert.equal(together[i].scored, s.targets.filter((y) => y !== IGNORE_INDEX).length);
        assert.equal(together[i].scored, alone.scored);
        assert.equal(together[i].hits, alone.hits, `${s.label} hits`);
        assert.ok(rel(together[i].nll, alone.nll) <= 1e-5, `${s.label}: ${together[i].nll} vs ${alone.nll}`);
      }
    } finally {
      model.destroy();
    }
  },
);

Deno.test("documents: text at blank lines with UTF-8 bytes, JSONL lines, token files at </s>", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = trainBpe(new Map([["a", 1]]), { vocabSize: 259 });
    await Deno.writeTextFile(`${dir}/t.txt`, "\n héllo\nwörld \n\n \n\tzz\n\n");
    await Deno.writeTextFile(`${dir}/t.jsonl`, '{"text": "é"}\n\n{"text": "ab"}\n');
    await writeTokenFile(`${dir}/t.bin`, [2, 97, 98, 2, 2, 99, 195, 169, 2], 259);
    const src = { tokenizer: tok, vocab: 259, eos: 2, bos: true, model: "m" };
    const docs = await loadDocuments([`${dir}/t.txt`, `${dir}/t.jsonl`, `${dir}/t.bin`], src);
    // " héllo\nwörld " is 15 bytes (é and ö take two), "\tzz" 3; a byte-level BPE without merges: a token each
    assert.deepEqual(docs.map((d) => d.bytes), [15, 3, 2, 2, 2, 3]);
    assert.deepEqual(docs.map((d) => d.ids.length), [15, 3, 2, 2, 2, 3]);
    assert.match(docs[0].label, /t\.txt: document 1$/);
    assert.match(docs[2].label, /t\.jsonl:1$/);
    assert.match(docs[4].label, /t\.bin: document 1 \(tokens 1\.\.2\)$/);
    // Without BOS the first token's bytes are left out; without a tokenizer token files have no bytes.
    const noBos = await loadDocuments([`${dir}/t.txt`], { ...src, bos: false });
    assert.deepEqual(noBos.map((d) => d.bytes), [14, 2]);
    const raw = await loadDocuments([`${dir}/t.bin`], { ...src, tokenizer: null });
    assert.deepEqual(raw.map((d) => d.bytes), [null, null]);
    await assert.rejects(
      () => loadDocuments([`${dir}/t.txt`], { ...src, tokenizer: null }),
      (e) =>
        e instanceof TnlError && e.kind === "input" &&
        /t\.txt is text, but m has no tokenizer/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "bad inputs: one line naming the file, line or value, with the right exit code",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = await Deno.makeTempDir();
    try {
      await bigramModel(gpu, dir, true);
      const task = (name: string, text: string) => {
        Deno.writeTextFileSync(`${dir}/${name}`, text);
        return `${dir}/${name}`;
      };
      const ok = '{"context": "a", "choices": ["b", "c"], "label": 0}';
      const cases: [string[], number, RegExp][] = [
        [
          ["--task", "choices", task("bad.jsonl", `${ok}\n\n{"context": "a", "choices": ["b"}\n`)],
          EXIT_CODES.input,
          /bad\.jsonl:3: not valid JSON/,
        ],
        [
          [
            "--task",
            "choices",
            task("range.jsonl", `${ok}\n{"context": "a", "choices": ["b", "c"], "label": 2}\n`),
          ],
          EXIT_CODES.input,
          /range\.jsonl:2: label 2 is out of range for 2 choices \(0\.\.1\)/,
        ],
        [
          ["--task", "choices", task("one.jsonl", '{"context": "a", "choices": ["b"], "label": 0}\n')],
          EXIT_CODES.input,
          /one\.jsonl:1: "choices" must be a list of at least 2 strings/,
        ],
        [
          ["--task", "choices", task("lab.jsonl", '{"context": "a", "choices": ["b", "c"], "label": "1"}\n')],
          EXIT_CODES.input,
          /lab\.jsonl:1: "label" must be an integer/,
        ],
        [
          ["--task", "choices", task("empty.jsonl", "\n\n")],
          EXIT_CODES.input,
          /empty\.jsonl: no items \(the file is empty\)/,
        ],
        [[task("empty.txt", "")], EXIT_CODES.input, /empty\.txt: the file is empty/],
        [[task("blank.txt", "\n \n")], EXIT_CODES.input, /blank\.txt: no documents/],
        [[`${dir}/missing.txt`], EXIT_CODES.io, /cannot read .*missing\.txt: no such file/],
        [["--task", "choices", `${dir}/missing.jsonl`], EXIT_CODES.io, /missing\.jsonl: no such file/],
        [[task("a.txt", "a"), "--pairs", "3"], EXIT_CODES.usage, /--pairs is an option of --task mqar/],
        [["--task", "mqar", "--pairs", "200", "--seq-len", "64"], EXIT_CODES.input, /pairs = 200/],
        [
          ["--task", "mqar", "--vocab", "1000"],
          EXIT_CODES.input,
          /--vocab 1000 is larger than the model's vocabulary of 259/,
        ],
        [[], EXIT_CODES.usage, /give FILES to evaluate/],
      ];
      for (const [args, code, message] of cases) {
        const r = await tnl(["eval", "--model", dir, ...args]);
        assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
        assert.match(oneErrorLine(r.stderr), message, args.join(" "));
        assert.equal(r.stdout, "");
      }
      // Ids outside the vocabulary (a token file of a larger vocabulary) and text without a tokenizer.
      await writeTokenFile(`${dir}/big.bin`, [5, 6, 300, 2], 400);
      const big = await tnl(["eval", "--model", dir, `${dir}/big.bin`]);
      assert.equal(big.code, EXIT_CODES.input);
      assert.match(
        oneErrorLine(big.stderr),
        /big\.bin: document 1 \(tokens 0\.\.2\): token 2 has id 300, outside the model's vocabulary of 259/,
      );
      const plain = await tnl(["eval", "--model", TINY, `${dir}/a.txt`]);
      assert.equal(plain.code, EXIT_CODES.input);
      assert.match(oneErrorLine(plain.stderr), /a\.txt is text, but .*tnl-tiny has no tokenizer/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
