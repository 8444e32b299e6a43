// Evaluation at constant memory: token sequences of any length are scored chunk by chunk, each chunk's
// forward starting every layer's attention from the recurrent state the previous chunk left (decayed to its
// last token, as generation's prefill leaves it) with LRPE positions continuing, so a document of a million
// tokens needs the buffers of one chunk. Per-position NLL (and greedy hits) come from the LM head's fused
// cross-entropy; each sequence's sums accumulate on the GPU and are read once per batch of sequences.
// On top of the scorer: perplexity and bits per byte of documents (text split at blank lines, token files
// at </s>), with each document scored from a fresh state after the configured BOS.

import { ioError, TnlError } from "./errors.ts";
import { Activations, forwardHidden, type TnlModel } from "./model.ts";
import { parseNpy } from "./data.ts";
import { checkMqar, MqarSampler, type MqarSettings, mqarValues } from "./mqar.ts";
import { Tensor } from "./tensor.ts";
import { readTokenFileWithHeader, splitDocuments } from "./tokenfile.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";
import { fill } from "../kernels/elementwise.ts";
import { lmHeadLoss } from "../kernels/layers.ts";
import { matmul } from "../kernels/matmul.ts";

/** Default tokens per chunk. */
export const EVAL_CHUNK = 2048;
/** Default most positions of one forward over all sequences of a batch. */
export const EVAL_BATCH_TOKENS = 8192;
/** Recurrent states of sequences that span several chunks take at most this much memory (two sets). */
const STATE_BUDGET_BYTES = 1 << 30;
/** Chunk lengths shorter than the chunk are rounded up to a power of two, at least this. */
const MIN_ROWS = 16;

/** A sequence to score: position t reads inputs[t] and predicts targets[t] (IGNORE_INDEX: not scored). */
export interface ScoreItem {
  inputs: ArrayLike<number>;
  targets: ArrayLike<number>;
  /** names the sequence in errors, e.g. "test.txt: document 3" */
  label: string;
}

export interface ItemScore {
  /** Σ NLL over the scored positions, in nats */
  nll: number;
  /** scored positions whose target was the unique greedy prediction (counted with `hits`) */
  hits: number;
  /** scored positions */
  scored: number;
}

export interface ScorerOptions {
  /** positions of one sequence per forward (default EVAL_CHUNK): memory does not grow beyond it */
  chunk?: number;
  /** positions of one forward over a batch of sequences, B·T (default max(chunk, EVAL_BATCH_TOKENS)) */
  batchTokens?: number;
  /** count greedy hits (accuracy) too */
  hits?: boolean;
  /** after each batch: scored positions done and in all */
  onProgress?: (done: number, total: number) => void;
}

/** The length a chunk of `n` positions is run at: the chunk, or a power of two ≥ n below it. */
export function chunkRows(n: number, chunk: number): number {
  if (n >= chunk) return chunk;
  return Math.min(chunk, Math.max(MIN_ROWS, 2 ** Math.ceil(Math.log2(Math.max(1, n)))));
}

/**
 * Scores sequences with one model. Sequences are sorted by length and run in batches of B sequences of one
 * chunk length (shorter ones padded with ignored positions, which causal attention keeps from influencing
 * the others); a sequence longer than the chunk takes several forwards, the recurrent states ping-ponging
 * between two sets of per-layer buffers.
 */
export class Scorer {
  readonly chunk: number;
  readonly batchTokens: number;
  #acts = new Map<string, Activations>();
  #states: [Tensor[], Tensor[]] | null = null;
  #stateBatch = 0;
  #ones: Tensor;
  #sums: Tensor | null = null;
  #sumsBatch = 0;
  #hitRows: Tensor | null = null;
  #logits: Tensor | null = null;

  constructor(readonly model: TnlModel, readonly opts: ScorerOptions = {}) {
    this.chunk = opts.chunk ?? EVAL_CHUNK;
    if (!Number.isSafeInteger(this.chunk) || this.chunk < 1) {
      throw new TnlError("usage", `chunk of ${this.chunk} tokens: expected a positive integer`);
    }
    this.batchTokens = opts.batchTokens ?? Math.max(this.chunk, EVAL_BATCH_TOKENS);
    if (!Number.isSafeInteger(this.batchTokens) || this.batchTokens < this.chunk) {
      throw new TnlError(
        "usage",
        `batch of ${this.batchTokens} tokens: expected an integer ≥ the chunk (${this.chunk})`,
      );
    }
    this.#ones = Tensor.empty(model.gpu, [this.chunk], "f32", "eval ones");
    model.gpu.run("eval ones", (step) => fill(step, this.#ones, 1));
  }

  /** Bytes of the recurrent states of one sequence (all layers). */
  get stateBytesPerSequence(): number {
    const m = this.model.dims;
    return m.lrpe.reduce((a, lrpe) => a + 4 * m.heads * (lrpe ? 2 : 1) * m.headDim * m.headDim, 0);
  }

  /** Scores every item (in the given order); one readback per batch. */
  async score(items: readonly ScoreItem[]): Promise<ItemScore[]> {
    checkItems(items, this.model.dims.vocab);
    const out: ItemScore[] = items.map(() => ({ nll: 0, hits: 0, scored: 0 }));
    const order = items.map((_, i) => i).filter((i) => items[i].inputs.length > 0);
    order.sort((a, b) => items[b].inputs.length - items[a].inputs.length || a - b);
    let total = 0;
    for (const it of items) {
      for (let t = 0; t < it.targets.length; t++) if (it.targets[t] !== IGNORE_INDEX) total++;
    }
    let done = 0;
    const maxMulti = Math.max(1, Math.floor(STATE_BUDGET_BYTES / (2 * this.stateBytesPerSequence)));
    for (let i0 = 0; i0 < order.length;) {
      const longest = items[order[i0]].inputs.length;
      const T1 = chunkRows(longest, this.chunk);
      let B = Math.min(order.length - i0, Math.max(1, Math.floor(this.batchTokens / T1)));
      if (longest > this.chunk) B = Math.min(B, maxMulti);
      const batch = order.slice(i0, i0 + B).map((i) => items[i]);
      const sums = await this.#scoreBatch(batch);
      batch.forEach((it, b) => {
        const r = out[order[i0 + b]];
        r.nll = sums.nll[b];
        r.hits = sums.hits[b];
        for (let t = 0; t < it.targets.length; t++) if (it.targets[t] !== IGNORE_INDEX) r.scored++;
        done += r.scored;
      });
      this.opts.onProgress?.(done, total);
      i0 += B;
    }
    return out;
  }

  async #scoreBatch(batch: readonly ScoreItem[]): Promise<{ nll: Float64Array; hits: Float64Array }> {
    const gpu = this.model.gpu, m = this.model.dims, C = this.chunk, B = batch.length;
    const longest = Math.max(...batch.map((it) => it.inputs.length));
    const chunks = Math.ceil(longest / C);
    const sums = this.#sumsFor(B);
    const nllSums = Tensor.part(sums, 0, [B], "nll sums");
    const hitSums = Tensor.part(sums, this.#sumsBatch, [B], "hit sums");
    const sets = chunks > 1 ? this.#statesFor(B) : null;
    for (let k = 0; k < chunks; k++) {
      const t0 = k * C, last = k === chunks - 1;
      const T = last ? chunkRows(longest - t0, C) : C;
      const acts = this.#activations(B, T);
      const ids = new Uint32Array(B * T).fill(m.padId), targets = new Int32Array(B * T).fill(IGNORE_INDEX);
      batch.forEach((it, b) => {
        const n = Math.min(T, it.inputs.length - t0);
        for (let t = 0; t < n; t++) {
          ids[b * T + t] = it.inputs[t0 + t];
          targets[b * T + t] = it.targets[t0 + t];
        }
      });
      acts.input.set(ids, { targets, train: false, what: batch[0].label });
      const logits = this.#logitsFor(B * T);
      const hitRows = this.opts.hits ? this.#hitRowsFor(B * T) : undefined;
      gpu.run(`eval chunk ${k + 1}/${chunks}`, (step) => {
        forwardHidden(step, this.model, acts, {
          initialStates: k > 0 ? sets![(k - 1) % 2].map((s) => part(s, B)) : undefined,
          states: last ? undefined : sets![k % 2].map((s) => part(s, B)),
          offset: t0,
        });
        lmHeadLoss(step, {
          x: acts.xf,
          w: this.model.head(),
          targets: acts.input.targets,
          loss: acts.lossRows,
          logits,
          n: B * T,
          d: m.d,
          vocab: m.vocab,
          hits: hitRows,
        });
        // Each sequence's sum over its positions: [B, T] · ones[T].
        const beta = k > 0 ? 1 : 0;
        matmul(step, { a: acts.lossRows, b: this.#ones, c: nllSums, m: B, n: 1, k: T, beta });
        if (hitRows) matmul(step, { a: hitRows, b: this.#ones, c: hitSums, m: B, n: 1, k: T, beta });
      });
    }
    const host = await sums.readF32();
    return {
      nll: Float64Array.from(host.subarray(0, B)),
      hits: this.opts.hits
        ? Float64Array.from(host.subarray(this.#sumsBatch, this.#sumsBatch + B))
        : new Float64Array(B),
    };
  }

  /** Inference activations of (B, T); a few sizes are kept (a long batch alternates two). */
  #activations(B: number, T: number): Activations {
    const key = `${B}x${T}`;
    let acts = this.#acts.get(key);
    if (acts) {
      this.#acts.delete(key);
      this.#acts.set(key, acts); // most recently used last
      return acts;
    }
    if (this.#acts.size >= 3) {
      // Steps already submitted keep the buffers alive until they finish.
      const [oldKey, old] = this.#acts.entries().next().value!;
      old.destroy();
      this.#acts.delete(oldKey);
    }
    acts = new Activations(this.model.gpu, this.model.dims, B, T, false, { shareLayers: true });
    this.#acts.set(key, acts);
    return acts;
  }

  #statesFor(B: number): [Tensor[], Tensor[]] {
    if (!this.#states || this.#stateBatch < B) {
      this.#dropStates();
      const m = this.model.dims;
      const set = (which: string) =>
        m.lrpe.map((lrpe, l) =>
          Tensor.empty(
            this.model.gpu,
            [B, m.heads, lrpe ? 2 * m.headDim : m.headDim, m.headDim],
            "f32",
            `eval state ${which} ${l}`,
          )
        );
      this.#states = [set("a"), set("b")];
      this.#stateBatch = B;
    }
    return this.#states;
  }

  #sumsFor(B: number): Tensor {
    if (!this.#sums || this.#sumsBatch < B) {
      this.#sums?.destroy();
      this.#sums = Tensor.empty(this.model.gpu, [2 * B], "f32", "eval sums");
      this.#sumsBatch = B;
    }
    return this.#sums;
  }

  #hitRowsFor(n: number): Tensor {
    if (!this.#hitRows || this.#hitRows.size < n) {
      this.#hitRows?.destroy();
      this.#hitRows = Tensor.empty(this.model.gpu, [n], "f32", "eval hits");
    }
    return Tensor.part(this.#hitRows, 0, [n], "eval hits");
  }

  /** Logits for up to 2^15 rows or 256 MiB at a time, within one binding (as the training activations). */
  #logitsFor(n: number): Tensor {
    const V = this.model.dims.vocab, gpu = this.model.gpu;
    const rows = Math.max(
      1,
      Math.min(n, 32768, Math.floor(Math.min(256 * 2 ** 20, gpu.maxBindingBytes) / (4 * V))),
    );
    if (!this.#logits || this.#logits.size < rows * V) {
      this.#logits?.destroy();
      this.#logits = Tensor.empty(gpu, [rows, V], "f32", "eval logits");
    }
    return Tensor.part(this.#logits, 0, [rows, V], "eval logits");
  }

  #dropStates(): void {
    for (const set of this.#states ?? []) for (const t of set) t.destroy();
    this.#states = null;
  }

  destroy(): void {
    for (const a of this.#acts.values()) a.destroy();
    this.#acts.clear();
    this.#dropStates();
    for (const t of [this.#ones, this.#sums, this.#hitRows, this.#logits]) t?.destroy();
  }
}

/** Checks every id and target against the vocabulary `V`, naming the sequence and position. */
export function checkItems(items: readonly ScoreItem[], V: number): void {
  for (const it of items) {
    if (it.inputs.length !== it.targets.length) {
      throw new TnlError("internal", `${it.label}: ${it.inputs.length} inputs, ${it.targets.length} targets`);
    }
    for (let t = 0; t < it.inputs.length; t++) {
      const x = it.inputs[t], y = it.targets[t];
      if (!(Number.isInteger(x) && x >= 0 && x < V)) {
        throw new TnlError(
          "input",
          `${it.label}: token ${t} has id ${x}, outside the model's vocabulary of ${V} (ids 0..${V - 1})`,
        );
      }
      if (y !== IGNORE_INDEX && !(Number.isInteger(y) && y >= 0 && y < V)) {
        throw new TnlError(
          "input",
          `${it.label}: token ${t + 1} has id ${y}, outside the model's vocabulary of ${V} (ids 0..${V - 1})`,
        );
      }
    }
  }
}

/** The first B sequences of a per-layer state [maxB, H, dk, d]. */
function part(s: Tensor, B: number): Tensor {
  return Tensor.part(s, 0, [B, ...s.shape.slice(1)], s.label);
}

// ---------------------------------------------------------------- documents, perplexity, bits per byte

export interface EvalDocument {
  /** the document's tokens (no BOS) */
  ids: ArrayLike<number>;
  /** UTF-8 bytes of the document's text (of the predicted part: without BOS, the first token's are left out) */
  bytes: number | null;
  /** names the document in errors and details, e.g. "test.txt: document 3" */
  label: string;
}

/** A document as a scored sequence: after BOS every token is predicted; without one, all but the first. */
export function documentItem(doc: EvalDocument, bos: number | null): ScoreItem {
  const n = doc.ids.length + (bos === null ? 0 : 1);
  const seq = new Uint32Array(n);
  if (bos !== null) seq[0] = bos;
  seq.set(Array.from(doc.ids), bos === null ? 0 : 1);
  const inputs = seq.subarray(0, Math.max(0, n - 1));
  const targets = Int32Array.from(seq.subarray(1));
  return { inputs, targets, label: doc.label };
}

/** Checks every document's ids against the vocabulary `V`, naming the document and the token. */
export function checkDocuments(docs: readonly EvalDocument[], V: number): void {
  for (const d of docs) {
    for (let t = 0; t < d.ids.length; t++) {
      const x = d.ids[t];
      if (!(Number.isInteger(x) && x >= 0 && x < V)) {
        throw new TnlError(
          "input",
          `${d.label}: token ${t} has id ${x}, outside the model's vocabulary of ${V} (ids 0..${V - 1})`,
        );
      }
    }
  }
}

/** Bits per byte: Σ NLL / (ln 2 · Σ bytes). */
export function bitsPerByte(nll: number, bytes: number): number {
  return nll / (Math.LN2 * bytes);
}

export interface PerplexityResult {
  /** mean NLL per predicted token */
  loss: number;
  perplexity: number;
  /** null when some document's bytes are unknown (token files without a tokenizer) */
  bitsPerByte: number | null;
  tokens: number;
  bytes: number | null;
  documents: number;
  nll: number;
  perDocument: { label: string; tokens: number; bytes: number | null; nll: number }[];
}

/** Perplexity and bits per byte of documents, each scored from a fresh state after `bos`. */
export async function evaluatePerplexity(
  model: TnlModel,
  docs: readonly EvalDocument[],
  opts: { bos: number | null } & ScorerOptions,
): Promise<PerplexityResult> {
  if (docs.length === 0) throw new TnlError("input", "no documents to evaluate");
  checkDocuments(docs, model.dims.vocab);
  const scorer = new Scorer(model, opts);
  try {
    const scores = await scorer.score(docs.map((d) => documentItem(d, opts.bos)));
    let nll = 0, tokens = 0, bytes: number | null = 0;
    const perDocument = docs.map((d, i) => {
      nll += scores[i].nll;
      tokens += scores[i].scored;
      bytes = bytes === null || d.bytes === null ? null : bytes + d.bytes;
      return { label: d.label, tokens: scores[i].scored, bytes: d.bytes, nll: scores[i].nll };
    });
    if (tokens === 0) {
      throw new TnlError(
        "input",
        "no token to predict: every document is a single token and the model's tokenizer_config.json has no BOS",
      );
    }
    const loss = nll / tokens;
    return {
      loss,
      perplexity: Math.exp(loss),
      bitsPerByte: bytes === null || bytes === 0 ? null : bitsPerByte(nll, bytes),
      tokens,
      bytes,
      documents: docs.length,
      nll,
      perDocument,
    };
  } finally {
    scorer.destroy();
  }
}

/** UTF-8 bytes the ids decode to (byte-level BPE: its exact bytes). */
export function decodedBytes(tok: Tokenizer, ids: readonly number[]): number {
  if (tok.decodeBytes) return tok.decodeBytes(ids).length;
  return new TextEncoder().encode(tok.decode(ids)).length;
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    const st = await Deno.stat(path);
    if (st.isDirectory) throw new TnlError("io", `cannot read ${path}: is a directory, expected a file`);
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof TnlError) throw e;
    throw ioError("read", path, e);
  }
}

export interface DocumentSource {
  tokenizer: Tokenizer | null;
  /** the model's vocabulary: every id is checked against it (before any is decoded) */
  vocab: number;
  /** the id token files are split at (</s>) */
  eos: number | null;
  /** whether documents get a BOS (then no token's bytes are left out) */
  bos: boolean;
  /** for errors naming the model without a tokenizer */
  model: string;
}

/**
 * Documents of evaluation files: token files (.bin, .npy) split at </s> (bytes from the decoded text when
 * there is a tokenizer), JSONL (one document per line, its "text"), anything else text split at blank
 * lines (core/tokenfile.ts splitDocuments). An empty file, or one without documents, is an error.
 */
export async function loadDocuments(files: readonly string[], src: DocumentSource): Promise<EvalDocument[]> {
  const docs: EvalDocument[] = [];
  const tok = src.tokenizer;
  const needTokenizer = (path: string) => {
    if (!tok) {
      throw new TnlError(
        "input",
        `${path} is text, but ${src.model} has no tokenizer (tokenizer.json or a SentencePiece model) to encode it`,
      );
    }
    return tok;
  };
  // Bytes of a document's predicted part: without BOS the first token is context only.
  const bytesOf = (ids: readonly number[], textBytes: number) =>
    src.bos || ids.length === 0 ? textBytes : textBytes - decodedBytes(tok!, ids.slice(0, 1));
  for (const path of files) {
    const before = docs.length;
    if (path.endsWith(".bin") || path.endsWith(".npy")) {
      let ids: ArrayLike<number>;
      if (path.endsWith(".bin")) ids = (await readTokenFileWithHeader(path)).ids;
      else ids = parseNpy(await readBytes(path), path);
      if (ids.length === 0) throw new TnlError("input", `${path}: the token file is empty`);
      if (src.eos === null) {
        throw new TnlError("input", `${path}: ${src.model} names no </s> id to split the token file at`);
      }
      let start = 0;
      const flush = (end: number) => {
        if (end > start) {
          const part = Array.from((ids as Uint32Array).subarray(start, end));
          const label = `${path}: document ${docs.length - before + 1} (tokens ${start}..${end - 1})`;
          checkDocuments([{ ids: part, bytes: null, label }], src.vocab);
          docs.push({ ids: part, bytes: tok ? bytesOf(part, decodedBytes(tok, part)) : null, label });
        }
      };
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] === src.eos) {
          flush(i);
          start = i + 1;
        }
      }
      flush(ids.length);
    } else if (path.endsWith(".jsonl")) {
      const text = new TextDecoder().decode(await readBytes(path));
      if (text.trim() === "") throw new TnlError("input", `${path}: the file is empty`);
      const lines = text.split("\n");
      const t = needTokenizer(path);
      for (let i = 0; i < lines.length; i++) {
        if (!lines[i].trim()) continue;
        let rec: unknown;
        try {
          rec = JSON.parse(lines[i]);
        } catch {
          throw new TnlError("input", `${path}:${i + 1}: not valid JSON`);
        }
        const s = (rec as { text?: unknown })?.text;
        if (typeof s !== "string") throw new TnlError("input", `${path}:${i + 1}: no string field "text"`);
        const bytes = new TextEncoder().encode(s);
        const ids = t.encodeBytes ? t.encodeBytes(bytes) : t.encode(s);
        if (ids.length) docs.push({ ids, bytes: bytesOf(ids, bytes.length), label: `${path}:${i + 1}` });
      }
    } else {
      const bytes = await readBytes(path);
      if (bytes.length === 0) throw new TnlError("input", `${path}: the file is empty`);
      const t = needTokenizer(path);
      for (const doc of splitDocuments(bytes)) {
        const ids = t.encodeBytes ? t.encodeBytes(doc) : t.encode(new TextDecoder().decode(doc));
        const label = `${path}: document ${docs.length - before + 1}`;
        if (ids.length) docs.push({ ids, bytes: bytesOf(ids, doc.length), label });
      }
    }
    if (docs.length === before) {
      throw new TnlError("input", `${path}: no documents (nothing but blank lines or </s>)`);
    }
  }
  return docs;
}

// ---------------------------------------------------------------- associative recall

export interface MqarResult {
  /** answers whose value was the model's unique greedy prediction, over all answers */
  accuracy: number;
  /** 1 / the number of values */
  chance: number;
  /** mean NLL of the answers */
  loss: number;
  answers: number;
  samples: number;
}

/** Accuracy of `samples` MQAR sequences drawn with `seed` (core/mqar.ts). */
export async function evaluateMqar(
  model: TnlModel,
  settings: MqarSettings,
  opts: { samples: number; seed: number } & ScorerOptions,
): Promise<MqarResult> {
  checkMqar(settings, "mqar");
  if (settings.vocab > model.dims.vocab) {
    throw new TnlError(
      "input",
      `mqar: vocab ${settings.vocab} is larger than the model's vocabulary of ${model.dims.vocab}`,
    );
  }
  const sampler = new MqarSampler(settings, opts.seed);
  const items: ScoreItem[] = Array.from({ length: opts.samples }, (_, i) => {
    const { inputs, targets } = sampler.next(1);
    return { inputs, targets, label: `mqar sequence ${i + 1}` };
  });
  const scorer = new Scorer(model, { ...opts, hits: true });
  try {
    const scores = await scorer.score(items);
    const sum = (f: (s: ItemScore) => number) => scores.reduce((a, s) => a + f(s), 0);
    const answers = sum((s) => s.scored);
    return {
      accuracy: sum((s) => s.hits) / answers,
      chance: 1 / mqarValues(settings.vocab),
      loss: sum((s) => s.nll) / answers,
      answers,
      samples: opts.samples,
    };
  } finally {
    scorer.destroy();
  }
}
