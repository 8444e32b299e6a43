// SentencePiece BPE models (`tokenizer.model`, a ModelProto protobuf), encoded and decoded exactly as the
// sentencepiece library does: its normalizer (precompiled character map, dummy prefix, extra-whitespace
// removal, "▁" for spaces), its BPE (highest-scoring adjacent pair first, leftmost on ties; unused pieces
// re-split), byte fallback for unknown characters, and its decoding rules.

import { TnlError } from "./errors.ts";
import type { SpecialIds, Tokenizer } from "./tokenizer.ts";
import { decodeUtf8Strict, decodeUtf8WithOffsets, encodeUtf8, utf8CharLength, Utf8Stream } from "./utf8.ts";

const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

export const SPACE_SYMBOL = "\u2581";

export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
const TYPE_NAMES = ["", "NORMAL", "UNKNOWN", "CONTROL", "USER_DEFINED", "UNUSED", "BYTE"];
const MODEL_TYPES = ["", "UNIGRAM", "BPE", "WORD", "CHAR"];

export interface SentencePieceModel {
  pieces: { piece: string; score: number; type: number }[];
  trainer: {
    modelType: number;
    byteFallback: boolean;
    treatWhitespaceAsSuffix: boolean;
    unkPiece: string;
    bosPiece: string;
    eosPiece: string;
    padPiece: string;
    unkSurface: string;
  };
  normalizer: NormalizerSpec;
  denormalizer: NormalizerSpec | null;
}

export interface NormalizerSpec {
  name: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// A minimal protobuf reader: the fields of sentencepiece_model.proto that encoding and decoding use.

class ProtoReader {
  pos: number;
  constructor(readonly buf: Uint8Array, readonly source: string, start = 0, readonly end = buf.length) {
    this.pos = start;
  }

  fail(what: string): never {
    throw new TnlError(
      "input",
      `${this.source}: not a valid SentencePiece model (${what} at byte ${this.pos})`,
    );
  }

  /** A varint as [low 32 bits, high bits]; enough for int32 (negative ones take 10 bytes), bool, enum. */
  varint(): [number, number] {
    let lo = 0, hi = 0, shift = 0;
    for (;;) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const b = this.buf[this.pos++];
      if (shift < 28) lo |= (b & 0x7f) << shift;
      else if (shift === 28) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else if (shift < 64) hi |= (b & 0x7f) << (shift - 32);
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift >= 70) this.fail("varint too long");
    }
    return [lo >>> 0, hi >>> 0];
  }

  length(): number {
    const [lo, hi] = this.varint();
    if (hi !== 0 || this.pos + lo > this.end) this.fail("length past the end");
    return lo;
  }

  /** Calls field(number, wireType) for every field; the callback reads the value or calls skip. */
  fields(field: (num: number, wire: number) => void): void {
    while (this.pos < this.end) {
      const [tag] = this.varint();
      const num = tag >>> 3, wire = tag & 7;
      if (num === 0) this.fail("field number 0");
      field(num, wire);
    }
    if (this.pos !== this.end) this.fail("field past the end of its message");
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) {
      const n = this.length();
      this.pos += n;
    } else if (wire === 5) this.pos += 4;
    else this.fail(`unsupported wire type ${wire}`);
    if (this.pos > this.end) this.fail("truncated field");
  }

  bytes(wire: number): Uint8Array {
    if (wire !== 2) this.fail("expected a length-delimited field");
    const n = this.length();
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(wire: number): string {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.bytes(wire));
    } catch (e) {
      if (e instanceof TnlError) throw e;
      this.fail("a string that is not UTF-8");
    }
  }

  sub(wire: number): ProtoReader {
    if (wire !== 2) this.fail("expected a message");
    const n = this.length();
    const r = new ProtoReader(this.buf, this.source, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  int32(wire: number): number {
    if (wire !== 0) this.fail("expected a varint");
    return this.varint()[0] | 0;
  }

  bool(wire: number): boolean {
    return this.int32(wire) !== 0;
  }

  float(wire: number): number {
    if (wire !== 5) this.fail("expected a 32-bit float");
    if (this.pos + 4 > this.end) this.fail("truncated float");
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
}

function parseNormalizerSpec(r: ProtoReader): NormalizerSpec {
  const spec: NormalizerSpec = {
    name: "",
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  r.fields((num, wire) => {
    if (num === 1) spec.name = r.string(wire);
    else if (num === 2) spec.precompiledCharsmap = r.bytes(wire);
    else if (num === 3) spec.addDummyPrefix = r.bool(wire);
    else if (num === 4) spec.removeExtraWhitespaces = r.bool(wire);
    else if (num === 5) spec.escapeWhitespaces = r.bool(wire);
    else r.skip(wire);
  });
  return spec;
}

/** Parses a serialized ModelProto. Errors name `source`. */
export function parseSentencePieceModel(buf: Uint8Array, source: string): SentencePieceModel {
  const r = new ProtoReader(buf, source);
  const model: SentencePieceModel = {
    pieces: [],
    trainer: {
      modelType: 1,
      byteFallback: false,
      treatWhitespaceAsSuffix: false,
      unkPiece: "<unk>",
      bosPiece: "<s>",
      eosPiece: "</s>",
      padPiece: "<pad>",
      unkSurface: " \u2047 ",
    },
    normalizer: {
      name: "",
      precompiledCharsmap: new Uint8Array(0),
      addDummyPrefix: true,
      removeExtraWhitespaces: true,
      escapeWhitespaces: true,
    },
    denormalizer: null,
  };
  r.fields((num, wire) => {
    if (num === 1) {
      const p = r.sub(wire);
      const piece = { piece: "", score: 0, type: 1 };
      p.fields((n, w) => {
        if (n === 1) piece.piece = p.string(w);
        else if (n === 2) piece.score = p.float(w);
        else if (n === 3) piece.type = p.int32(w);
        else p.skip(w);
      });
      model.pieces.push(piece);
    } else if (num === 2) {
      const t = r.sub(wire);
      const tr = model.trainer;
      t.fields((n, w) => {
        if (n === 3) tr.modelType = t.int32(w);
        else if (n === 35) tr.byteFallback = t.bool(w);
        else if (n === 24) tr.treatWhitespaceAsSuffix = t.bool(w);
        else if (n === 44) tr.unkSurface = t.string(w);
        else if (n === 45) tr.unkPiece = t.string(w);
        else if (n === 46) tr.bosPiece = t.string(w);
        else if (n === 47) tr.eosPiece = t.string(w);
        else if (n === 48) tr.padPiece = t.string(w);
        else t.skip(w);
      });
    } else if (num === 3) {
      model.normalizer = parseNormalizerSpec(r.sub(wire));
    } else if (num === 5) {
      model.denormalizer = parseNormalizerSpec(r.sub(wire));
    } else {
      r.skip(wire);
    }
  });
  if (model.pieces.length === 0) {
    throw new TnlError("input", `${source}: not a valid SentencePiece model (no pieces)`);
  }
  return model;
}

/** Whether the bytes look like a SentencePiece ModelProto (they parse and hold pieces). */
export function looksLikeSentencePiece(buf: Uint8Array): boolean {
  if (buf.length < 2 || buf[0] !== 0x0a) return false;
  try {
    parseSentencePieceModel(buf, "");
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The normalizer. precompiled_charsmap = <u32 trie size><darts-clone double array><NUL-separated outputs>:
// at each position the longest key of the trie that prefixes the input is replaced by its output.

class CharsMap {
  readonly #units: Uint32Array;
  readonly #normalized: Uint8Array;

  constructor(blob: Uint8Array, source: string) {
    const bad = (why: string) =>
      new TnlError("input", `${source}: normalizer_spec.precompiled_charsmap: ${why}`);
    if (blob.length <= 4) throw bad("blob too short");
    const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieSize = dv.getUint32(0, true);
    if (trieSize >= blob.length - 4 + 1 || trieSize % 4 !== 0) {
      throw bad(`trie size ${trieSize} does not fit`);
    }
    this.#units = new Uint32Array(trieSize / 4);
    for (let i = 0; i < this.#units.length; i++) this.#units[i] = dv.getUint32(4 + 4 * i, true);
    this.#normalized = blob.subarray(4 + trieSize);
  }

  /** The longest rule at bytes[i..end): [matched length, output] or null. */
  match(bytes: Uint8Array, i: number, end: number): [number, Uint8Array] | null {
    const units = this.#units;
    let nodePos = 0;
    let unit = units[0];
    nodePos ^= offsetOf(unit);
    let bestLen = 0, bestValue = 0;
    for (let k = i; k < end; k++) {
      const c = bytes[k];
      nodePos ^= c;
      if (nodePos >= units.length) break;
      unit = units[nodePos];
      // label(): the low byte plus the leaf bit (bit 31), which never equals a byte.
      if ((unit & 0x800000ff) >>> 0 !== c) break;
      nodePos ^= offsetOf(unit);
      if ((unit >>> 8) & 1) {
        if (nodePos >= units.length) break;
        bestLen = k - i + 1;
        bestValue = units[nodePos] & 0x7fffffff;
      }
    }
    if (bestLen === 0) return null;
    let e = bestValue;
    while (e < this.#normalized.length && this.#normalized[e] !== 0) e++;
    return [bestLen, this.#normalized.subarray(bestValue, e)];
  }
}

function offsetOf(unit: number): number {
  return ((unit >>> 10) << ((unit & (1 << 9)) >>> 6)) >>> 0;
}

const SPACE_BYTES = encodeUtf8(SPACE_SYMBOL);
const REPLACEMENT_BYTES = encodeUtf8("\uFFFD");

class Normalizer {
  readonly #spec: NormalizerSpec;
  readonly #charsMap: CharsMap | null;
  readonly #treatWsAsSuffix: boolean;
  /** user-defined pieces (UTF-8) are copied as they are, longest first */
  readonly #userDefined: Uint8Array[];

  constructor(spec: NormalizerSpec, treatWsAsSuffix: boolean, userDefined: string[], source: string) {
    this.#spec = spec;
    this.#charsMap = spec.precompiledCharsmap.length > 0
      ? new CharsMap(spec.precompiledCharsmap, source)
      : null;
    this.#treatWsAsSuffix = treatWsAsSuffix;
    this.#userDefined = userDefined.map(encodeUtf8).sort((a, b) => b.length - a.length);
  }

  /** One normalization step at bytes[i]: [output bytes, input bytes consumed]. */
  #prefix(bytes: Uint8Array, i: number): [Uint8Array, number] {
    for (const u of this.#userDefined) {
      if (u.length <= bytes.length - i && u.every((b, k) => bytes[i + k] === b)) return [u, u.length];
    }
    if (this.#charsMap) {
      const m = this.#charsMap.match(bytes, i, bytes.length);
      if (m) return [m[1], m[0]];
    }
    const len = utf8CharLength(bytes, i, bytes.length);
    if (len <= 0) return [REPLACEMENT_BYTES, 1];
    return [bytes.subarray(i, i + len), len];
  }

  /**
   * The normalized text. Without a character map, and with no user-defined piece holding a space, every
   * step copies one character, so the rules apply to the decoded text directly (same result, faster).
   */
  normalizeToText(input: Uint8Array): string {
    const spec = this.#spec;
    if (this.#charsMap !== null || this.#userDefined.some((u) => u.includes(0x20))) {
      return utf8Decoder.decode(this.normalize(input));
    }
    let text = decodeUtf8Strict(input) ?? decodeUtf8WithOffsets(input).text;
    if (spec.removeExtraWhitespaces) text = text.replace(/^ +/, "").replace(/ {2,}/g, " ");
    if (text.length === 0) return "";
    const space = spec.escapeWhitespaces ? SPACE_SYMBOL : " ";
    if (spec.escapeWhitespaces) text = text.replaceAll(" ", SPACE_SYMBOL);
    if (spec.addDummyPrefix && !this.#treatWsAsSuffix) text = space + text;
    // Trailing spaces go, escaped ones included (a literal "▁" at the end too, as in the library).
    if (spec.removeExtraWhitespaces) { while (text.endsWith(space)) text = text.slice(0, -space.length); }
    if (spec.addDummyPrefix && this.#treatWsAsSuffix) text += space;
    return text;
  }

  normalize(input: Uint8Array): Uint8Array {
    const spec = this.#spec;
    const out: number[] = [];
    let i = 0;
    const isSpaceOnly = (b: Uint8Array) => b.length === 1 && b[0] === 0x20;
    if (spec.removeExtraWhitespaces) {
      while (i < input.length) {
        const [o, n] = this.#prefix(input, i);
        if (!isSpaceOnly(o)) break;
        i += n;
      }
    }
    if (i >= input.length) return new Uint8Array(0);
    const addWs = () => {
      if (spec.escapeWhitespaces) out.push(...SPACE_BYTES);
      else out.push(0x20);
    };
    if (!this.#treatWsAsSuffix && spec.addDummyPrefix) addWs();
    let isPrevSpace = spec.removeExtraWhitespaces;
    while (i < input.length) {
      const [o, n] = this.#prefix(input, i);
      let s = 0;
      while (isPrevSpace && s < o.length && o[s] === 0x20) s++;
      if (s < o.length) {
        for (let k = s; k < o.length; k++) {
          if (spec.escapeWhitespaces && o[k] === 0x20) out.push(...SPACE_BYTES);
          else out.push(o[k]);
        }
        isPrevSpace = o[o.length - 1] === 0x20;
      }
      i += n;
      if (!spec.removeExtraWhitespaces) isPrevSpace = false;
    }
    if (spec.removeExtraWhitespaces) {
      const sp = spec.escapeWhitespaces ? SPACE_BYTES : Uint8Array.of(0x20);
      while (out.length >= sp.length && sp.every((b, k) => out[out.length - sp.length + k] === b)) {
        out.length -= sp.length;
      }
    }
    if (this.#treatWsAsSuffix && spec.addDummyPrefix) addWs();
    return Uint8Array.from(out);
  }
}

// ---------------------------------------------------------------------------------------------------------

const CACHE_LIMIT = 1 << 20;

export class SentencePieceBpe implements Tokenizer {
  readonly kind = "sentencepiece" as const;
  readonly vocabSize: number;
  readonly specialIds: SpecialIds;
  readonly model: SentencePieceModel;

  readonly #normalizer: Normalizer;
  /** NORMAL, USER_DEFINED and UNUSED pieces: the ones BPE may form */
  readonly #pieces = new Map<string, number>();
  /** UNKNOWN, CONTROL and BYTE pieces: looked up first */
  readonly #reserved = new Map<string, number>();
  readonly #userDefined: string[] = [];
  readonly #scores: Float32Array;
  readonly #types: Uint8Array;
  readonly #unkId: number;
  readonly #byteIds = new Int32Array(256).fill(-1);
  /** byte value of each BYTE piece, else -1 */
  readonly #byteOf: Int16Array;
  /** pieces never hold "▁" after another character: the normalized text can be encoded word by word */
  readonly #wordwise: boolean;
  readonly #cache = new Map<string, number[]>();

  constructor(model: SentencePieceModel, source: string) {
    this.model = model;
    const t = model.trainer;
    if (t.modelType !== 2) {
      throw new TnlError(
        "input",
        `${source}: trainer_spec.model_type: SentencePiece model type ${
          MODEL_TYPES[t.modelType] ?? t.modelType
        } is not supported (only BPE)`,
      );
    }
    if (model.denormalizer && model.denormalizer.precompiledCharsmap.length > 0) {
      throw new TnlError(
        "input",
        `${source}: denormalizer_spec.precompiled_charsmap: a denormalization rule is not supported`,
      );
    }
    this.vocabSize = model.pieces.length;
    this.#scores = new Float32Array(model.pieces.length);
    this.#types = new Uint8Array(model.pieces.length);
    this.#byteOf = new Int16Array(model.pieces.length).fill(-1);
    let unk = -1;
    let wordwise = true;
    model.pieces.forEach((p, id) => {
      if (p.piece === "") throw new TnlError("input", `${source}: pieces[${id}]: empty piece`);
      if (p.type < 1 || p.type > 6) {
        throw new TnlError("input", `${source}: pieces[${id}] ("${p.piece}"): unknown type ${p.type}`);
      }
      this.#scores[id] = p.score;
      this.#types[id] = p.type;
      const normal = p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED ||
        p.type === PieceType.UNUSED;
      const map = normal ? this.#pieces : this.#reserved;
      if (map.has(p.piece)) {
        throw new TnlError("input", `${source}: pieces[${id}]: "${p.piece}" is already defined`);
      }
      map.set(p.piece, id);
      if (p.type === PieceType.USER_DEFINED) this.#userDefined.push(p.piece);
      if (p.type === PieceType.UNKNOWN) {
        if (unk >= 0) throw new TnlError("input", `${source}: pieces[${id}]: a second UNKNOWN piece`);
        unk = id;
      }
      if (p.type === PieceType.BYTE) {
        const m = /^<0x([0-9A-F]{2})>$/.exec(p.piece);
        if (!m) {
          throw new TnlError("input", `${source}: pieces[${id}]: BYTE piece "${p.piece}" is not <0xHH>`);
        }
        const b = parseInt(m[1], 16);
        this.#byteIds[b] = id;
        this.#byteOf[id] = b;
      }
      if (normal && /[^\u2581]\u2581/u.test(p.piece)) wordwise = false;
    });
    if (unk < 0) throw new TnlError("input", `${source}: pieces: no UNKNOWN piece (<unk>)`);
    if (t.byteFallback && this.#byteIds.some((id) => id < 0)) {
      const b = this.#byteIds.findIndex((id) => id < 0);
      throw new TnlError(
        "input",
        `${source}: trainer_spec.byte_fallback is set but the byte piece <0x${hex2(b)}> is missing`,
      );
    }
    this.#unkId = unk;
    this.#wordwise = wordwise && !t.treatWhitespaceAsSuffix;
    this.#normalizer = new Normalizer(model.normalizer, t.treatWhitespaceAsSuffix, this.#userDefined, source);
    const control = (piece: string) => {
      const id = this.tokenToId(piece);
      return id !== undefined && this.#types[id] === PieceType.CONTROL ? id : null;
    };
    this.specialIds = { pad: control(t.padPiece), bos: control(t.bosPiece), eos: control(t.eosPiece), unk };
  }

  idToToken(id: number): string | undefined {
    return this.model.pieces[id]?.piece;
  }

  /** The library's PieceToId, except that an unknown piece gives undefined instead of the unk id. */
  tokenToId(token: string): number | undefined {
    return this.#reserved.get(token) ?? this.#pieces.get(token);
  }

  #pieceToId(piece: string): number {
    return this.#reserved.get(piece) ?? this.#pieces.get(piece) ?? this.#unkId;
  }

  encode(text: string): number[] {
    return this.encodeBytes(encodeUtf8(text));
  }

  /** Encodes bytes; an invalid UTF-8 byte becomes U+FFFD (one per byte), as the library's normalizer does. */
  encodeBytes(bytes: Uint8Array): number[] {
    const normalized = this.#normalizer.normalizeToText(bytes);
    const ids: number[] = [];
    if (normalized.length === 0) return ids;
    if (!this.#wordwise) {
      this.#encodeNormalized(normalized, ids);
    } else {
      // Word by word: a piece never spans a "▁" that follows another character.
      let start = 0;
      for (let i = 1; i <= normalized.length; i++) {
        if (
          i === normalized.length || (normalized[i] === SPACE_SYMBOL && normalized[i - 1] !== SPACE_SYMBOL)
        ) {
          const word = normalized.slice(start, i);
          let cached = this.#cache.get(word);
          if (cached === undefined) {
            cached = [];
            this.#encodeNormalized(word, cached);
            if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
            this.#cache.set(word, cached);
          }
          for (let k = 0; k < cached.length; k++) ids.push(cached[k]);
          start = i;
        }
      }
    }
    if (!this.model.trainer.byteFallback) {
      // A run of unknown pieces is one unknown token.
      let w = 0;
      for (let r = 0; r < ids.length; r++) {
        if (ids[r] === this.#unkId && w > 0 && ids[w - 1] === this.#unkId) continue;
        ids[w++] = ids[r];
      }
      ids.length = w;
    }
    return ids;
  }

  /** The library's bpe::Model::Encode on normalized text, then byte fallback; appends ids. */
  #encodeNormalized(text: string, ids: number[]): void {
    // Symbols: user-defined pieces (frozen, longest match) or single characters, as [start, end) spans.
    const starts: number[] = [], ends: number[] = [], frozen: boolean[] = [];
    for (let i = 0; i < text.length;) {
      let len = 0;
      for (const u of this.#userDefined) {
        if (u.length > len && text.startsWith(u, i)) len = u.length;
      }
      const isUser = len > 0;
      if (!isUser) len = text.codePointAt(i)! > 0xffff ? 2 : 1;
      starts.push(i);
      ends.push(i + len);
      frozen.push(isUser);
      i += len;
    }
    const n = starts.length;
    const next = new Int32Array(n), prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Agenda: (score desc, left asc). Entries: left, right, score, size (in UTF-16 units).
    const eLeft: number[] = [], eRight: number[] = [], eScore: number[] = [], eSize: number[] = [];
    const heap: number[] = [];
    const before = (x: number, y: number) =>
      eScore[x] > eScore[y] || (eScore[x] === eScore[y] && eLeft[x] < eLeft[y]);
    const push = (e: number) => {
      let i = heap.length;
      heap.push(e);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!before(e, heap[p])) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = e;
    };
    const pop = () => {
      const top = heap[0];
      const last = heap.pop()!;
      if (heap.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= heap.length) break;
          const c = l + 1 < heap.length && before(heap[l + 1], heap[l]) ? l + 1 : l;
          if (!before(heap[c], last)) break;
          heap[i] = heap[c];
          i = c;
        }
        heap[i] = last;
      }
      return top;
    };
    const revMerge = new Map<string, [string, string]>();
    const maybeAdd = (left: number, right: number) => {
      if (left === -1 || right === -1 || frozen[left] || frozen[right]) return;
      const piece = text.slice(starts[left], ends[right]);
      const id = this.#pieces.get(piece);
      if (id === undefined) return;
      const e = eLeft.length;
      eLeft.push(left);
      eRight.push(right);
      eScore.push(this.#scores[id]);
      eSize.push(ends[right] - starts[left]);
      push(e);
      if (this.#types[id] === PieceType.UNUSED) {
        revMerge.set(piece, [text.slice(starts[left], ends[left]), text.slice(starts[right], ends[right])]);
      }
    };
    for (let i = 1; i < n; i++) maybeAdd(i - 1, i);
    while (heap.length > 0) {
      const e = pop();
      const l = eLeft[e], r = eRight[e];
      const lLen = ends[l] - starts[l], rLen = ends[r] - starts[r];
      if (lLen === 0 || rLen === 0 || lLen + rLen !== eSize[e]) continue;
      ends[l] = ends[r];
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      ends[r] = starts[r];
      maybeAdd(prev[l], l);
      maybeAdd(l, next[l]);
    }
    const emit = (w: string) => {
      const id = this.#pieceToId(w);
      if (this.#types[id] === PieceType.UNUSED) {
        const p = revMerge.get(w);
        if (p) {
          emit(p[0]);
          emit(p[1]);
          return;
        }
      }
      if (id === this.#unkId && this.model.trainer.byteFallback) {
        for (const b of encodeUtf8(w)) ids.push(this.#byteIds[b]);
      } else {
        ids.push(id);
      }
    };
    for (let i = 0; i !== -1 && n > 0; i = next[i]) emit(text.slice(starts[i], ends[i]));
  }

  decode(ids: readonly number[]): string {
    const stream = this.decodeStream();
    let s = "";
    for (const id of ids) s += stream.push(id);
    return s + stream.flush();
  }

  decodeStream(): { push(id: number): string; flush(): string } {
    const norm = this.model.normalizer;
    const stripLeading = norm.addDummyPrefix || norm.removeExtraWhitespaces;
    let bytes = new Utf8Stream();
    let emitted = false, isBosWs = true, bosWsSeen = false;
    const out = (s: string) => {
      if (s.length > 0) emitted = true;
      return s;
    };
    return {
      push: (id: number) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
          throw new TnlError(
            "input",
            `token id ${id} is not in the vocabulary (ids 0..${this.vocabSize - 1})`,
          );
        }
        const b = this.#byteOf[id];
        if (b >= 0) return out(bytes.push(Uint8Array.of(b)));
        let s = bytes.flush();
        bytes = new Utf8Stream();
        if (s.length > 0) emitted = true;
        if (bosWsSeen || emitted) isBosWs = false;
        const type = this.#types[id];
        let piece = this.model.pieces[id].piece;
        bosWsSeen = false;
        if (type === PieceType.CONTROL) {
          piece = "";
        } else if (type === PieceType.UNKNOWN) {
          piece = this.model.trainer.unkSurface;
        } else {
          if (isBosWs && stripLeading && piece.startsWith(SPACE_SYMBOL)) {
            piece = piece.slice(SPACE_SYMBOL.length);
            bosWsSeen = !norm.removeExtraWhitespaces;
          }
          piece = piece.replaceAll(SPACE_SYMBOL, " ");
        }
        s += piece;
        return out(s);
      },
      flush: () => out(bytes.flush()),
    };
  }
}

function hex2(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, "0");
}

export function pieceTypeName(t: number): string {
  return TYPE_NAMES[t] ?? String(t);
}
