// Token files (.bin): the token ids training reads, behind a small fixed header. Layout (README, "Token
// files"), all little-endian:
//
//   offset  size  field
//   0       6     magic "TNLTOK"
//   6       1     version (1)
//   7       1     bytes per id: 2 (u16, vocabulary ≤ 65536) or 4 (u32)
//   8       4     vocabulary size V (u32): every id is < V
//   12      4     reserved, 0
//   16      8     token count N (u64, < 2^53)
//   24      N×w   the ids
//
// Writing goes to a temporary file that is renamed into place when complete (never half-written).

import { ioError, TnlError } from "./errors.ts";
import type { Tokenizer } from "./tokenizer.ts";

export const TOKEN_FILE_MAGIC = "TNLTOK";
export const TOKEN_FILE_VERSION = 1;
export const TOKEN_FILE_HEADER_BYTES = 24;

export interface TokenFileHeader {
  version: number;
  bytesPerId: 2 | 4;
  vocabSize: number;
  count: number;
}

/** u16 when every id fits (vocabulary ≤ 65536), else u32. */
export function bytesPerIdFor(vocabSize: number): 2 | 4 {
  return vocabSize <= 65536 ? 2 : 4;
}

export function encodeTokenFileHeader(h: Omit<TokenFileHeader, "version">): Uint8Array {
  const out = new Uint8Array(TOKEN_FILE_HEADER_BYTES);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 6; i++) out[i] = TOKEN_FILE_MAGIC.charCodeAt(i);
  out[6] = TOKEN_FILE_VERSION;
  out[7] = h.bytesPerId;
  dv.setUint32(8, h.vocabSize, true);
  dv.setUint32(12, 0, true);
  dv.setBigUint64(16, BigInt(h.count), true);
  return out;
}

/** Parses and checks a header; `size` (the file's byte length) is checked against the count. */
export function decodeTokenFileHeader(bytes: Uint8Array, path: string, size: number): TokenFileHeader {
  const bad = (why: string) => new TnlError("input", `${path}: not a tnl token file: ${why}`);
  if (bytes.length < TOKEN_FILE_HEADER_BYTES) {
    throw bad(`${size} bytes, shorter than the ${TOKEN_FILE_HEADER_BYTES}-byte header`);
  }
  const magic = String.fromCharCode(...bytes.subarray(0, 6));
  if (magic !== TOKEN_FILE_MAGIC) throw bad(`magic ${JSON.stringify(magic)}, expected "${TOKEN_FILE_MAGIC}"`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, TOKEN_FILE_HEADER_BYTES);
  const version = bytes[6];
  if (version !== TOKEN_FILE_VERSION) {
    throw new TnlError(
      "input",
      `${path}: token file version ${version} is not supported (this tnl reads version ${TOKEN_FILE_VERSION})`,
    );
  }
  const bytesPerId = bytes[7];
  if (bytesPerId !== 2 && bytesPerId !== 4) throw bad(`bytes per id ${bytesPerId}, expected 2 or 4`);
  const vocabSize = dv.getUint32(8, true);
  if (vocabSize === 0) throw bad("vocabulary size 0");
  if (bytesPerId === 2 && vocabSize > 65536) throw bad(`u16 ids but vocabulary size ${vocabSize} > 65536`);
  const count64 = dv.getBigUint64(16, true);
  if (count64 > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`token count ${count64} is too large`);
  const count = Number(count64);
  const expected = TOKEN_FILE_HEADER_BYTES + count * bytesPerId;
  if (size !== expected) {
    throw bad(
      `${size} bytes, but the header says ${count} tokens × ${bytesPerId} bytes + ${TOKEN_FILE_HEADER_BYTES} = ${expected}`,
    );
  }
  return { version, bytesPerId, vocabSize, count };
}

/** Reads a whole token file: header and ids, every id checked against the vocabulary size. */
export async function readTokenFileWithHeader(
  path: string,
): Promise<{ header: TokenFileHeader; ids: Uint16Array | Uint32Array }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw ioError("read", path, e);
  }
  const header = decodeTokenFileHeader(bytes, path, bytes.length);
  const n = header.count;
  let ids: Uint16Array | Uint32Array;
  // The ids start at byte 24, aligned for both widths; copy into a fresh buffer we own.
  const body = bytes.slice(TOKEN_FILE_HEADER_BYTES);
  if (LITTLE_ENDIAN) {
    ids = header.bytesPerId === 2 ? new Uint16Array(body.buffer, 0, n) : new Uint32Array(body.buffer, 0, n);
  } else {
    const dv = new DataView(body.buffer);
    ids = header.bytesPerId === 2 ? new Uint16Array(n) : new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      ids[i] = header.bytesPerId === 2 ? dv.getUint16(2 * i, true) : dv.getUint32(4 * i, true);
    }
  }
  for (let i = 0; i < n; i++) {
    if (ids[i] >= header.vocabSize) {
      throw new TnlError(
        "input",
        `${path}: token ${i} has id ${
          ids[i]
        }, not below the vocabulary size ${header.vocabSize} in the header`,
      );
    }
  }
  return { header, ids };
}

/** The ids of a token file (what training reads). */
export async function readTokenFile(path: string): Promise<Uint16Array | Uint32Array> {
  return (await readTokenFileWithHeader(path)).ids;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Writes a token file incrementally: ids are appended in chunks to a temporary file beside `path`; `close`
 * writes the header, syncs and renames it into place; `abort` removes it.
 */
export class TokenFileWriter {
  readonly path: string;
  readonly vocabSize: number;
  readonly bytesPerId: 2 | 4;
  #count = 0;
  #file: Deno.FsFile;
  #tmp: string;
  #buf: Uint8Array;
  #dv: DataView;
  #fill = 0;

  private constructor(path: string, tmp: string, file: Deno.FsFile, vocabSize: number) {
    this.path = path;
    this.#tmp = tmp;
    this.#file = file;
    this.vocabSize = vocabSize;
    this.bytesPerId = bytesPerIdFor(vocabSize);
    this.#buf = new Uint8Array(1 << 20);
    this.#dv = new DataView(this.#buf.buffer);
  }

  static async create(path: string, vocabSize: number): Promise<TokenFileWriter> {
    if (!Number.isSafeInteger(vocabSize) || vocabSize < 1 || vocabSize > 0xffffffff) {
      throw new TnlError("input", `${path}: vocabulary size ${vocabSize} does not fit a token file`);
    }
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
    const tmp = `${dir}/.${path.slice(path.lastIndexOf("/") + 1)}.tmp-${Deno.pid}-${Date.now()}`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(tmp, { write: true, create: true, truncate: true });
      await writeAll(file, new Uint8Array(TOKEN_FILE_HEADER_BYTES));
    } catch (e) {
      throw ioError("write", path, e);
    }
    return new TokenFileWriter(path, tmp, file, vocabSize);
  }

  get count(): number {
    return this.#count;
  }

  async write(ids: ArrayLike<number>): Promise<void> {
    const w = this.bytesPerId;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < this.vocabSize) || !Number.isInteger(id)) {
        throw new TnlError("input", `token id ${id} is not below the vocabulary size ${this.vocabSize}`);
      }
      if (this.#fill + w > this.#buf.length) await this.#drain();
      if (w === 2) this.#dv.setUint16(this.#fill, id, true);
      else this.#dv.setUint32(this.#fill, id, true);
      this.#fill += w;
    }
    this.#count += ids.length;
  }

  async #drain(): Promise<void> {
    try {
      await writeAll(this.#file, this.#buf.subarray(0, this.#fill));
    } catch (e) {
      throw ioError("write", this.path, e);
    }
    this.#fill = 0;
  }

  async close(): Promise<void> {
    try {
      await this.#drain();
      await this.#file.seek(0, Deno.SeekMode.Start);
      await writeAll(
        this.#file,
        encodeTokenFileHeader({ bytesPerId: this.bytesPerId, vocabSize: this.vocabSize, count: this.#count }),
      );
      await this.#file.sync();
      this.#file.close();
      await Deno.rename(this.#tmp, this.path);
    } catch (e) {
      await this.abort();
      throw e instanceof TnlError ? e : ioError("write", this.path, e);
    }
  }

  async abort(): Promise<void> {
    try {
      this.#file.close();
    } catch { /* already closed */ }
    try {
      await Deno.remove(this.#tmp);
    } catch { /* nothing to clean */ }
  }
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
}

/** Writes ids to a token file in one go. */
export async function writeTokenFile(path: string, ids: ArrayLike<number>, vocabSize: number): Promise<void> {
  const w = await TokenFileWriter.create(path, vocabSize);
  try {
    await w.write(ids);
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.close();
}

// ---------------------------------------------------------------------------------------------------------
// From text to token ids, the way `tnl tokenize encode` and the data tasks do it.

/**
 * Splits bytes into documents at blank lines (lines holding nothing but spaces, tabs or CR): a document
 * is a run of consecutive non-blank lines, from the start of its first line to the end of its last line
 * (without that line's newline). Blank lines at the start or end of the file belong to no document.
 */
export function splitDocuments(bytes: Uint8Array): Uint8Array[] {
  const docs: Uint8Array[] = [];
  const n = bytes.length;
  let docStart = -1, docEnd = -1, lineStart = 0;
  for (;;) {
    let lineEnd = bytes.indexOf(0x0a, lineStart);
    if (lineEnd < 0) lineEnd = n;
    let blank = true;
    for (let k = lineStart; k < lineEnd; k++) {
      const b = bytes[k];
      if (b !== 0x20 && b !== 0x09 && b !== 0x0d) {
        blank = false;
        break;
      }
    }
    if (blank) {
      if (docStart >= 0) docs.push(bytes.subarray(docStart, docEnd));
      docStart = -1;
    } else {
      if (docStart < 0) docStart = lineStart;
      docEnd = lineEnd;
    }
    if (lineEnd >= n) break;
    lineStart = lineEnd + 1;
  }
  if (docStart >= 0) docs.push(bytes.subarray(docStart, docEnd));
  return docs;
}

export interface EncodeOptions {
  /** blank-line-separated documents, each followed by EOS */
  docs?: boolean;
  /** BOS before the input (before each document with `docs`) */
  bos?: boolean;
  /** EOS after the input (implied after each document with `docs`) */
  eos?: boolean;
}

/**
 * Encodes a file's bytes exactly (byte-level BPE keeps invalid UTF-8 as bytes), calling `sink` with ids
 * chunk by chunk (one chunk per document with `docs`). Throws "usage" when BOS/EOS is asked for and the
 * tokenizer has none.
 */
export async function encodeBytesTo(
  tok: Tokenizer,
  bytes: Uint8Array,
  opts: EncodeOptions,
  sink: (ids: number[]) => void | Promise<void>,
  onProgress?: (bytesDone: number) => void,
): Promise<void> {
  const special = (which: "bos" | "eos", why: string) => {
    const id = tok.specialIds[which];
    if (id === null) {
      throw new TnlError("usage", `${why}: the tokenizer has no ${which.toUpperCase()} token`);
    }
    return id;
  };
  const bos = opts.bos ? special("bos", "--bos") : null;
  const eos = opts.docs
    ? special("eos", "--docs (each document ends with EOS)")
    : opts.eos
    ? special("eos", "--eos")
    : null;
  const encode = (b: Uint8Array) =>
    tok.encodeBytes ? tok.encodeBytes(b) : tok.encode(new TextDecoder().decode(b));
  if (!opts.docs) {
    const ids = encode(bytes);
    if (bos !== null) ids.unshift(bos);
    if (eos !== null) ids.push(eos);
    await sink(ids);
    onProgress?.(bytes.length);
    return;
  }
  for (const doc of splitDocuments(bytes)) {
    const ids = encode(doc);
    if (bos !== null) ids.unshift(bos);
    ids.push(eos!);
    await sink(ids);
    onProgress?.(doc.byteOffset - bytes.byteOffset + doc.length);
  }
}
