// Training and validation data: token streams read from tnl token files, .npy arrays (uint16/uint32), text
// files (documents at blank lines) or JSONL with a "text" field (text is tokenized; every document ends with
// EOS), given as paths or globs; and the two ways training reads them: seeded random windows (train) and
// non-overlapping windows (validation).

import { ioError, TnlError } from "./errors.ts";
import { Rng } from "./random.ts";
import { encodeBytesTo, readTokenFileWithHeader } from "./tokenfile.ts";
import type { Tokenizer } from "./tokenizer.ts";

export interface TokenStream {
  ids: Uint32Array;
  files: string[];
  /** the vocabulary the files declare (token-file headers) or the largest id + 1 (.npy), when no tokenizer */
  vocabHint: number;
}

/** Expands `*`, `?` and `**` in paths (sorted matches); a pattern without wildcards is itself. */
export async function expandGlobs(patterns: string[], what: string): Promise<string[]> {
  const out: string[] = [];
  for (const pattern of patterns) {
    if (!/[*?]/.test(pattern)) {
      out.push(pattern);
      continue;
    }
    const parts = pattern.split("/");
    const firstWild = parts.findIndex((p) => /[*?]/.test(p));
    const base = parts.slice(0, firstWild).join("/") || (pattern.startsWith("/") ? "/" : ".");
    const re = globRegex(parts.slice(firstWild).join("/"));
    const matches: string[] = [];
    const walk = async (dir: string, rel: string) => {
      let list: Deno.DirEntry[];
      try {
        list = [];
        for await (const e of Deno.readDir(dir)) list.push(e);
      } catch (e) {
        throw ioError("read directory", dir, e);
      }
      for (const e of list) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        const full = `${dir === "/" ? "" : dir}/${e.name}`;
        if (e.isDirectory) await walk(full, r);
        else if (re.test(r)) matches.push(base === "." ? r : full);
      }
    };
    await walk(base, "");
    if (!matches.length) throw new TnlError("io", `${what}: no file matches ${pattern}`);
    out.push(...matches.sort());
  }
  return out;
}

function globRegex(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      re += glob[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += glob[i + 2] === "/" ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    const st = await Deno.stat(path);
    if (st.isDirectory) throw new TnlError("io", `cannot read ${path}: is a directory, expected a data file`);
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof TnlError) throw e;
    throw ioError("read", path, e);
  }
}

/** A .npy file of uint16 or uint32 (little-endian, C order, 1-D or flattened). */
export function parseNpy(bytes: Uint8Array, path: string): Uint32Array {
  const bad = (why: string) => new TnlError("input", `${path}: not a usable .npy token array: ${why}`);
  if (bytes.length < 10 || bytes[0] !== 0x93 || new TextDecoder().decode(bytes.subarray(1, 6)) !== "NUMPY") {
    throw bad("no NUMPY magic");
  }
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = (major === 1 ? 10 : 12) + headerLen;
  if (start > bytes.length) throw bad("header longer than the file");
  const header = new TextDecoder().decode(bytes.subarray(major === 1 ? 10 : 12, start));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  if (/'fortran_order':\s*True/.test(header)) throw bad("Fortran order");
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shape === undefined) throw bad("header without descr or shape");
  const count = shape.split(",").map((s) => s.trim()).filter(Boolean).reduce((a, s) => a * Number(s), 1);
  const width = descr === "<u2" || descr === "|u2" ? 2 : descr === "<u4" ? 4 : 0;
  if (!width) throw bad(`dtype ${descr} (expected uint16 or uint32, little-endian)`);
  if (start + count * width !== bytes.length) {
    throw bad(`${bytes.length - start} data bytes for ${count} × ${width}`);
  }
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = width === 2 ? dv.getUint16(start + 2 * i, true) : dv.getUint32(start + 4 * i, true);
  }
  return out;
}

/** Reads and tokenizes the files of one split into one stream of ids. */
export async function loadTokens(
  patterns: string[],
  tokenizer: Tokenizer | null,
  what: string,
): Promise<TokenStream> {
  const files = await expandGlobs(patterns, what);
  const parts: ArrayLike<number>[] = [];
  let vocabHint = 0;
  for (const path of files) {
    if (path.endsWith(".bin")) {
      const { header, ids } = await readTokenFileWithHeader(path);
      parts.push(ids);
      vocabHint = Math.max(vocabHint, header.vocabSize);
      continue;
    }
    const bytes = await readBytes(path);
    if (path.endsWith(".npy")) {
      const ids = parseNpy(bytes, path);
      parts.push(ids);
      for (const id of ids) vocabHint = Math.max(vocabHint, id + 1);
      continue;
    }
    if (!tokenizer) {
      throw new TnlError(
        "input",
        `${what}: ${path} is text, but the config names no data.tokenizer to encode it`,
      );
    }
    const ids: number[] = [];
    const sink = (chunk: number[]) => {
      for (const id of chunk) ids.push(id);
    };
    if (path.endsWith(".jsonl")) {
      const lines = new TextDecoder().decode(bytes).split("\n");
      for (let i = 0; i < lines.length; i++) {
        if (!lines[i].trim()) continue;
        let rec: unknown;
        try {
          rec = JSON.parse(lines[i]);
        } catch {
          throw new TnlError("input", `${path}:${i + 1}: not valid JSON`);
        }
        const text = (rec as { text?: unknown })?.text;
        if (typeof text !== "string") throw new TnlError("input", `${path}:${i + 1}: no string field "text"`);
        const eos = tokenizer.specialIds.eos;
        if (eos === null) {
          throw new TnlError("input", `${what}: the tokenizer has no EOS to end documents with`);
        }
        sink([
          ...(tokenizer.encodeBytes
            ? tokenizer.encodeBytes(new TextEncoder().encode(text))
            : tokenizer.encode(text)),
          eos,
        ]);
      }
    } else {
      await encodeBytesTo(tokenizer, bytes, { docs: true }, sink);
    }
    parts.push(ids);
  }
  const total = parts.reduce((a, p) => a + p.length, 0);
  if (total === 0) throw new TnlError("input", `${what}: the data is empty (${files.join(", ")})`);
  const ids = new Uint32Array(total);
  let off = 0;
  for (const p of parts) {
    ids.set(p, off);
    off += p.length;
  }
  return { ids, files, vocabHint: tokenizer ? tokenizer.vocabSize : vocabHint };
}

/** Checks every id is below the model's vocabulary, naming the first that is not. */
export function checkVocab(s: TokenStream, vocab: number, what: string): void {
  for (let i = 0; i < s.ids.length; i++) {
    if (s.ids[i] >= vocab) {
      throw new TnlError(
        "input",
        `${what}: token ${i} has id ${s.ids[i]}, not below the model's vocabulary of ${vocab}`,
      );
    }
  }
}

/** Seeded random windows of T + 1 tokens (inputs and their next tokens); the RNG state is the position. */
export class WindowSampler {
  readonly rng: Rng;

  constructor(readonly ids: Uint32Array, readonly T: number, seed: number, what = "train") {
    if (ids.length < T + 1) {
      throw new TnlError("input", `${what}: ${ids.length} tokens, fewer than seq_len + 1 = ${T + 1}`);
    }
    this.rng = new Rng(seed);
  }

  /** B windows as inputs [B, T] and targets [B, T]. */
  next(B: number): { inputs: Uint32Array; targets: Int32Array } {
    const { T } = this;
    const inputs = new Uint32Array(B * T), targets = new Int32Array(B * T);
    const span = this.ids.length - T;
    for (let b = 0; b < B; b++) {
      const s = this.rng.int(span);
      inputs.set(this.ids.subarray(s, s + T), b * T);
      for (let t = 0; t < T; t++) targets[b * T + t] = this.ids[s + t + 1];
    }
    return { inputs, targets };
  }
}

/**
 * Validation windows: T + 1 tokens at stride T (each predicts T tokens), from the start, as many as
 * `maxTokens` asks for (null = the whole split; an incomplete last window is left out).
 */
export function validationWindows(ids: Uint32Array, T: number, maxTokens: number | null): number[] {
  const all = Math.floor((ids.length - 1) / T);
  const n = maxTokens === null ? all : Math.min(all, Math.ceil(maxTokens / T));
  return Array.from({ length: n }, (_, i) => i * T);
}
