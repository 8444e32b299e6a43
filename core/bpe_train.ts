// Byte-level BPE training, the algorithm of HuggingFace's BpeTrainer so that the same corpus gives the
// same vocabulary and merges: words (GPT-2 pre-tokens, as bytes) are counted once; pair counts over the
// word frequencies live in a priority queue (highest count first, then the smallest pair of ids) that is
// updated incrementally from the words a merge touches; the corpus is never re-scanned.

import { BYTE_TO_CHAR, ByteLevelBpe, type ByteLevelBpeSpec, gpt2Regex } from "./bpe.ts";
import { ioError, TnlError } from "./errors.ts";
import { decodeUtf8Strict, decodeUtf8WithOffsets, encodeUtf8 } from "./utf8.ts";

/** Special tokens of tnl tokenizers, ids 0, 1, 2. */
export const TNL_SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"] as const;

export interface TrainOptions {
  /** total vocabulary: special tokens + 256 byte tokens + merges */
  vocabSize: number;
  /** a pair seen fewer times than this is never merged (default 0: any pair seen at least once) */
  minFrequency?: number;
  specialTokens?: readonly string[];
  /** called with (merges done, merges wanted) now and then */
  onProgress?: (done: number, total: number) => void;
}

/** Word frequencies of a corpus: byte-level spelling of each GPT-2 pre-token → count. */
export class WordCounter {
  readonly #raw = new Map<string, number>();
  readonly #bytes = new Map<string, number>();
  readonly #re = gpt2Regex();
  #pieces = 0;

  /** Counts the pre-tokens of one text (a whole file: one sequence). */
  addText(text: string): void {
    const re = this.#re;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const w = m[0];
      this.#raw.set(w, (this.#raw.get(w) ?? 0) + 1);
      this.#pieces++;
    }
  }

  /** Counts bytes; invalid UTF-8 keeps its bytes, split as if each invalid byte were U+FFFD. */
  addBytes(bytes: Uint8Array): void {
    const text = decodeUtf8Strict(bytes);
    if (text !== null) {
      this.addText(text);
      return;
    }
    const { text: shadow, offsets } = decodeUtf8WithOffsets(bytes);
    const re = this.#re;
    re.lastIndex = 0;
    for (let m = re.exec(shadow); m !== null; m = re.exec(shadow)) {
      const w = byteLevel(bytes.subarray(offsets[m.index], offsets[m.index + m[0].length]));
      this.#bytes.set(w, (this.#bytes.get(w) ?? 0) + 1);
      this.#pieces++;
    }
  }

  get pieces(): number {
    return this.#pieces;
  }

  /** byte-level word → count */
  counts(): Map<string, number> {
    const out = new Map(this.#bytes);
    for (const [w, c] of this.#raw) {
      const k = byteLevel(encodeUtf8(w));
      out.set(k, (out.get(k) ?? 0) + c);
    }
    return out;
  }
}

function byteLevel(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

interface QueueEntry {
  count: number;
  a: number;
  b: number;
  /** indices of the words where the pair was (some may no longer hold it) */
  pos: Set<number>;
}

/** Max-heap on (count, then the smaller pair): BpeTrainer's order. */
class MergeQueue {
  readonly #h: QueueEntry[] = [];
  get size(): number {
    return this.#h.length;
  }
  static #before(x: QueueEntry, y: QueueEntry): boolean {
    if (x.count !== y.count) return x.count > y.count;
    return x.a !== y.a ? x.a < y.a : x.b < y.b;
  }
  push(e: QueueEntry): void {
    const h = this.#h;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!MergeQueue.#before(e, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }
  pop(): QueueEntry {
    const h = this.#h;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && MergeQueue.#before(h[l + 1], h[l]) ? l + 1 : l;
        if (!MergeQueue.#before(h[c], last)) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/** Trains a byte-level BPE on word counts. Throws TnlError "input" on an empty corpus. */
export function trainBpe(words: Map<string, number>, opts: TrainOptions): ByteLevelBpe {
  const specials = opts.specialTokens ?? TNL_SPECIAL_TOKENS;
  const minVocab = specials.length + 256;
  if (!Number.isSafeInteger(opts.vocabSize) || opts.vocabSize < minVocab) {
    throw new TnlError(
      "usage",
      `--vocab-size ${opts.vocabSize}: must be at least ${minVocab} (${specials.length} special tokens + 256 byte tokens)`,
    );
  }
  if (words.size === 0) throw new TnlError("input", "empty corpus: the training files hold no text");
  const minFrequency = opts.minFrequency ?? 0;

  const idToWord: string[] = [];
  const wordToId = new Map<string, number>();
  const add = (w: string) => {
    if (!wordToId.has(w)) {
      wordToId.set(w, idToWord.length);
      idToWord.push(w);
    }
  };
  specials.forEach(add);
  // The alphabet: every byte character (the initial alphabet), sorted by code point.
  [...BYTE_TO_CHAR].sort((x, y) => x.charCodeAt(0) - y.charCodeAt(0)).forEach(add);

  // Words as id sequences, with their counts.
  const K = opts.vocabSize; // pair key = a * K + b (ids stay below the vocabulary size)
  const seqs: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of words) {
    const s: number[] = new Array(w.length);
    for (let i = 0; i < w.length; i++) s[i] = wordToId.get(w[i])!;
    seqs.push(s);
    counts.push(c);
  }

  const pairCounts = new Map<number, number>();
  let whereToUpdate = new Map<number, Set<number>>();
  for (let wi = 0; wi < seqs.length; wi++) {
    const s = seqs[wi], c = counts[wi];
    for (let i = 0; i + 1 < s.length; i++) {
      const key = s[i] * K + s[i + 1];
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + c);
      let pos = whereToUpdate.get(key);
      if (!pos) whereToUpdate.set(key, pos = new Set());
      pos.add(wi);
    }
  }
  const queue = new MergeQueue();
  for (const [key, count] of pairCounts) {
    if (count > 0) queue.push({ count, a: Math.floor(key / K), b: key % K, pos: whereToUpdate.get(key)! });
  }
  whereToUpdate = new Map();

  const merges: [string, string][] = [];
  const wanted = opts.vocabSize - idToWord.length;
  let lastReport = 0;
  const changes: number[] = []; // flat triples: pair key, delta, word index

  while (wordToId.size < opts.vocabSize && queue.size > 0) {
    const top = queue.pop();
    const key = top.a * K + top.b;
    const current = pairCounts.get(key) ?? 0;
    if (top.count !== current) {
      top.count = current;
      queue.push(top);
      continue;
    }
    if (top.count < 1 || minFrequency > top.count) break;

    const token = idToWord[top.a] + idToWord[top.b];
    let newId = wordToId.get(token);
    if (newId === undefined) {
      newId = idToWord.length;
      wordToId.set(token, newId);
      idToWord.push(token);
    }
    merges.push([idToWord[top.a], idToWord[top.b]]);

    changes.length = 0;
    for (const wi of top.pos) mergeWord(seqs[wi], top.a, top.b, newId, K, wi, changes);
    for (let i = 0; i < changes.length; i += 3) {
      const pk = changes[i], delta = changes[i + 1], wi = changes[i + 2];
      pairCounts.set(pk, (pairCounts.get(pk) ?? 0) + delta * counts[wi]);
      if (delta > 0) {
        let pos = whereToUpdate.get(pk);
        if (!pos) whereToUpdate.set(pk, pos = new Set());
        pos.add(wi);
      }
    }
    for (const [pk, pos] of whereToUpdate) {
      const count = pairCounts.get(pk)!;
      if (count > 0) queue.push({ count, a: Math.floor(pk / K), b: pk % K, pos });
    }
    whereToUpdate.clear();

    if (opts.onProgress && merges.length - lastReport >= 64) {
      lastReport = merges.length;
      opts.onProgress(merges.length, wanted);
    }
  }
  opts.onProgress?.(merges.length, wanted);

  const vocab = new Map<string, number>();
  idToWord.forEach((w, id) => vocab.set(w, id));
  const spec: ByteLevelBpeSpec = {
    vocab,
    merges,
    addedTokens: specials.map((content, id) => ({
      id,
      content,
      special: true,
      lstrip: false,
      rstrip: false,
      singleWord: false,
      normalized: false,
    })),
    useRegex: true,
    addPrefixSpace: false,
    splitPattern: null,
    normalizer: null,
    unkToken: null,
    ignoreMerges: false,
    specialTokens: { pad: ["<pad>"], bos: ["<s>"], eos: ["</s>"] },
    source: "(trained)",
  };
  return new ByteLevelBpe(spec);
}

/**
 * Replaces every (a, b) in the word, left to right without overlap, by `id`; records the pair count
 * changes (key, ±1, word) exactly as BpeTrainer's Word::merge reports them.
 */
function mergeWord(
  s: number[],
  a: number,
  b: number,
  id: number,
  K: number,
  wi: number,
  changes: number[],
): void {
  let i = 0;
  while (i < s.length) {
    if (s[i] === a && i + 1 < s.length && s[i + 1] === b) {
      if (i > 0) {
        changes.push(s[i - 1] * K + a, -1, wi);
        changes.push(s[i - 1] * K + id, 1, wi);
      }
      s.splice(i, 2, id);
      if (i < s.length - 1) {
        changes.push(b * K + s[i + 1], -1, wi);
        changes.push(id * K + s[i + 1], 1, wi);
      }
    }
    i++;
  }
}

/**
 * Counts the words of `files` (UTF-8; invalid bytes kept) and trains a byte-level BPE of `vocabSize` tokens.
 * An empty corpus is an input error naming the files.
 */
export async function trainBpeFromFiles(
  files: string[],
  opts: TrainOptions & { onCounted?: (pieces: number, distinct: number, bytes: number) => void },
): Promise<ByteLevelBpe> {
  const counter = new WordCounter();
  let total = 0;
  for (const f of files) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(f);
    } catch (e) {
      throw ioError("read", f, e);
    }
    total += bytes.length;
    counter.addBytes(bytes);
  }
  const words = counter.counts();
  if (words.size === 0) {
    throw new TnlError(
      "input",
      `empty corpus: ${files.join(", ")} hold${files.length === 1 ? "s" : ""} no text`,
    );
  }
  opts.onCounted?.(counter.pieces, words.size, total);
  return trainBpe(words, opts);
}
