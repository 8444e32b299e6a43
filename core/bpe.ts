// HuggingFace byte-level BPE (the GPT-2 scheme): loads a `tokenizer.json` and encodes and decodes exactly
// as the `tokenizers` library does. Text is split into added tokens (matched first, leftmost-longest), then
// pre-tokenized by the GPT-2 regex, each piece's UTF-8 bytes are mapped to printable characters and merged
// by rank with the same heap order as the library; decoding maps the characters back to bytes.

import { TnlError } from "./errors.ts";
import type { SpecialIds, Tokenizer } from "./tokenizer.ts";
import { decodeUtf8Strict, decodeUtf8WithOffsets, encodeUtf8 } from "./utf8.ts";

const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------------------
// The byte ↔ character table of GPT-2: printable Latin-1 bytes stand for themselves, the other 68 bytes
// take the characters from U+0100 on, in byte order.

function byteChars(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let next = 0x100;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(printable(b) ? b : next++));
  return out;
}

/** BYTE_TO_CHAR[b]: the character byte-level BPE uses for byte b (space → "Ġ", newline → "Ċ"). */
export const BYTE_TO_CHAR: readonly string[] = byteChars();
/** CHAR_TO_BYTE[codepoint] for the 256 byte characters (all below U+0144), -1 for any other character. */
const CHAR_TO_BYTE = (() => {
  const t = new Int16Array(0x144).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => (t[c.charCodeAt(0)] = b));
  return t;
})();

/** The byte-level spelling of some bytes: what vocab and merges of a byte-level BPE are written in. */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/**
 * The GPT-2 pre-tokenizer as the `tokenizers` library runs it (Oniguruma): its `\s` is Unicode
 * White_Space (U+0085 is a space, U+FEFF is not), which JavaScript's `\s` is not, so the class is named.
 */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+|\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+";

export function gpt2Regex(): RegExp {
  return new RegExp(GPT2_PATTERN, "gu");
}

// ---------------------------------------------------------------------------------------------------------
// Merge table: (left id, right id) → rank, open addressing on typed arrays (a Map keyed by numbers over
// 2^31 is several times slower, and 128K vocabularies need such keys).

class PairTable {
  readonly #mask: number;
  readonly #left: Int32Array;
  readonly #right: Int32Array;
  readonly #value: Int32Array;

  constructor(entries: number) {
    let cap = 16;
    while (cap < entries * 2) cap *= 2;
    this.#mask = cap - 1;
    this.#left = new Int32Array(cap).fill(-1);
    this.#right = new Int32Array(cap);
    this.#value = new Int32Array(cap);
  }

  #slot(a: number, b: number): number {
    let h = (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) & this.#mask;
    while (this.#left[h] !== -1 && (this.#left[h] !== a || this.#right[h] !== b)) h = (h + 1) & this.#mask;
    return h;
  }

  set(a: number, b: number, value: number): void {
    const h = this.#slot(a, b);
    this.#left[h] = a;
    this.#right[h] = b;
    this.#value[h] = value;
  }

  /** The value of (a, b), or -1. */
  get(a: number, b: number): number {
    const h = this.#slot(a, b);
    return this.#left[h] === -1 ? -1 : this.#value[h];
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Pre-token → ids, keyed by a stretch of a string without slicing it: the hash is computed over the
 * characters in place and a hit is confirmed with startsWith (a Map keyed by fresh substrings spends
 * most of encoding time hashing and allocating them). Cleared when it reaches CACHE_LIMIT entries.
 */
class WordCache {
  #mask = (1 << 16) - 1;
  #slots = new Int32Array(1 << 16).fill(-1);
  #keys: string[] = [];
  #hashes: number[] = [];
  #idStart: number[] = [];
  #idLen: number[] = [];
  #ids: number[] = [];
  #lastSlot = 0;
  #lastHash = 0;

  /** Entry of s[pos, end), or -1 (then `add` may insert it). */
  find(s: string, pos: number, end: number): number {
    let h = 0x811c9dc5 | 0;
    for (let i = pos; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    const len = end - pos;
    let slot = h & this.#mask;
    for (;;) {
      const e = this.#slots[slot];
      if (e === -1) break;
      if (this.#hashes[e] === h) {
        const k = this.#keys[e];
        if (k.length === len && s.startsWith(k, pos)) return e;
      }
      slot = (slot + 1) & this.#mask;
    }
    this.#lastSlot = slot;
    this.#lastHash = h;
    return -1;
  }

  /** Inserts s[pos, end) → ids; only right after a `find` of the same key that returned -1. */
  add(s: string, pos: number, end: number, ids: readonly number[]): void {
    if (this.#keys.length >= CACHE_LIMIT) {
      this.clear();
      this.find(s, pos, end);
    }
    const e = this.#keys.length;
    this.#keys.push(s.slice(pos, end));
    this.#hashes.push(this.#lastHash);
    this.#idStart.push(this.#ids.length);
    this.#idLen.push(ids.length);
    for (let k = 0; k < ids.length; k++) this.#ids.push(ids[k]);
    this.#slots[this.#lastSlot] = e;
    if (this.#keys.length * 2 > this.#slots.length) this.#grow();
  }

  /** Appends the ids of entry e. */
  copyTo(e: number, out: number[]): void {
    const start = this.#idStart[e], end = start + this.#idLen[e];
    for (let k = start; k < end; k++) out.push(this.#ids[k]);
  }

  clear(): void {
    this.#mask = (1 << 16) - 1;
    this.#slots = new Int32Array(1 << 16).fill(-1);
    this.#keys = [];
    this.#hashes = [];
    this.#idStart = [];
    this.#idLen = [];
    this.#ids = [];
  }

  #grow(): void {
    const cap = this.#slots.length * 2;
    this.#mask = cap - 1;
    this.#slots = new Int32Array(cap).fill(-1);
    for (let e = 0; e < this.#keys.length; e++) {
      let slot = this.#hashes[e] & this.#mask;
      while (this.#slots[slot] !== -1) slot = (slot + 1) & this.#mask;
      this.#slots[slot] = e;
    }
  }
}

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
}

/** What a byte-level BPE is made of: the fields of a tokenizer.json, checked. */
export interface ByteLevelBpeSpec {
  /** token (byte-level spelling) → id */
  vocab: Map<string, number>;
  /** merges in rank order, as pairs of tokens */
  merges: [string, string][];
  addedTokens: AddedToken[];
  /** the ByteLevel pre-tokenizer's own regex (use_regex) */
  useRegex: boolean;
  addPrefixSpace: boolean;
  /** a Split pre-tokenizer's regex before the ByteLevel step (isolated matches), if any */
  splitPattern: RegExp | null;
  normalizer: ((s: string) => string) | null;
  unkToken: string | null;
  ignoreMerges: boolean;
  /** names of the special tokens, resolved to ids when present in the vocabulary */
  specialTokens: { pad: string[]; bos: string[]; eos: string[] };
  /** where it came from, for error messages */
  source: string;
}

/** Encoded pieces cached per tokenizer; cleared when it reaches this many entries. */
const CACHE_LIMIT = 1 << 20;

export class ByteLevelBpe implements Tokenizer {
  readonly kind = "bpe" as const;
  readonly vocabSize: number;
  readonly specialIds: SpecialIds;
  readonly spec: ByteLevelBpeSpec;

  readonly #idToToken: (string | undefined)[];
  readonly #tokenToId: Map<string, number>;
  readonly #byteIds = new Int32Array(256);
  readonly #ranks: PairTable;
  /** result id of the merge of each rank */
  readonly #mergeResult: Int32Array;
  readonly #unkId: number;
  readonly #added: AddedToken[];
  readonly #addedById = new Map<number, AddedToken>();
  readonly #addedRegex: RegExp | null;
  readonly #normalizedAddedRegex: RegExp | null;
  readonly #preRegex: RegExp | null;
  readonly #preSticky: RegExp | null;
  readonly #cache = new WordCache();
  readonly #tokenBytes: (Uint8Array | undefined)[] = [];

  // scratch buffers of the merge loop, grown on demand
  #sym = new Int32Array(64);
  #next = new Int32Array(64);
  #prev = new Int32Array(64);
  #heap = new MinHeap(new Float64Array(128));
  #scratch = new Uint8Array(256);

  constructor(spec: ByteLevelBpeSpec) {
    this.spec = spec;
    this.#tokenToId = new Map(spec.vocab);
    for (const t of spec.addedTokens) {
      this.#tokenToId.set(t.content, t.id);
      this.#addedById.set(t.id, t);
    }
    let maxId = -1;
    for (const id of this.#tokenToId.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.#idToToken = new Array(this.vocabSize);
    for (const [t, id] of spec.vocab) this.#idToToken[id] = t;
    for (const t of spec.addedTokens) this.#idToToken[t.id] = t.content;

    for (let b = 0; b < 256; b++) this.#byteIds[b] = spec.vocab.get(BYTE_TO_CHAR[b]) ?? -1;
    this.#unkId = spec.unkToken === null ? -1 : spec.vocab.get(spec.unkToken) ?? -1;
    if (spec.unkToken !== null && this.#unkId === -1) {
      throw new TnlError("input", `${spec.source}: model.unk_token "${spec.unkToken}" is not in model.vocab`);
    }

    this.#ranks = new PairTable(spec.merges.length);
    this.#mergeResult = new Int32Array(spec.merges.length);
    spec.merges.forEach(([a, b], rank) => {
      const ia = spec.vocab.get(a), ib = spec.vocab.get(b), ir = spec.vocab.get(a + b);
      if (ia === undefined || ib === undefined || ir === undefined) {
        const missing = ia === undefined ? a : ib === undefined ? b : a + b;
        throw new TnlError(
          "input",
          `${spec.source}: model.merges[${rank}] ("${a} ${b}"): token "${missing}" is not in model.vocab`,
        );
      }
      // A repeated pair keeps its last rank, as the library's map does.
      this.#ranks.set(ia, ib, rank);
      this.#mergeResult[rank] = ir;
    });

    this.#added = spec.addedTokens;
    this.#addedRegex = addedTokenRegex(spec.addedTokens.filter((t) => !t.normalized || !spec.normalizer));
    this.#normalizedAddedRegex = spec.normalizer
      ? addedTokenRegex(spec.addedTokens.filter((t) => t.normalized))
      : null;
    this.#preRegex = spec.useRegex ? gpt2Regex() : null;
    this.#preSticky = spec.useRegex ? new RegExp(GPT2_PATTERN, "yu") : null;

    const find = (names: string[]) => {
      for (const n of names) {
        const id = this.#tokenToId.get(n);
        if (id !== undefined) return id;
      }
      return null;
    };
    this.specialIds = {
      pad: find(spec.specialTokens.pad),
      bos: find(spec.specialTokens.bos),
      eos: find(spec.specialTokens.eos),
      unk: this.#unkId === -1 ? null : this.#unkId,
    };
  }

  get addedTokens(): readonly AddedToken[] {
    return this.#added;
  }

  idToToken(id: number): string | undefined {
    return this.#idToToken[id];
  }

  tokenToId(token: string): number | undefined {
    return this.#tokenToId.get(token);
  }

  /** The pre-tokenizer alone (no added tokens, no normalizer): pieces in byte-level spelling. */
  preTokenize(text: string): string[] {
    const pieces: string[] = [];
    const segment = this.spec.addPrefixSpace && !text.startsWith(" ") && text.length > 0 ? " " + text : text;
    this.#pretokenize(
      segment,
      0,
      segment.length,
      (s, e) => pieces.push(bytesToByteLevel(encodeUtf8(segment.slice(s, e)))),
    );
    return pieces;
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    this.#encodeText(text, ids);
    return ids;
  }

  /** Encodes bytes exactly: valid UTF-8 as `encode` does; invalid bytes keep their own byte tokens. */
  encodeBytes(bytes: Uint8Array): number[] {
    const text = decodeUtf8Strict(bytes);
    if (text !== null) return this.encode(text);
    if (this.spec.normalizer) {
      // A normalizer works on characters: invalid bytes become U+FFFD first (documented).
      return this.encode(new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes));
    }
    // Split and pre-tokenize a copy in which each invalid byte reads as U+FFFD, then encode the original
    // bytes of every span.
    const { text: shadow, offsets } = decodeUtf8WithOffsets(bytes);
    const ids: number[] = [];
    this.#forEachSegment(shadow, this.#addedRegex, (start, end, added) => {
      if (added) {
        ids.push(added.id);
        return;
      }
      this.#pretokenize(shadow, start, end, (s, e) => {
        this.#encodeWordBytes(bytes.subarray(offsets[s], offsets[e]), ids);
      });
    });
    return ids;
  }

  #encodeText(text: string, ids: number[]): void {
    this.#forEachSegment(text, this.#addedRegex, (start, end, added) => {
      if (added) {
        ids.push(added.id);
        return;
      }
      if (!this.spec.normalizer) {
        this.#encodeSegment(text, start, end, ids);
        return;
      }
      const normalized = this.spec.normalizer(text.slice(start, end));
      this.#forEachSegment(normalized, this.#normalizedAddedRegex, (s, e, a) => {
        if (a) ids.push(a.id);
        else this.#encodeSegment(normalized, s, e, ids);
      });
    });
  }

  /** Calls `visit` for each stretch of plain text and each added token of text[start, end), in order. */
  #forEachSegment(
    text: string,
    regex: RegExp | null,
    visit: (start: number, end: number, added: AddedToken | null) => void,
  ): void {
    if (regex === null) {
      if (text.length > 0) visit(0, text.length, null);
      return;
    }
    let pos = 0;
    regex.lastIndex = 0;
    for (let m = regex.exec(text); m !== null; m = regex.exec(text)) {
      let start = m.index, end = start + m[0].length;
      const token = this.#addedByContent(m[0]);
      if (token.singleWord && (isWordCharBefore(text, start) || isWordCharAfter(text, end))) {
        regex.lastIndex = start + 1;
        continue;
      }
      if (token.lstrip) { while (start > pos && isSpace(text.charCodeAt(start - 1))) start--; }
      if (token.rstrip) { while (end < text.length && isSpace(text.charCodeAt(end))) end++; }
      if (start > pos) visit(pos, start, null);
      visit(start, end, token);
      pos = end;
      regex.lastIndex = end;
    }
    if (pos < text.length) visit(pos, text.length, null);
  }

  #addedByContent(content: string): AddedToken {
    for (const t of this.#added) if (t.content === content) return t;
    throw new Error(`added token "${content}" matched but not found`);
  }

  #encodeSegment(text: string, start: number, end: number, ids: number[]): void {
    let segment = start === 0 && end === text.length ? text : text.slice(start, end);
    if (this.spec.addPrefixSpace && !segment.startsWith(" ")) segment = " " + segment;
    if (this.spec.splitPattern === null && this.#preSticky !== null) {
      // The hot path: the GPT-2 regex leaves no gaps, so a sticky test gives each piece's end without
      // allocating a match; a gap (not expected) falls back to the general splitter.
      const re = this.#preSticky;
      let pos = 0;
      re.lastIndex = 0;
      while (pos < segment.length) {
        if (!re.test(segment)) {
          splitIsolated(
            this.#preRegex!,
            segment,
            pos,
            segment.length,
            (s, e) => this.#encodePiece(segment, s, e, ids),
          );
          return;
        }
        const e = re.lastIndex;
        this.#encodePiece(segment, pos, e, ids);
        pos = e;
      }
      return;
    }
    this.#pretokenize(segment, 0, segment.length, (s, e) => this.#encodePiece(segment, s, e, ids));
  }

  /** UTF-8 of text[start, end) in a scratch buffer (valid until the next call). */
  #utf8Of(text: string, start: number, end: number): Uint8Array {
    const n = end - start;
    if (this.#scratch.length < 3 * n) this.#scratch = new Uint8Array(Math.max(6 * n, 256));
    const buf = this.#scratch;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(start + i);
      if (c >= 0x80) return utf8Encoder.encode(text.slice(start, end));
      buf[i] = c;
    }
    return buf.subarray(0, n);
  }

  /** One pre-token, text[start, end), through the cache. */
  #encodePiece(text: string, start: number, end: number, ids: number[]): void {
    const cache = this.#cache;
    const e = cache.find(text, start, end);
    if (e >= 0) {
      cache.copyTo(e, ids);
      return;
    }
    const out: number[] = [];
    this.#encodeWordBytes(this.#utf8Of(text, start, end), out);
    cache.add(text, start, end, out);
    for (let k = 0; k < out.length; k++) ids.push(out[k]);
  }

  /**
   * The pre-tokenizer on text[start, end): the optional Split regex, then the GPT-2 regex (use_regex).
   * Both split "isolated", as the library does: matches and the stretches between them are pieces.
   */
  #pretokenize(text: string, start: number, end: number, visit: (s: number, e: number) => void): void {
    const inner = (s0: number, e0: number) => {
      if (this.#preRegex === null) {
        if (e0 > s0) visit(s0, e0);
      } else {
        splitIsolated(this.#preRegex, text, s0, e0, visit);
      }
    };
    if (this.spec.splitPattern === null) inner(start, end);
    else splitIsolated(this.spec.splitPattern, text, start, end, inner);
  }

  /** BPE on the bytes of one pre-token, appending ids. */
  #encodeWordBytes(bytes: Uint8Array, ids: number[]): void {
    const n = bytes.length;
    if (n === 0) return;
    if (this.spec.ignoreMerges) {
      const whole = this.spec.vocab.get(bytesToByteLevel(bytes));
      if (whole !== undefined) {
        ids.push(whole);
        return;
      }
    }
    if (this.#sym.length < n) {
      const cap = Math.max(n, this.#sym.length * 2);
      this.#sym = new Int32Array(cap);
      this.#next = new Int32Array(cap);
      this.#prev = new Int32Array(cap);
      this.#heap = new MinHeap(new Float64Array(cap * 2));
    }
    const sym = this.#sym, next = this.#next, prev = this.#prev;
    // Initial symbols: one per byte; a byte missing from the vocabulary becomes unk, or is dropped
    // when there is no unk token (both as the library does).
    let count = 0;
    for (let i = 0; i < n; i++) {
      const id = this.#byteIds[bytes[i]];
      if (id >= 0) sym[count++] = id;
      else if (this.#unkId >= 0) sym[count++] = this.#unkId;
    }
    if (count === 1) {
      ids.push(sym[0]);
      return;
    }
    for (let i = 0; i < count; i++) {
      next[i] = i + 1 < count ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Min-heap of rank * 2^32 + position: lowest rank first, then leftmost, as the library orders merges.
    const heap = this.#heap;
    heap.size = 0;
    for (let i = 0; i + 1 < count; i++) {
      const r = this.#ranks.get(sym[i], sym[i + 1]);
      if (r >= 0) heap.push(r * 4294967296 + i);
    }
    while (heap.size > 0) {
      const top = heap.pop();
      const rank = Math.floor(top / 4294967296), pos = top - rank * 4294967296;
      // Merged away (-2) or last symbol: a stale entry.
      if (sym[pos] === -2 || next[pos] === -1) continue;
      const right = next[pos];
      const current = this.#ranks.get(sym[pos], sym[right]);
      // The pair at pos changed since the entry was pushed: stale unless it makes the same token.
      if (current < 0 || this.#mergeResult[current] !== this.#mergeResult[rank]) continue;
      sym[pos] = this.#mergeResult[rank];
      sym[right] = -2;
      next[pos] = next[right];
      if (next[right] !== -1) prev[next[right]] = pos;
      if (prev[pos] !== -1) {
        const r = this.#ranks.get(sym[prev[pos]], sym[pos]);
        if (r >= 0) heap.push(r * 4294967296 + prev[pos]);
      }
      if (next[pos] !== -1) {
        const r = this.#ranks.get(sym[pos], sym[next[pos]]);
        if (r >= 0) heap.push(r * 4294967296 + pos);
      }
    }
    for (let i = 0; i !== -1; i = next[i]) ids.push(sym[i]);
  }

  /** Bytes of a token as the ByteLevel decoder gives them. */
  #bytesOf(id: number): Uint8Array {
    const cached = this.#tokenBytes[id];
    if (cached) return cached;
    const token = this.#idToToken[id];
    if (token === undefined || !Number.isInteger(id)) {
      throw new TnlError("input", `token id ${id} is not in the vocabulary (ids 0..${this.vocabSize - 1})`);
    }
    // Every character a byte character: those bytes; otherwise the token's own UTF-8 (library rule).
    let bytes: Uint8Array | null = new Uint8Array(token.length);
    for (let i = 0; i < token.length; i++) {
      const c = token.charCodeAt(i);
      const b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
      if (b < 0) {
        bytes = null;
        break;
      }
      bytes[i] = b;
    }
    const out = bytes ?? encodeUtf8(token);
    this.#tokenBytes[id] = out;
    return out;
  }

  decode(ids: readonly number[]): string {
    const stream = this.decodeStream();
    let s = "";
    for (const id of ids) s += stream.push(id);
    return s + stream.flush();
  }

  /** The bytes the ids stand for (invalid UTF-8 included, as encodeBytes took it). */
  decodeBytes(ids: readonly number[]): Uint8Array {
    const parts = ids.map((id) => this.#bytesOf(id));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  decodeStream(): { push(id: number): string; flush(): string } {
    // The WHATWG decoder replaces each maximal invalid subpart by one U+FFFD, as the library's
    // from_utf8_lossy does; in stream mode it holds back an incomplete trailing character.
    const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
    return {
      push: (id: number) => utf8.decode(this.#bytesOf(id), { stream: true }),
      flush: () => utf8.decode(),
    };
  }

  /** The tokenizer.json text of this tokenizer (what `tnl tokenize train` writes). */
  toJsonText(): string {
    return tokenizerJsonText(this.spec);
  }
}

/**
 * Visits the pieces of text[start, end) split "isolated" by a global regex: every match and every
 * stretch between matches, in order (empty matches split nothing).
 */
export function splitIsolated(
  re: RegExp,
  text: string,
  start: number,
  end: number,
  visit: (s: number, e: number) => void,
): void {
  const piece = start === 0 && end === text.length ? text : text.slice(start, end);
  let pos = 0;
  re.lastIndex = 0;
  for (let m = re.exec(piece); m !== null; m = re.exec(piece)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    if (m.index > pos) visit(start + pos, start + m.index);
    visit(start + m.index, start + m.index + m[0].length);
    pos = m.index + m[0].length;
  }
  if (pos < piece.length) visit(start + pos, start + piece.length);
}

class MinHeap {
  buffer: Float64Array<ArrayBuffer>;
  size = 0;
  constructor(buffer: Float64Array<ArrayBuffer>) {
    this.buffer = buffer;
  }
  push(v: number): void {
    if (this.size === this.buffer.length) {
      const b = new Float64Array(this.buffer.length * 2);
      b.set(this.buffer);
      this.buffer = b;
    }
    const h = this.buffer;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p] <= v) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = v;
  }
  pop(): number {
    const h = this.buffer;
    const top = h[0];
    const last = h[--this.size];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.size) break;
      const c = l + 1 < this.size && h[l + 1] < h[l] ? l + 1 : l;
      if (h[c] >= last) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
    return top;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0x85 || c === 0xa0 || c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f ||
    c === 0x3000;
}

const WORD_CHAR = /[\p{L}\p{N}_\p{M}]/u;
function isWordCharBefore(text: string, i: number): boolean {
  return i > 0 && WORD_CHAR.test(text[i - 1]);
}
function isWordCharAfter(text: string, i: number): boolean {
  return i < text.length && WORD_CHAR.test(text[i]);
}

function addedTokenRegex(tokens: AddedToken[]): RegExp | null {
  const contents = tokens.map((t) => t.content).filter((c) => c.length > 0);
  if (contents.length === 0) return null;
  // Longest first: at one position the alternation then takes the longest token (leftmost-longest).
  contents.sort((a, b) => b.length - a.length);
  return new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")).join("|"), "gu");
}

// ---------------------------------------------------------------------------------------------------------
// tokenizer.json: parse and check (errors name the file and field), and write.

type Json = unknown;

function fieldError(source: string, field: string, what: string): TnlError {
  return new TnlError("input", `${source}: ${field}: ${what}`);
}

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optBool(
  o: Record<string, Json>,
  key: string,
  field: string,
  source: string,
  dflt: boolean,
): boolean {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") {
    throw fieldError(source, `${field}.${key}`, `expected true or false, got ${show(v)}`);
  }
  return v;
}

function show(v: Json): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

const NORMALIZERS: Record<string, (s: string) => string> = {
  NFC: (s) => s.normalize("NFC"),
  NFD: (s) => s.normalize("NFD"),
  NFKC: (s) => s.normalize("NFKC"),
  NFKD: (s) => s.normalize("NFKD"),
  Lowercase: (s) => s.toLowerCase(),
};

function parseNormalizer(v: Json, field: string, source: string): ((s: string) => string) | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v) || typeof v.type !== "string") {
    throw fieldError(source, field, `expected null or an object with a "type", got ${show(v)}`);
  }
  if (v.type === "Sequence") {
    if (!Array.isArray(v.normalizers)) throw fieldError(source, `${field}.normalizers`, "expected a list");
    const steps = v.normalizers.map((n, i) => parseNormalizer(n, `${field}.normalizers[${i}]`, source));
    const fs = steps.filter((f): f is (s: string) => string => f !== null);
    return fs.length === 0 ? null : (s) => fs.reduce((acc, f) => f(acc), s);
  }
  const f = NORMALIZERS[v.type];
  if (!f) {
    throw fieldError(
      source,
      `${field}.type`,
      `normalizer "${v.type}" is not supported (supported: ${Object.keys(NORMALIZERS).join(", ")}, Sequence)`,
    );
  }
  return f;
}

/**
 * An Oniguruma pattern (what tokenizer.json Split regexes are written for) as a JavaScript `u` pattern:
 * `\s`/`\S` become Unicode White_Space, the library's meaning (JavaScript's `\s` differs on U+0085
 * and U+FEFF). Everything else in such patterns means the same in both.
 */
export function onigToJs(pattern: string): string {
  return pattern.replace(
    /\\(.)/gsu,
    (all, c: string) => c === "s" ? "\\p{White_Space}" : c === "S" ? "\\P{White_Space}" : all,
  );
}

interface PreTokenizerSpec {
  useRegex: boolean;
  addPrefixSpace: boolean;
  splitPattern: RegExp | null;
}

function parsePreTokenizer(v: Json, source: string): PreTokenizerSpec {
  const field = "pre_tokenizer";
  if (!isObject(v) || typeof v.type !== "string") {
    throw fieldError(
      source,
      field,
      `expected the ByteLevel pre-tokenizer (a byte-level BPE), got ${show(v ?? null)}`,
    );
  }
  if (v.type === "ByteLevel") {
    return {
      useRegex: optBool(v, "use_regex", field, source, true),
      addPrefixSpace: optBool(v, "add_prefix_space", field, source, true),
      splitPattern: null,
    };
  }
  if (v.type === "Sequence" && Array.isArray(v.pretokenizers)) {
    const steps = v.pretokenizers;
    const last = steps[steps.length - 1];
    if (
      steps.length === 2 && isObject(steps[0]) && steps[0].type === "Split" && isObject(last) &&
      last.type === "ByteLevel"
    ) {
      const split = steps[0];
      const f = `${field}.pretokenizers[0]`;
      if (split.behavior !== "Isolated" || split.invert === true) {
        throw fieldError(
          source,
          `${f}.behavior`,
          `only "Isolated" splits are supported, got ${show(split.behavior)}`,
        );
      }
      const pattern = isObject(split.pattern) ? split.pattern : null;
      let regex: RegExp;
      try {
        if (pattern && typeof pattern.Regex === "string") regex = new RegExp(onigToJs(pattern.Regex), "gu");
        else if (pattern && typeof pattern.String === "string") {
          regex = new RegExp(pattern.String.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&"), "gu");
        } else throw new Error(`expected {"Regex": ...} or {"String": ...}, got ${show(split.pattern)}`);
      } catch (e) {
        throw fieldError(source, `${f}.pattern`, e instanceof Error ? e.message : String(e));
      }
      const bl = parsePreTokenizer(last, source);
      return { useRegex: bl.useRegex, addPrefixSpace: bl.addPrefixSpace, splitPattern: regex };
    }
  }
  throw fieldError(
    source,
    `${field}.type`,
    `"${v.type}" is not supported: a byte-level BPE needs the ByteLevel pre-tokenizer (alone, or after one Split)`,
  );
}

/** Parses a tokenizer.json document (already JSON-parsed) into a checked spec. */
export function parseTokenizerJson(
  doc: Json,
  source: string,
  names: { pad?: string | null; bos?: string | null; eos?: string | null } = {},
): ByteLevelBpeSpec {
  if (!isObject(doc)) throw fieldError(source, "(top level)", "expected a JSON object");
  const model = doc.model;
  if (!isObject(model)) throw fieldError(source, "model", "missing or not an object");
  if (model.type !== undefined && model.type !== "BPE") {
    throw fieldError(
      source,
      "model.type",
      `unknown model type ${
        show(model.type)
      }: only byte-level BPE ("BPE") tokenizer.json files are supported`,
    );
  }
  if (!isObject(model.vocab)) {
    throw fieldError(source, "model.vocab", "missing or not an object of token → id");
  }
  const vocab = new Map<string, number>();
  for (const [t, id] of Object.entries(model.vocab)) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw fieldError(source, `model.vocab["${t}"]`, `expected a non-negative integer id, got ${show(id)}`);
    }
    vocab.set(t, id);
  }
  if (!Array.isArray(model.merges)) throw fieldError(source, "model.merges", "missing or not a list");
  const merges: [string, string][] = model.merges.map((m, i) => {
    if (typeof m === "string") {
      const parts = m.split(" ");
      if (parts.length !== 2) {
        throw fieldError(source, `model.merges[${i}]`, `expected "a b", got ${show(m)}`);
      }
      return [parts[0], parts[1]];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
      return [m[0], m[1]];
    }
    throw fieldError(source, `model.merges[${i}]`, `expected "a b" or ["a", "b"], got ${show(m)}`);
  });
  for (const key of ["continuing_subword_prefix", "end_of_word_suffix"]) {
    if (model[key] !== undefined && model[key] !== null && model[key] !== "") {
      throw fieldError(source, `model.${key}`, `${show(model[key])} is not supported by byte-level BPE`);
    }
  }
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) {
    throw fieldError(
      source,
      "model.dropout",
      `BPE dropout (${show(model.dropout)}) is for training only; set it to null`,
    );
  }
  if (model.byte_fallback === true) {
    throw fieldError(
      source,
      "model.byte_fallback",
      "byte fallback is for SentencePiece-style BPE, not byte-level BPE",
    );
  }
  const unk = model.unk_token;
  if (unk !== undefined && unk !== null && typeof unk !== "string") {
    throw fieldError(source, "model.unk_token", `expected a string or null, got ${show(unk)}`);
  }
  const addedTokens: AddedToken[] = [];
  const added = doc.added_tokens ?? [];
  if (!Array.isArray(added)) throw fieldError(source, "added_tokens", "expected a list");
  added.forEach((t, i) => {
    const f = `added_tokens[${i}]`;
    if (!isObject(t)) throw fieldError(source, f, "expected an object");
    if (typeof t.id !== "number" || !Number.isSafeInteger(t.id) || t.id < 0) {
      throw fieldError(source, `${f}.id`, `expected a non-negative integer, got ${show(t.id)}`);
    }
    if (typeof t.content !== "string" || t.content === "") {
      throw fieldError(source, `${f}.content`, `expected a non-empty string, got ${show(t.content)}`);
    }
    addedTokens.push({
      id: t.id,
      content: t.content,
      special: optBool(t, "special", f, source, false),
      lstrip: optBool(t, "lstrip", f, source, false),
      rstrip: optBool(t, "rstrip", f, source, false),
      singleWord: optBool(t, "single_word", f, source, false),
      normalized: optBool(t, "normalized", f, source, !optBool(t, "special", f, source, false)),
    });
  });
  const pre = parsePreTokenizer(doc.pre_tokenizer, source);
  const dec = doc.decoder;
  if (dec !== undefined && dec !== null && !(isObject(dec) && dec.type === "ByteLevel")) {
    throw fieldError(source, "decoder", `expected the ByteLevel decoder, got ${show(dec)}`);
  }
  const names3 = (n: string | null | undefined, dflt: string[]) => (n ? [n, ...dflt] : dflt);
  return {
    vocab,
    merges,
    addedTokens,
    useRegex: pre.useRegex,
    addPrefixSpace: pre.addPrefixSpace,
    splitPattern: pre.splitPattern,
    normalizer: parseNormalizer(doc.normalizer, "normalizer", source),
    unkToken: typeof unk === "string" ? unk : null,
    ignoreMerges: optBool(model, "ignore_merges", "model", source, false),
    specialTokens: {
      pad: names3(names.pad, ["<pad>", "<|pad|>", "[PAD]"]),
      bos: names3(names.bos, ["<s>", "<|begin_of_text|>", "<|startoftext|>", "<|im_start|>"]),
      eos: names3(names.eos, ["</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>"]),
    },
    source,
  };
}

/**
 * A tokenizer.json in the exact shape and formatting the `tokenizers` library writes for a byte-level BPE
 * trained with the ByteLevel pre-tokenizer (no prefix space, GPT-2 regex) and the ByteLevel decoder.
 * The vocabulary is written in id order (a JavaScript object would put numeric keys such as "10" first).
 */
export function tokenizerJsonText(spec: ByteLevelBpeSpec): string {
  const VOCAB = "\u0000vocab\u0000";
  const doc = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: spec.addedTokens.map((t) => ({
      id: t.id,
      content: t.content,
      single_word: t.singleWord,
      lstrip: t.lstrip,
      rstrip: t.rstrip,
      normalized: t.normalized,
      special: t.special,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: spec.addPrefixSpace,
      trim_offsets: true,
      use_regex: spec.useRegex,
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: spec.unkToken,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: spec.ignoreMerges,
      vocab: VOCAB,
      merges: spec.merges,
    },
  };
  const entries = [...spec.vocab].sort((a, b) => a[1] - b[1]);
  const vocabText = entries.length === 0
    ? "{}"
    : `{\n${entries.map(([t, id]) => `      ${JSON.stringify(t)}: ${id}`).join(",\n")}\n    }`;
  return JSON.stringify(doc, null, 2).replace(JSON.stringify(VOCAB), () => vocabText);
}
