// The tokenizer interface the rest of tnl uses, and loading one from disk: a HuggingFace tokenizer.json
// (byte-level BPE), a SentencePiece model file of any name (recognised by its content), or a directory
// holding either; plus the tokenizer_config.json that says whether prompts get BOS/EOS.

import { ByteLevelBpe, parseTokenizerJson } from "./bpe.ts";
import { ioError, TnlError } from "./errors.ts";
import { looksLikeSentencePiece, parseSentencePieceModel, SentencePieceBpe } from "./sentencepiece.ts";

export interface SpecialIds {
  pad: number | null;
  bos: number | null;
  eos: number | null;
  unk: number | null;
}

export interface Tokenizer {
  readonly kind: "bpe" | "sentencepiece";
  /** total ids, specials included */
  readonly vocabSize: number;
  /** exact; never adds BOS/EOS */
  encode(text: string): number[];
  /** byte-level BPE: invalid UTF-8 is kept as its bytes; SentencePiece: each invalid byte reads as U+FFFD */
  encodeBytes?(bytes: Uint8Array): number[];
  decode(ids: readonly number[]): string;
  /** byte-level BPE: the exact bytes the ids stand for (invalid UTF-8 included) */
  decodeBytes?(ids: readonly number[]): Uint8Array;
  /** streaming text deltas for generation; never splits a UTF-8 character */
  decodeStream(): { push(id: number): string; flush(): string };
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  readonly specialIds: SpecialIds;
}

export interface TokenizerConfig {
  addBosToken: boolean;
  addEosToken: boolean;
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
}

/** Names of the files a tokenizer directory may hold, in the order they are looked for. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer.model"] as const;

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw ioError("read", path, e);
  }
}

async function statOf(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    throw ioError("read", path, e);
  }
}

/** Resolves a tokenizer path: a file as it is, a directory to the tokenizer file inside it. */
export async function tokenizerFile(path: string): Promise<string> {
  const info = await statOf(path);
  if (!info.isDirectory) return path;
  const found = await tokenizerFileIn(path);
  if (found) return found;
  throw new TnlError("io", `cannot read ${path}: no tokenizer.json or SentencePiece model in this directory`);
}

/** The tokenizer file inside directory `dir` (tokenizer.json, tokenizer.model, another SentencePiece model), or null. */
export async function tokenizerFileIn(dir: string): Promise<string | null> {
  for (const name of TOKENIZER_FILES) {
    const p = `${dir.replace(/\/+$/, "")}/${name}`;
    try {
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* try the next name */ }
  }
  // Any other file that is a SentencePiece model (released checkpoints name them freely).
  const candidates: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".model")) candidates.push(`${dir.replace(/\/+$/, "")}/${e.name}`);
    }
  } catch (e) {
    throw ioError("read", dir, e);
  }
  candidates.sort();
  for (const c of candidates) {
    if (looksLikeSentencePiece(await readBytes(c))) return c;
  }
  return null;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/**
 * Loads a tokenizer: a tokenizer.json (byte-level BPE), a SentencePiece model of any file name, or a
 * directory holding one. A tokenizer_config.json beside it names the special tokens when present.
 */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  const file = await tokenizerFile(path);
  const bytes = await readBytes(file);
  return tokenizerFromBytes(bytes, file, await loadTokenizerConfig(dirOf(file)));
}

/** A tokenizer from a file's bytes (format by content); every malformation is an input error naming `file`. */
export function tokenizerFromBytes(
  bytes: Uint8Array,
  file: string,
  config: TokenizerConfig | null = null,
): Tokenizer {
  let i = 0;
  while (
    i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)
  ) i++;
  if (i === bytes.length) throw new TnlError("input", `${file}: empty file, not a tokenizer`);
  if (bytes[i] === 0x7b /* { */) {
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new TnlError("input", `${file}: not valid JSON (${e instanceof Error ? e.message : e})`);
    }
    return new ByteLevelBpe(
      parseTokenizerJson(doc as Parameters<typeof parseTokenizerJson>[0], file, {
        pad: config?.padToken,
        bos: config?.bosToken,
        eos: config?.eosToken,
      }),
    );
  }
  if (bytes[0] === 0x0a) {
    return new SentencePieceBpe(parseSentencePieceModel(bytes, file), file);
  }
  throw new TnlError("input", `${file}: neither a tokenizer.json nor a SentencePiece model`);
}

function tokenName(v: unknown, file: string, key: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  // Saved AddedToken: {"__type": "AddedToken", "content": "<s>", ...}
  if (
    typeof v === "object" && !Array.isArray(v) && typeof (v as { content?: unknown }).content === "string"
  ) {
    return (v as { content: string }).content;
  }
  throw new TnlError(
    "input",
    `${file}: ${key}: expected a token string or {"content": ...}, got ${JSON.stringify(v)}`,
  );
}

/** Reads DIR/tokenizer_config.json; null when there is none. */
export async function loadTokenizerConfig(dir: string): Promise<TokenizerConfig | null> {
  const file = `${dir.replace(/\/+$/, "")}/tokenizer_config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw ioError("read", file, e);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new TnlError("input", `${file}: not valid JSON (${e instanceof Error ? e.message : e})`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new TnlError("input", `${file}: expected a JSON object`);
  }
  const o = doc as Record<string, unknown>;
  const flag = (key: string) => {
    const v = o[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== "boolean") {
      throw new TnlError("input", `${file}: ${key}: expected true or false, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  return {
    addBosToken: flag("add_bos_token"),
    addEosToken: flag("add_eos_token"),
    bosToken: tokenName(o.bos_token, file, "bos_token"),
    eosToken: tokenName(o.eos_token, file, "eos_token"),
    padToken: tokenName(o.pad_token, file, "pad_token"),
    unkToken: tokenName(o.unk_token, file, "unk_token"),
  };
}

/**
 * The BOS id that starts every prompt or document, by `tokenizer_config.json` in `dir`: when it says
 * add_bos_token, the token its bos_token names (in `tokenizer`), else `fallback` (config.json's
 * bos_token_id); null when there is no config or it adds no BOS.
 */
export async function configuredBos(
  dir: string,
  tokenizer: Tokenizer | null,
  fallback: number | null,
): Promise<number | null> {
  const config = await loadTokenizerConfig(dir);
  if (!config?.addBosToken) return null;
  if (config.bosToken === null || !tokenizer) return fallback;
  const id = tokenizer.tokenToId(config.bosToken);
  if (id === undefined) {
    throw new TnlError(
      "input",
      `${
        dir.replace(/\/+$/, "")
      }/tokenizer_config.json: bos_token '${config.bosToken}' is not in the tokenizer`,
    );
  }
  return id;
}
