import assert from "node:assert/strict";
import { Tokenizer as HfJsTokenizer } from "@huggingface/tokenizers";
import { trainBpe, WordCounter } from "../core/bpe_train.ts";
import { brownSplitText } from "../core/brown.ts";
import { TnlError } from "../core/errors.ts";
import { brownDocs, randomStrings, TOK_DATA } from "./_tokenizers.ts";

async function trainOnBrownVal(vocabSize: number, minFrequency = 0) {
  const counter = new WordCounter();
  counter.addText(brownSplitText((await brownDocs()).val));
  return trainBpe(counter.counts(), { vocabSize, minFrequency });
}

Deno.test("train: Brown val, 1000 tokens → byte for byte the tokenizer.json of HF's BpeTrainer", async () => {
  const tok = await trainOnBrownVal(1000);
  assert.equal(tok.vocabSize, 1000);
  assert.equal(tok.spec.merges.length, 1000 - 3 - 256);
  assert.deepEqual(tok.specialIds, { pad: 0, bos: 1, eos: 2, unk: null });
  const expected = await Deno.readTextFile(`${TOK_DATA}/hf-train-brown-val-1000.json`);
  const ours = tok.toJsonText();
  if (ours !== expected) {
    // Say where they part, rather than dumping two 50 KB strings.
    const a = JSON.parse(ours).model.merges, b = JSON.parse(expected).model.merges;
    const i = a.findIndex((m: string[], k: number) => JSON.stringify(m) !== JSON.stringify(b[k]));
    assert.fail(
      `tokenizer.json differs; first different merge #${i}: ${JSON.stringify(a[i])} vs ${
        JSON.stringify(b[i])
      }`,
    );
  }
});

// See tokenizer_bpe_test.ts: the JS library's regex differs from the Rust library's on these two.
const JS_REGEX_DIFFERS = [0x85, 0xfeff];

Deno.test("train: @huggingface/tokenizers loads our tokenizer.json and gives identical ids (Brown test split, random strings)", async () => {
  const tok = await trainOnBrownVal(1200);
  const oracle = new HfJsTokenizer(JSON.parse(tok.toJsonText()), {});
  const test = (await brownDocs()).test;
  assert.equal(test.length, 50);
  let tokens = 0;
  for (const doc of test) {
    const ids = tok.encode(doc);
    assert.deepEqual(ids, oracle.encode(doc, { add_special_tokens: false }).ids);
    assert.equal(tok.decode(ids), doc);
    tokens += ids.length;
  }
  assert.ok(tokens > 100000, `${tokens} tokens`);
  for (const s of randomStrings(23, 300, { exclude: JS_REGEX_DIFFERS })) {
    const ids = tok.encode(s);
    assert.deepEqual(ids, oracle.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s));
    assert.equal(tok.decode(ids), s);
  }
});

Deno.test("train: --min-frequency stops at rarer pairs; bad vocabulary size and empty corpus are errors", async () => {
  const all = await trainOnBrownVal(2000);
  const frequent = await trainOnBrownVal(2000, 200);
  assert.ok(frequent.spec.merges.length < all.spec.merges.length, `${frequent.spec.merges.length} merges`);
  assert.deepEqual(frequent.spec.merges, all.spec.merges.slice(0, frequent.spec.merges.length));
  const counter = new WordCounter();
  counter.addText("hello world");
  assert.throws(
    () => trainBpe(counter.counts(), { vocabSize: 258 }),
    (e: unknown) => e instanceof TnlError && e.kind === "usage" && /at least 259/.test(e.message),
  );
  assert.throws(
    () => trainBpe(new WordCounter().counts(), { vocabSize: 300 }),
    (e: unknown) => e instanceof TnlError && e.kind === "input" && /empty corpus/.test(e.message),
  );
  // A tiny corpus runs out of pairs: the vocabulary is what the corpus supports.
  const tiny = trainBpe(counter.counts(), { vocabSize: 1000 });
  assert.ok(tiny.vocabSize < 300);
  assert.deepEqual(tiny.encode("hello world"), [tiny.tokenToId("hello"), tiny.tokenToId("Ġworld")]);
});

Deno.test("train: invalid UTF-8 in a training file keeps its bytes", () => {
  const counter = new WordCounter();
  const bytes = Uint8Array.from([
    ...new TextEncoder().encode("abc abc "),
    0xff,
    0xfe,
    0x61,
    0x62,
    0x63,
    0xe2,
    0x82,
  ]);
  counter.addBytes(bytes);
  const tok = trainBpe(counter.counts(), { vocabSize: 270 });
  assert.deepEqual(tok.decodeBytes(tok.encodeBytes(bytes)), bytes);
  // 0xFF alone is its byte token ("ÿ" in byte-level spelling).
  assert.deepEqual(tok.encodeBytes(Uint8Array.of(0xff)), [tok.tokenToId("ÿ")]);
});
