import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { parseSentencePieceModel, SentencePieceBpe } from "../core/sentencepiece.ts";
import { loadTokenizer } from "../core/tokenizer.ts";
import { type ExpectedCase, randomStrings, readJson, TOK_DATA } from "./_tokenizers.ts";

const SP_2K = `${TOK_DATA}/sp-bpe-2k.model`;

type ExtraCase = { text: string } & Record<string, number[] | string>;

Deno.test("SentencePiece BPE: expected.json ids and decodes exactly as the sentencepiece library", async () => {
  const tok = await loadTokenizer(SP_2K);
  assert.equal(tok.kind, "sentencepiece");
  assert.equal(tok.vocabSize, 2000);
  assert.deepEqual(tok.specialIds, { pad: null, bos: 1, eos: 2, unk: 0 });
  const cases = await readJson<ExpectedCase[]>(`${TOK_DATA}/expected.json`);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.sp_ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.sp_ids), c.sp_decoded, JSON.stringify(c.text));
  }
});

Deno.test("SentencePiece BPE: NFKC character map, user-defined symbols, no byte fallback, normalizer flags", async () => {
  const cases = await readJson<ExtraCase[]>(`${TOK_DATA}/extra-expected.json`);
  for (
    const [key, file] of [
      ["sp", "sp-bpe-2k.model"],
      ["sp_nfkc", "sp-nfkc-bpe-600.model"], // nmt_nfkc: a non-identity precompiled_charsmap
      ["sp_plain", "sp-plain-bpe-500.model"], // no byte fallback, no dummy prefix, spaces kept
    ]
  ) {
    const tok = await loadTokenizer(`${TOK_DATA}/${file}`);
    for (const c of cases) {
      assert.deepEqual(tok.encode(c.text), c[`${key}_ids`], `${file}: ${JSON.stringify(c.text)}`);
      assert.equal(
        tok.decode(c[`${key}_ids`] as number[]),
        c[`${key}_decoded`],
        `${file}: ${JSON.stringify(c.text)}`,
      );
    }
  }
  const nfkc = await loadTokenizer(`${TOK_DATA}/sp-nfkc-bpe-600.model`) as SentencePieceBpe;
  assert.ok(nfkc.model.normalizer.precompiledCharsmap.length > 1000, "the fixture carries a character map");
  // NFKC folds the ligature and the full-width letters before BPE.
  assert.deepEqual(nfkc.encode("ﬁne ＡＢ"), nfkc.encode("fine AB"));
});

Deno.test("SentencePiece BPE: decode(encode(x)) = x where the normalizer keeps x; streaming never splits", async () => {
  const tok = await loadTokenizer(SP_2K);
  // remove_extra_whitespaces: leading, trailing and repeated U+0020 do not survive; everything else does
  // (byte fallback covers characters outside the vocabulary).
  for (const raw of randomStrings(3, 400)) {
    const s = raw.replace(/ {2,}/g, " ").replace(/^ +| +$/g, "");
    const ids = tok.encode(s);
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    const stream = tok.decodeStream();
    const deltas = ids.map((id) => stream.push(id));
    deltas.push(stream.flush());
    assert.equal(deltas.join(""), s);
    for (const d of deltas) assert.ok(d.isWellFormed() && !d.includes("\uFFFD"), JSON.stringify(d));
  }
  // Invalid UTF-8: each invalid byte reads as U+FFFD, as the library's normalizer does.
  const sp = tok as SentencePieceBpe;
  assert.deepEqual(sp.encodeBytes(Uint8Array.from([0x61, 0xff, 0x62])), sp.encode("a\uFFFDb"));
  assert.throws(() => tok.decode([2000]), (e: unknown) => e instanceof TnlError && /2000/.test(e.message));
});

// Protobuf pieces for crafted models: appending a message field merges it into the one already there.
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}
function field(num: number, payload: number[]): number[] {
  return [...varint((num << 3) | 2), ...varint(payload.length), ...payload];
}

async function loadBytes(bytes: Uint8Array) {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/tokenizer.model`, bytes);
    return await loadTokenizer(`${dir}/tokenizer.model`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function assertInputError(pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof TnlError, String(e));
    assert.equal(e.kind, "input");
    assert.match(e.message, /tokenizer\.model/);
    assert.match(e.message, pattern);
    return true;
  };
}

Deno.test("SentencePiece models that cannot be run exactly are refused with a clear error", async () => {
  const good = await Deno.readFile(SP_2K);
  const plus = (extra: number[]) => Uint8Array.from([...good, ...extra]);
  // trainer_spec.model_type = UNIGRAM (1)
  await assert.rejects(
    loadBytes(plus(field(2, [0x18, 0x01]))),
    assertInputError(/model type UNIGRAM is not supported/),
  );
  // a denormalizer with a character map
  await assert.rejects(
    loadBytes(plus(field(5, field(2, [8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x61, 0])))),
    assertInputError(/denormalizer_spec\.precompiled_charsmap/),
  );
  // a broken character map
  await assert.rejects(
    loadBytes(plus(field(3, field(2, [0xff, 0xff, 0, 0, 1])))),
    assertInputError(/normalizer_spec\.precompiled_charsmap/),
  );
  // truncated file
  await assert.rejects(
    loadBytes(good.subarray(0, 15000)),
    assertInputError(/not a valid SentencePiece model/),
  );
  // byte_fallback without its byte pieces
  const model = parseSentencePieceModel(good, "x");
  model.pieces = model.pieces.filter((p) => p.piece !== "<0x41>");
  assert.throws(() => new SentencePieceBpe(model, "x.model"), /byte piece <0x41> is missing/);
});
