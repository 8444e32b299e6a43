import assert from "node:assert/strict";
import { trainBpe, WordCounter } from "../core/bpe_train.ts";
import { TnlError } from "../core/errors.ts";
import { Rng } from "../core/random.ts";
import { tokenizerFromBytes } from "../core/tokenizer.ts";
import { mutate } from "./_fuzz.ts";
import { REPO_ROOT } from "./_gpu.ts";

const SAMPLE = "The quick brown fox — jumps over 13 lazy dogs.\n  Ünïcödé 漢字 🦊\t\n";

/**
 * Each mutation either loads (and then encodes and decodes a sample without failing) or throws an input
 * error naming the file; anything else (another exception, a hang) fails the test.
 */
function fuzz(name: string, base: Uint8Array, hot: [number, number][], seed: number, n = 10_000) {
  const rng = new Rng(seed);
  let loaded = 0, rejected = 0, slowest = 0;
  const start = performance.now();
  for (let it = 0; it < n; it++) {
    const bytes = mutate(base, rng, hot);
    const t0 = performance.now();
    try {
      const tok = tokenizerFromBytes(bytes, `fuzz-${name}`);
      const ids = tok.encode(SAMPLE);
      for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < tok.vocabSize, `id ${id}`);
      tok.decode(ids);
      loaded++;
    } catch (e) {
      if (!(e instanceof TnlError && e.kind === "input" && e.message.includes(`fuzz-${name}`))) {
        assert.fail(`${name} iteration ${it}: ${e instanceof Error ? `${e.name}: ${e.message}` : e}`);
      }
      rejected++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  const seconds = (performance.now() - start) / 1000;
  console.log(
    `${name} fuzz: ${loaded} loaded, ${rejected} rejected, ${seconds.toFixed(2)} s, slowest ${
      slowest.toFixed(1)
    } ms`,
  );
  assert.ok(rejected > n / 10 && loaded > n / 100, "mutations reach both outcomes");
  return seconds;
}

Deno.test("fuzz: 10,000 seeded mutations of a tokenizer.json each load or throw an input error", () => {
  // A small byte-level BPE (300 tokens) keeps each load cheap enough for 10,000 of them.
  const counter = new WordCounter();
  counter.addBytes(new TextEncoder().encode(SAMPLE.repeat(20) + "the fox, the dog; the end."));
  const text = trainBpe(counter.counts(), { vocabSize: 300, minFrequency: 0 }).toJsonText();
  const base = new TextEncoder().encode(text);
  const merges = text.indexOf('"merges"');
  const hot: [number, number][] = [[0, 400], [merges - 200, merges + 400], [base.length - 200, base.length]];
  const seconds = fuzz("tokenizer.json", base, hot, 7001);
  // About 1 s here; the bound catches a hang.
  assert.ok(seconds < 120, `${seconds} s`);
});

Deno.test("fuzz: 10,000 seeded mutations of a SentencePiece model each load or throw an input error", async () => {
  const base = await Deno.readFile(`${REPO_ROOT}/testdata/tokenizers/sp-plain-bpe-500.model`);
  const seconds = fuzz("tokenizer.model", base, [[0, 256], [base.length - 512, base.length]], 7002);
  assert.ok(seconds < 120, `${seconds} s`);
});
