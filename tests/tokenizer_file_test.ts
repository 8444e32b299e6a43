import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import {
  encodeBytesTo,
  encodeTokenFileHeader,
  readTokenFile,
  readTokenFileWithHeader,
  splitDocuments,
  TOKEN_FILE_HEADER_BYTES,
  TokenFileWriter,
  writeTokenFile,
} from "../core/tokenfile.ts";
import { loadTokenizer } from "../core/tokenizer.ts";
import { Rng } from "../core/random.ts";
import { TOK_DATA } from "./_tokenizers.ts";

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("token files: u16 up to 65536 tokens, u32 above; the header says so; ids come back", async () => {
  await withDir(async (dir) => {
    const rng = new Rng(1);
    for (const [vocab, width] of [[2000, 2], [65536, 2], [65537, 4], [200000, 4]] as const) {
      const ids = Array.from({ length: 1001 }, () => rng.int(vocab));
      ids.push(vocab - 1, 0);
      await writeTokenFile(`${dir}/t.bin`, ids, vocab);
      const bytes = await Deno.readFile(`${dir}/t.bin`);
      assert.equal(bytes.length, TOKEN_FILE_HEADER_BYTES + ids.length * width);
      assert.equal(new TextDecoder().decode(bytes.subarray(0, 6)), "TNLTOK");
      assert.deepEqual([bytes[6], bytes[7]], [1, width]);
      const { header, ids: back } = await readTokenFileWithHeader(`${dir}/t.bin`);
      assert.deepEqual(header, { version: 1, bytesPerId: width, vocabSize: vocab, count: ids.length });
      assert.ok(width === 2 ? back instanceof Uint16Array : back instanceof Uint32Array);
      assert.deepEqual(Array.from(back), ids);
    }
    // Empty and chunked writes.
    await writeTokenFile(`${dir}/empty.bin`, [], 300);
    assert.equal((await readTokenFile(`${dir}/empty.bin`)).length, 0);
    const w = await TokenFileWriter.create(`${dir}/big.bin`, 50000);
    const big = Array.from({ length: 700_000 }, (_, i) => (i * 7919) % 50000);
    for (let i = 0; i < big.length; i += 123_457) await w.write(big.slice(i, i + 123_457));
    await w.close();
    assert.deepEqual(Array.from(await readTokenFile(`${dir}/big.bin`)), big);
    // A failed write leaves nothing behind.
    const bad = await TokenFileWriter.create(`${dir}/bad.bin`, 10);
    await assert.rejects(bad.write([3, 10]), /not below the vocabulary size 10/);
    await bad.abort();
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["big.bin", "empty.bin", "t.bin"]);
  });
});

Deno.test("token files: readers check magic, version, width, length and ids, naming the file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/x.bin`;
    const good = () => {
      const h = encodeTokenFileHeader({ bytesPerId: 2, vocabSize: 100, count: 3 });
      return Uint8Array.from([...h, 1, 0, 2, 0, 99, 0]);
    };
    await Deno.writeFile(path, good());
    assert.deepEqual(Array.from(await readTokenFile(path)), [1, 2, 99]);
    const cases: [(b: Uint8Array) => Uint8Array, RegExp][] = [
      [(b) => (b[0] = 0x41, b), /magic "ANLTOK"/],
      [(b) => (b[6] = 2, b), /version 2 is not supported/],
      [(b) => (b[7] = 3, b), /bytes per id 3/],
      [(b) => b.subarray(0, b.length - 1), /header says 3 tokens/],
      [(b) => b.subarray(0, 10), /shorter than the 24-byte header/],
      [(b) => (b[TOKEN_FILE_HEADER_BYTES + 4] = 100, b), /token 2 has id 100/],
    ];
    for (const [corrupt, pattern] of cases) {
      await Deno.writeFile(path, corrupt(good()));
      await assert.rejects(readTokenFile(path), (e: unknown) => {
        assert.ok(e instanceof TnlError && e.kind === "input", String(e));
        assert.match(e.message, /x\.bin/);
        assert.match(e.message, pattern);
        return true;
      });
    }
    await assert.rejects(
      readTokenFile(`${dir}/none.bin`),
      (e: unknown) => e instanceof TnlError && e.kind === "io" && /none\.bin/.test(e.message),
    );
  });
});

Deno.test("documents: split at blank lines; file-edge blank lines and final newlines belong to none", () => {
  const docs = (s: string) =>
    splitDocuments(new TextEncoder().encode(s)).map((d) => new TextDecoder().decode(d));
  assert.deepEqual(docs(""), []);
  assert.deepEqual(docs("\n\n \n"), []);
  assert.deepEqual(docs("one"), ["one"]);
  assert.deepEqual(docs("one\n"), ["one"]);
  assert.deepEqual(docs("a\nb\n\nc"), ["a\nb", "c"]);
  assert.deepEqual(docs("\n\na\n \t\n\n\nb\r\n\r\nc\n\n"), ["a", "b\r", "c"]);
  assert.deepEqual(docs("  indented\n  still\n\nnext"), ["  indented\n  still", "next"]);
});

Deno.test("encodeBytesTo: --docs appends EOS to each document; --bos/--eos; none without them", async () => {
  const tok = await loadTokenizer(`${TOK_DATA}/hf-bytelevel-bpe-2k.json`);
  const run = async (text: string, opts: Parameters<typeof encodeBytesTo>[2]) => {
    const out: number[] = [];
    await encodeBytesTo(tok, new TextEncoder().encode(text), opts, (ids) => void out.push(...ids));
    return out;
  };
  const a = tok.encode("the cat"), b = tok.encode("sat\non it");
  assert.deepEqual(await run("the cat\n\nsat\non it\n", { docs: true }), [...a, 2, ...b, 2]);
  assert.deepEqual(await run("the cat\n\nsat\non it\n", { docs: true, bos: true }), [1, ...a, 2, 1, ...b, 2]);
  assert.deepEqual(await run("the cat", {}), a);
  assert.deepEqual(await run("the cat", { bos: true, eos: true }), [1, ...a, 2]);
  assert.deepEqual(await run("", {}), []);
  assert.deepEqual(await run("", { docs: true }), []);
  const sp = await loadTokenizer(`${TOK_DATA}/sp-bpe-2k.model`);
  await assert.rejects(
    encodeBytesTo(
      { ...sp, encode: sp.encode.bind(sp), specialIds: { ...sp.specialIds, eos: null } },
      new Uint8Array(1),
      { docs: true },
      () => {},
    ),
    (e: unknown) => e instanceof TnlError && e.kind === "usage" && /no EOS token/.test(e.message),
  );
});
