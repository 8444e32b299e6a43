import assert from "node:assert/strict";
import { EXIT_CODES } from "../core/errors.ts";
import { readTokenFileWithHeader } from "../core/tokenfile.ts";
import { brownSplitText } from "../core/brown.ts";
import { brownDocs, TOK_DATA } from "./_tokenizers.ts";
import { oneErrorLine, tnl } from "./_cli.ts";

Deno.test("tnl tokenize train → encode → decode: files round-trip byte for byte, invalid UTF-8 too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const docs = (await brownDocs()).val.slice(0, 20);
    await Deno.writeTextFile(`${dir}/a.txt`, brownSplitText(docs.slice(0, 10)));
    await Deno.writeTextFile(`${dir}/b.txt`, brownSplitText(docs.slice(10)));
    const t = await tnl([
      "tokenize",
      "train",
      `${dir}/a.txt`,
      `${dir}/b.txt`,
      "--vocab-size",
      "600",
      "-o",
      `${dir}/tok.json`,
    ]);
    assert.equal(t.code, 0, t.stderr);
    assert.equal(t.stdout, "", "train prints nothing on stdout");
    assert.match(t.stderr, /train \[#+\] 100% 341\/341/);
    assert.match(t.stderr, /wrote .*tok\.json: 600 tokens \(3 special, 256 bytes, 341 merges\)/);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/tok.json`));
    assert.deepEqual(json.pre_tokenizer, {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    });
    assert.equal(json.decoder.type, "ByteLevel");
    assert.deepEqual(json.added_tokens.map((a: { id: number; content: string }) => [a.id, a.content]), [
      [0, "<pad>"],
      [1, "<s>"],
      [2, "</s>"],
    ]);

    // A file with invalid UTF-8, CRLF, no final newline: encode to a token file and decode back exactly.
    const raw = Uint8Array.from([
      ...new TextEncoder().encode("Café 🙂\r\n\tline two  "),
      0xff,
      0xc3,
      0x28,
      0x20,
      0x80,
    ]);
    await Deno.writeFile(`${dir}/raw.txt`, raw);
    const e = await tnl([
      "tokenize",
      "encode",
      "--tokenizer",
      `${dir}/tok.json`,
      `${dir}/raw.txt`,
      "-o",
      `${dir}/raw.bin`,
    ]);
    assert.equal(e.code, 0, e.stderr);
    const { header, ids } = await readTokenFileWithHeader(`${dir}/raw.bin`);
    assert.equal(header.bytesPerId, 2);
    assert.equal(header.vocabSize, 600);
    const d = await tnl(["tokenize", "decode", "--tokenizer", `${dir}/tok.json`, `${dir}/raw.bin`]);
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(d.bytes, raw);
    // Without -o: the ids on one line, nothing else; the same ids as the token file.
    const p = await tnl(["tokenize", "encode", "--tokenizer", `${dir}/tok.json`, `${dir}/raw.txt`]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /^\d+( \d+)*\n$/);
    assert.deepEqual(p.stdout.trim().split(" ").map(Number), Array.from(ids));
    // decode takes the ids themselves too, and stdin.
    const d2 = await tnl(["tokenize", "decode", "--tokenizer", `${dir}/tok.json`, p.stdout.trim()]);
    assert.deepEqual(d2.bytes, raw);
    const d3 = await tnl(["tokenize", "decode", "--tokenizer", `${dir}/tok.json`, "-"], { stdin: p.bytes });
    assert.deepEqual(d3.bytes, raw);
    // stdin input, --bos/--eos.
    const s = await tnl(["tokenize", "encode", "--tokenizer", `${dir}/tok.json`, "--bos", "--eos", "-"], {
      stdin: raw,
    });
    assert.deepEqual(s.stdout.trim().split(" ").map(Number), [1, ...ids, 2]);

    // --docs: each document followed by </s>.
    const docsOut = await tnl([
      "tokenize",
      "encode",
      "--tokenizer",
      `${dir}/tok.json`,
      "--docs",
      `${dir}/a.txt`,
      "-o",
      `${dir}/a.bin`,
    ]);
    assert.equal(docsOut.code, 0, docsOut.stderr);
    const a = Array.from(await readTokenFileWithHeader(`${dir}/a.bin`).then((r) => r.ids));
    assert.equal(a.filter((id) => id === 2).length, 10);
    assert.equal(a[a.length - 1], 2);

    // An empty file: no ids, exit 0; an empty token file with -o.
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    const em = await tnl(["tokenize", "encode", "--tokenizer", `${dir}/tok.json`, `${dir}/empty.txt`]);
    assert.equal(em.code, 0, em.stderr);
    assert.equal(em.stdout, "\n");
    const em2 = await tnl([
      "tokenize",
      "encode",
      "--tokenizer",
      `${dir}/tok.json`,
      `${dir}/empty.txt`,
      "-o",
      `${dir}/empty.bin`,
    ]);
    assert.equal(em2.code, 0);
    assert.equal((await readTokenFileWithHeader(`${dir}/empty.bin`)).header.count, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tnl tokenize: SentencePiece models by content, tokenizer directories", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${TOK_DATA}/sp-bpe-2k.model`, `${dir}/released-checkpoint.spm`);
    const e = await tnl(["tokenize", "encode", "--tokenizer", `${dir}/released-checkpoint.spm`, "-"], {
      stdin: new TextEncoder().encode("He looked at his watch."),
    });
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout, "426 1359 364 359 267 1293 1952\n");
    await Deno.mkdir(`${dir}/ckpt`);
    await Deno.copyFile(`${TOK_DATA}/sp-bpe-2k.model`, `${dir}/ckpt/tokenizer.model`);
    const d = await tnl([
      "tokenize",
      "decode",
      "--tokenizer",
      `${dir}/ckpt`,
      "426 1359 364 359 267 1293 1952",
    ]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(d.stdout, "He looked at his watch.");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tnl tokenize: bad input gives one clear line and the documented exit code", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.txt`, "some text to train on");
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    await Deno.writeTextFile(`${dir}/bad.json`, '{"model": {"type": "Unigram", "vocab": []}}');
    const cases: [string[], number, RegExp][] = [
      [
        ["tokenize", "train", `${dir}/missing.txt`, "--vocab-size", "300", "-o", `${dir}/t.json`],
        EXIT_CODES.io,
        /missing\.txt: no such file/,
      ],
      [
        ["tokenize", "train", `${dir}/empty.txt`, "--vocab-size", "300", "-o", `${dir}/t.json`],
        EXIT_CODES.input,
        /empty corpus/,
      ],
      [
        ["tokenize", "train", `${dir}/a.txt`, "--vocab-size", "100", "-o", `${dir}/t.json`],
        EXIT_CODES.usage,
        /--vocab-size 100: must be at least 259/,
      ],
      [
        ["tokenize", "train", `${dir}/a.txt`, "--vocab-size", "x", "-o", `${dir}/t.json`],
        EXIT_CODES.usage,
        /--vocab-size x/,
      ],
      [["tokenize", "train", `${dir}/a.txt`, "--vocab-size", "300"], EXIT_CODES.usage, /--output/],
      [
        ["tokenize", "encode", "--tokenizer", `${dir}/bad.json`, `${dir}/a.txt`],
        EXIT_CODES.input,
        /bad\.json: model\.type: unknown model type "Unigram"/,
      ],
      [
        ["tokenize", "encode", "--tokenizer", `${dir}/nope.json`, `${dir}/a.txt`],
        EXIT_CODES.io,
        /nope\.json/,
      ],
      [
        ["tokenize", "encode", "--tokenizer", `${TOK_DATA}/hf-bytelevel-bpe-2k.json`, `${dir}/nope.txt`],
        EXIT_CODES.io,
        /nope\.txt/,
      ],
      [
        ["tokenize", "decode", "--tokenizer", `${TOK_DATA}/hf-bytelevel-bpe-2k.json`, "5 99999"],
        EXIT_CODES.input,
        /99999/,
      ],
    ];
    for (const [args, code, pattern] of cases) {
      const r = await tnl(args);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(oneErrorLine(r.stderr), pattern);
      assert.equal(r.stdout, "");
    }
    assert.ok(!(await exists(`${dir}/t.json`)), "no tokenizer written on failure");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}
