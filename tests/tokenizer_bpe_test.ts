import assert from "node:assert/strict";
import { Tokenizer as HfJsTokenizer } from "@huggingface/tokenizers";
import { ByteLevelBpe } from "../core/bpe.ts";
import { TnlError } from "../core/errors.ts";
import { loadTokenizer, loadTokenizerConfig } from "../core/tokenizer.ts";
import { Rng } from "../core/random.ts";
import { type ExpectedCase, randomStrings, readJson, TOK_DATA } from "./_tokenizers.ts";

const HF_2K = `${TOK_DATA}/hf-bytelevel-bpe-2k.json`;

interface ExtraCase {
  text: string;
  hf_ids: number[];
  hf_decoded: string;
  /** the library's pre-tokenizer pieces (byte-level spelling) */
  hf_pretokens: string[];
  hf_split_ids: number[];
  hf_split_decoded: string;
}

Deno.test("byte-level BPE: expected.json ids and round trips exactly as the tokenizers library", async () => {
  const tok = await loadTokenizer(HF_2K);
  assert.equal(tok.kind, "bpe");
  assert.equal(tok.vocabSize, 2000);
  const cases = await readJson<ExpectedCase[]>(`${TOK_DATA}/expected.json`);
  assert.ok(cases.length >= 50);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.hf_ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.hf_ids), c.text, JSON.stringify(c.text));
  }
});

Deno.test("byte-level BPE: Unicode spaces as the library's regex sees them, added tokens inside text", async () => {
  const tok = await loadTokenizer(HF_2K);
  const cases = await readJson<ExtraCase[]>(`${TOK_DATA}/extra-expected.json`);
  for (const c of cases) {
    assert.deepEqual((tok as ByteLevelBpe).preTokenize(c.text), c.hf_pretokens, JSON.stringify(c.text));
    assert.deepEqual(tok.encode(c.text), c.hf_ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.hf_ids), c.hf_decoded, JSON.stringify(c.text));
  }
  // "<s>" in text is the special token, as in the library; encode adds none by itself.
  assert.deepEqual(tok.encode("<s>"), [1]);
  assert.deepEqual(tok.encode(""), []);
  assert.deepEqual(tok.specialIds, { pad: 0, bos: 1, eos: 2, unk: null });
  assert.equal(tok.idToToken(260), "he");
  assert.equal(tok.tokenToId("he"), 260);
  assert.equal(tok.tokenToId("no such token"), undefined);
});

// U+0085 and U+FEFF: the JS library's regex uses JavaScript's \s (U+FEFF yes, U+0085 no), the Rust library
// Unicode White_Space (the reverse). tnl follows the Rust library (checked above); the JS oracle is
// compared on strings without those two characters.
const JS_REGEX_DIFFERS = [0x85, 0xfeff];

Deno.test("byte-level BPE: the same ids as @huggingface/tokenizers on 400 random strings", async () => {
  const tok = await loadTokenizer(HF_2K);
  const oracle = new HfJsTokenizer(JSON.parse(await Deno.readTextFile(HF_2K)), {});
  for (const s of randomStrings(7, 400, { exclude: JS_REGEX_DIFFERS })) {
    assert.deepEqual(tok.encode(s), oracle.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s));
  }
});

Deno.test("byte-level BPE: decode(encode(x)) = x, and streaming decode never splits a character", async () => {
  const tok = await loadTokenizer(HF_2K);
  for (const s of randomStrings(11, 500)) {
    const ids = tok.encode(s);
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    const stream = tok.decodeStream();
    const deltas = ids.map((id) => stream.push(id));
    deltas.push(stream.flush());
    assert.equal(deltas.join(""), s);
    for (const d of deltas) {
      assert.ok(!d.includes("\uFFFD"), `a delta holds a replacement character: ${JSON.stringify(d)}`);
      assert.ok(d.isWellFormed(), `a delta splits a character: ${JSON.stringify(d)}`);
    }
  }
});

Deno.test("byte-level BPE: invalid UTF-8 keeps its bytes (encodeBytes → decodeBytes is the identity)", async () => {
  const tok = await loadTokenizer(HF_2K) as ByteLevelBpe;
  const rng = new Rng(5);
  const enc = new TextEncoder();
  for (let n = 0; n < 300; n++) {
    // Valid text with invalid bytes spliced in: lone continuation bytes, truncated sequences, 0xFF.
    const parts: number[] = [];
    for (let k = rng.int(12); k >= 0; k--) {
      if (rng.int(3) === 0) {
        const bad = [[0x80], [0xff], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xc0, 0xaf], [0xed, 0xa0, 0x80]];
        parts.push(...bad[rng.int(bad.length)]);
      } else {
        parts.push(...enc.encode(randomStrings(n * 31 + k, 2)[1]));
      }
    }
    const bytes = Uint8Array.from(parts);
    const ids = tok.encodeBytes(bytes);
    assert.deepEqual(tok.decodeBytes(ids), bytes);
    // The text view replaces what is invalid, never throws.
    assert.equal(typeof tok.decode(ids), "string");
  }
  // Valid UTF-8: the same ids as encode.
  const text = "naïve café – 日本語 🙂";
  assert.deepEqual(tok.encodeBytes(enc.encode(text)), tok.encode(text));
});

async function loadJsonText(text: string): Promise<unknown> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, text);
    return await loadTokenizer(`${dir}/tokenizer.json`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejects(text: string, kind: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadJsonText(text), (e: unknown) => {
    assert.ok(e instanceof TnlError, String(e));
    assert.equal(e.kind, kind);
    assert.match(e.message, pattern);
    assert.match(e.message, /tokenizer\.json/);
    return true;
  });
}

Deno.test("malformed tokenizer.json: a clear error naming the file and the field", async () => {
  const good = JSON.parse(await Deno.readTextFile(HF_2K));
  const variant = (f: (d: Record<string, unknown> & { model: Record<string, unknown> }) => void) => {
    const d = structuredClone(good);
    f(d);
    return JSON.stringify(d);
  };
  await rejects("{ not json", "input", /not valid JSON/);
  await rejects("", "input", /empty file/);
  await rejects(
    "[1, 2]",
    "input",
    /neither a tokenizer\.json nor a SentencePiece model|expected a JSON object/,
  );
  await rejects(variant((d) => delete (d as Record<string, unknown>).model), "input", /model: missing/);
  await rejects(
    variant((d) => (d.model.type = "WordPiece")),
    "input",
    /model\.type: unknown model type "WordPiece"/,
  );
  await rejects(variant((d) => (d.model.vocab = [1, 2])), "input", /model\.vocab/);
  await rejects(
    variant((d) => ((d.model.vocab as Record<string, unknown>)["he"] = "x")),
    "input",
    /model\.vocab\["he"\]/,
  );
  await rejects(variant((d) => ((d.model.merges as unknown[])[3] = 7)), "input", /model\.merges\[3\]/);
  await rejects(
    variant((d) => ((d.model.merges as unknown[])[5] = ["Ġ", "no-such-token"])),
    "input",
    /model\.merges\[5\].*"no-such-token" is not in model\.vocab/,
  );
  await rejects(
    variant((d) => (d.pre_tokenizer = { type: "Metaspace", replacement: "▁" })),
    "input",
    /pre_tokenizer\.type: "Metaspace" is not supported/,
  );
  await rejects(variant((d) => (d.pre_tokenizer = null)), "input", /pre_tokenizer: expected the ByteLevel/);
  await rejects(
    variant((d) => ((d.added_tokens as { id: unknown }[])[1].id = -4)),
    "input",
    /added_tokens\[1\]\.id/,
  );
  await rejects(variant((d) => (d.model.dropout = 0.1)), "input", /model\.dropout/);
  await rejects(
    variant((d) => (d.normalizer = { type: "Precompiled" })),
    "input",
    /normalizer\.type: normalizer "Precompiled"/,
  );
});

Deno.test("loadTokenizer: a directory, any file name by content; missing paths are io errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(HF_2K, `${dir}/tokenizer.json`);
    assert.equal((await loadTokenizer(dir)).kind, "bpe");
    await Deno.mkdir(`${dir}/sp`);
    await Deno.copyFile(`${TOK_DATA}/sp-bpe-2k.model`, `${dir}/sp/spiece.model`);
    assert.equal((await loadTokenizer(`${dir}/sp`)).kind, "sentencepiece");
    await Deno.copyFile(`${TOK_DATA}/sp-bpe-2k.model`, `${dir}/weights-of-any-name.bin`);
    assert.equal((await loadTokenizer(`${dir}/weights-of-any-name.bin`)).kind, "sentencepiece");
    await Deno.copyFile(HF_2K, `${dir}/my-tokenizer.txt`);
    assert.equal((await loadTokenizer(`${dir}/my-tokenizer.txt`)).kind, "bpe");
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(
      loadTokenizer(`${dir}/empty`),
      (e: unknown) => e instanceof TnlError && e.kind === "io",
    );
    await assert.rejects(
      loadTokenizer(`${dir}/missing.json`),
      (e: unknown) =>
        e instanceof TnlError && e.kind === "io" && /missing\.json: no such file/.test(e.message),
    );
    await Deno.writeFile(`${dir}/junk.bin`, Uint8Array.from([0x0a, 0xff, 0x01, 0x02]));
    await assert.rejects(
      loadTokenizer(`${dir}/junk.bin`),
      (e: unknown) => e instanceof TnlError && e.kind === "input" && /junk\.bin/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer_config.json: flags and special tokens (strings or AddedToken objects)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await loadTokenizerConfig(dir), null);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({
        add_bos_token: true,
        add_eos_token: false,
        bos_token: { __type: "AddedToken", content: "<s>", lstrip: false },
        eos_token: "</s>",
        unk_token: "<unk>",
      }),
    );
    assert.deepEqual(await loadTokenizerConfig(dir), {
      addBosToken: true,
      addEosToken: false,
      bosToken: "<s>",
      eosToken: "</s>",
      padToken: null,
      unkToken: "<unk>",
    });
    // The special tokens it names are the tokenizer's.
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ eos_token: "<pad>" }));
    await Deno.copyFile(HF_2K, `${dir}/tokenizer.json`);
    assert.equal((await loadTokenizer(dir)).specialIds.eos, 0);
    // Encoding never adds BOS/EOS, whatever the config says.
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ add_bos_token: true, add_eos_token: true }),
    );
    assert.deepEqual((await loadTokenizer(dir)).encode("he"), [260]);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ add_bos_token: "yes" }));
    await assert.rejects(
      loadTokenizerConfig(dir),
      (e: unknown) =>
        e instanceof TnlError && e.kind === "input" &&
        /tokenizer_config\.json: add_bos_token/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("byte-level BPE with an NFC normalizer and a Split regex before ByteLevel (Llama 3 shape)", async () => {
  const tok = await loadTokenizer(`${TOK_DATA}/hf-split-nfc-bpe-800.json`);
  const cases = await readJson<ExtraCase[]>(`${TOK_DATA}/extra-expected.json`);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.hf_split_ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.hf_split_ids), c.hf_split_decoded, JSON.stringify(c.text));
  }
  assert.deepEqual(tok.specialIds, { pad: null, bos: 0, eos: 1, unk: null });
  // NFC composes before splitting: "e" + U+0301 encodes as "é".
  assert.deepEqual(tok.encode("cafe\u0301"), tok.encode("caf\u00e9"));
  // Everything but U+0085/U+FEFF (see above) as the JS library does, whose Split follows the same rules.
  const oracle = new HfJsTokenizer(
    JSON.parse(await Deno.readTextFile(`${TOK_DATA}/hf-split-nfc-bpe-800.json`)),
    {},
  );
  for (const s of randomStrings(19, 300, { exclude: JS_REGEX_DIFFERS })) {
    assert.deepEqual(tok.encode(s), oracle.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s));
  }
});
