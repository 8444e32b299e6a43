import assert from "node:assert/strict";
import { FLOAT_DTYPES, INT_DTYPES } from "../core/dtype.ts";
import { TnlError } from "../core/errors.ts";
import { f32ToBf16Bits } from "../core/half.ts";
import { Rng } from "../core/random.ts";
import {
  MAX_HEADER_BYTES,
  openSafetensorsIndex,
  parseSafetensors,
  SafetensorsFile,
  serializeSafetensors,
  type TensorData,
  type TensorToWrite,
  writeSafetensors,
} from "../core/safetensors.ts";
import { mutate } from "./_fuzz.ts";
import { REPO_ROOT } from "./_gpu.ts";

const TINY = `${REPO_ROOT}/testdata/tnl-tiny`;

/** The state-dict names and shapes of TNL.md §2.10 for a config.json. */
function expectedTensors(config: Record<string, unknown>): Map<string, number[]> {
  const V = config.vocab_size as number,
    D = config.decoder_embed_dim as number,
    E = config.hidden_dim as number;
  const H = config.decoder_attention_heads as number, F = config.glu_dim as number;
  const L = config.decoder_layers as number, lrpe = config.linear_use_lrpe_list as number[];
  const d = E / H;
  const m = new Map<string, number[]>([["model.embed_tokens.weight", [V, D]]]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.token_mixer.qkvu_proj.weight`, [4 * E, D]);
    m.set(`${p}.token_mixer.out_proj.weight`, [D, E]);
    if (lrpe[l]) m.set(`${p}.token_mixer.lrpe.theta`, [H, 1, d]);
    m.set(`${p}.channel_mixer.l1.weight`, [F, D]);
    m.set(`${p}.channel_mixer.l2.weight`, [F, D]);
    m.set(`${p}.channel_mixer.l3.weight`, [D, F]);
  }
  m.set("lm_head.weight", [V, D]);
  return m;
}

Deno.test("tnl-tiny model.safetensors: every tensor loads, names and shapes are those of the spec table", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${TINY}/config.json`));
  const expected = expectedTensors(config);
  const f = await SafetensorsFile.open(`${TINY}/model.safetensors`);
  try {
    assert.deepEqual(new Set(f.names()), new Set(expected.keys()));
    for (const [name, shape] of expected) {
      assert.deepEqual(f.info(name), { dtype: "F32", shape }, name);
      const data = await f.readF32(name);
      assert.equal(data.length, shape.reduce((a, b) => a * b, 1));
      let sumSq = 0;
      for (const x of data) {
        assert.ok(Number.isFinite(x), name);
        sumSq += x * x;
      }
      assert.ok(sumSq > 0, `${name} is not all zero`);
    }
    // LRPE theta is perturbed away from its closed-form init (fixture README): values vary.
    const theta = await f.readF32("model.layers.0.token_mixer.lrpe.theta");
    assert.ok(new Set(theta).size > 1);
    await assert.rejects(
      f.readF32("nope"),
      (e) => e instanceof TnlError && e.message.includes("no tensor 'nope'"),
    );
  } finally {
    f.close();
  }
});

Deno.test("tnl-tiny golden.safetensors: F32 and I32 tensors, readInt on ids", async () => {
  const f = await SafetensorsFile.open(`${TINY}/golden.safetensors`);
  try {
    assert.deepEqual(f.info("input_ids"), { dtype: "I32", shape: [2, 96] });
    const ids = await f.readInt("input_ids");
    assert.ok(ids.every((t) => t >= 0 && t < 256));
    assert.deepEqual([...await f.readInt("decode_prefill")], [80]);
    assert.deepEqual(f.info("logits"), { dtype: "F32", shape: [2, 96, 256] });
    await assert.rejects(
      f.readF32("input_ids"),
      (e) =>
        e instanceof TnlError && e.kind === "input" && e.message.includes("tensor 'input_ids'") &&
        e.message.includes("I32"),
    );
  } finally {
    f.close();
  }
});

Deno.test("serializing the fixtures' tensors reproduces the reference implementation's files byte for byte", async () => {
  for (const file of ["model.safetensors", "golden.safetensors"]) {
    const original = await Deno.readFile(`${TINY}/${file}`);
    const f = SafetensorsFile.fromBytes(original, file);
    const tensors: TensorToWrite[] = [];
    // Given in reverse order: the writer lays them out in the reference order itself.
    for (const name of f.names().reverse()) {
      const { dtype, shape } = f.info(name);
      tensors.push({ name, dtype: dtype as TensorToWrite["dtype"], shape, data: await f.readRaw(name) });
    }
    assert.deepEqual(serializeSafetensors(tensors), original, file);
  }
});

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "tnl-st-" });
}

/** Tensors of every writable dtype with edge values. */
function sampleTensors(): TensorToWrite[] {
  const rng = new Rng(11);
  const f32 = new Float32Array(37);
  const u = new Uint32Array(f32.buffer);
  for (let i = 0; i < u.length; i++) u[i] = rng.nextU32();
  f32.set([0, -0, Infinity, -Infinity, NaN, 1e-45, 3.4028234663852886e38], 0);
  u[7] = 0x7fa00001; // a signaling NaN with a payload: written and read as bits
  const bits = new Uint16Array(65).map(() => rng.int(65536));
  bits.set([0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x7bff, 0x7d01], 0);
  const i64 = BigInt64Array.from([0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 40n, -(2n ** 31n)]);
  return [
    { name: "w.f32", dtype: "F32", shape: [37], data: f32 },
    { name: "w.f16", dtype: "F16", shape: [5, 13], data: bits },
    { name: "w.bf16", dtype: "BF16", shape: [65], data: bits },
    {
      name: "ids.i32",
      dtype: "I32",
      shape: [2, 3],
      data: Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31), 7, 42]),
    },
    { name: "ids.i64", dtype: "I64", shape: [6], data: i64 },
    { name: "scalar", dtype: "F32", shape: [], data: Float32Array.from([1.5]) },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  ];
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

Deno.test("write → read is bit-identical for F32, F16, BF16, I32, I64 (and scalars, empty tensors); metadata kept", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/m.safetensors`;
    const tensors = sampleTensors();
    const metadata = { format: "pt", 'note with "quotes"': "é\n" };
    await writeSafetensors(path, tensors, metadata);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["m.safetensors"],
      "no temporary file left",
    );
    const f = await SafetensorsFile.open(path);
    try {
      assert.deepEqual({ ...f.metadata }, metadata);
      assert.deepEqual(new Set(f.names()), new Set(tensors.map((t) => t.name)));
      for (const t of tensors) {
        assert.deepEqual(f.info(t.name), { dtype: t.dtype, shape: t.shape });
        assert.deepEqual(await f.readRaw(t.name), bytesOf(t.data as TensorData), t.name);
        // Each tensor starts at a multiple of its element size in the file.
        const info = f.tensors.get(t.name)!;
        assert.equal(info.begin % (t.dtype === "I64" ? 8 : t.dtype.endsWith("16") ? 2 : 4), 0);
      }
      const dataStart = Math.min(...[...f.tensors.values()].map((t) => t.begin));
      assert.equal(dataStart % 8, 0, "header padded to 8 bytes");
      assert.deepEqual(await f.readInt("ids.i32"), tensors[3].data);
      await assert.rejects(
        f.readInt("ids.i64"),
        (e) =>
          e instanceof TnlError && e.kind === "input" && e.message.includes("tensor 'ids.i64'") &&
          e.message.includes("9223372036854775807"),
      );
      assert.deepEqual([...await f.readF32("scalar")], [1.5]);
      assert.equal((await f.readF32("empty")).length, 0);
      // Widening is exact: BF16 bits become the upper half of the f32 bits.
      const wide = new Uint32Array((await f.readF32("w.bf16")).buffer);
      const bits = tensors[2].data as Uint16Array;
      for (let i = 0; i < bits.length; i++) {
        const isNaN = (bits[i] & 0x7f80) === 0x7f80 && (bits[i] & 0x7f) !== 0;
        if (!isNaN) assert.equal(wide[i], (bits[i] << 16) >>> 0);
      }
    } finally {
      f.close();
    }
    // The same file in memory.
    assert.deepEqual(serializeSafetensors(tensors, metadata), await Deno.readFile(path));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("F16/BF16 from f32 values round to nearest even; I64 from Int32Array sign-extends", async () => {
  const xs = Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 65520, 2 ** -25]);
  const bytes = serializeSafetensors([
    { name: "b", dtype: "BF16", shape: [6], data: xs },
    { name: "h", dtype: "F16", shape: [6], data: xs },
    { name: "l", dtype: "I64", shape: [3], data: Int32Array.from([-5, 0, 2 ** 31 - 1]) },
  ]);
  const f = SafetensorsFile.fromBytes(bytes, "mem");
  assert.deepEqual([...new Uint16Array((await f.readRaw("b")).buffer)], [...xs].map(f32ToBf16Bits));
  assert.deepEqual([...new Uint16Array((await f.readRaw("h")).buffer)], [
    0x3c00,
    0x3c04,
    0x3c0c,
    0xc100,
    0x7c00,
    0,
  ]);
  assert.deepEqual([...new BigInt64Array((await f.readRaw("l")).buffer)], [-5n, 0n, 2n ** 31n - 1n]);
  assert.deepEqual([...await f.readInt("l")], [-5, 0, 2 ** 31 - 1]);
});

Deno.test("data produced on demand is written tensor by tensor, in layout order", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/lazy.safetensors`;
    const produced: string[] = [];
    const lazy = (name: string, data: TensorData) => () => {
      produced.push(name);
      return Promise.resolve(data);
    };
    const b = Float32Array.from([1, 2]), a = Int32Array.from([3]);
    await writeSafetensors(path, [
      { name: "b", dtype: "F32", shape: [2], data: lazy("b", b) },
      { name: "a", dtype: "I32", shape: [1], data: lazy("a", a) },
      { name: "c", dtype: "BF16", shape: [2], data: lazy("c", b) },
    ]);
    assert.deepEqual(produced, ["b", "a", "c"]); // F32 before I32 before BF16
    const f = await SafetensorsFile.open(path);
    assert.deepEqual(await f.readF32("b"), b);
    assert.deepEqual(await f.readInt("a"), a);
    assert.deepEqual(await f.readF32("c"), b);
    f.close();
    assert.throws(
      () => serializeSafetensors([{ name: "b", dtype: "F32", shape: [2], data: lazy("b", b) }]),
      (e) => e instanceof TnlError && e.message.includes("no data in memory"),
    );
    // Produced data of the wrong size: an error, the old file untouched, no temporary left.
    await assert.rejects(
      writeSafetensors(path, [{ name: "b", dtype: "F32", shape: [3], data: lazy("b", b) }]),
      (e) => e instanceof TnlError && e.message.includes("'b': 8 bytes of data for shape [3] of F32"),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["lazy.safetensors"]);
    const again = await SafetensorsFile.open(path);
    assert.deepEqual([...await again.readF32("b")], [1, 2]);
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failed write leaves neither the file nor a temporary behind", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/x.safetensors`;
    await assert.rejects(
      writeSafetensors(path, [{ name: "a", dtype: "F32", shape: [3], data: new Float32Array(2) }]),
      (e) => e instanceof TnlError && e.message.includes("'a'"),
    );
    await assert.rejects(
      writeSafetensors(path, [
        { name: "a", dtype: "F32", shape: [1], data: new Float32Array(1) },
        { name: "a", dtype: "F32", shape: [1], data: new Float32Array(1) },
      ]),
      (e) => e instanceof TnlError && e.message.includes("given twice"),
    );
    await assert.rejects(
      writeSafetensors(`${dir}/no/such/dir/x.safetensors`, []),
      (e) => e instanceof TnlError && e.kind === "io" && e.message.includes("no/such/dir"),
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Malformed files: one test each, asserting the kind and that the message names the file and the fault.

/** A file with the given header text (padded to 8 bytes) and `dataLength` data bytes. */
function fileWith(header: string, dataLength: number): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + dataLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

function rejects(bytes: Uint8Array, fault: RegExp | string): void {
  assert.throws(
    () => parseSafetensors(bytes, "bad.safetensors"),
    (e) => {
      assert.ok(e instanceof TnlError, `a TnlError, got ${e}`);
      assert.equal(e.kind, "input");
      assert.ok(e.message.startsWith("bad.safetensors"), e.message);
      if (typeof fault === "string") {
        assert.ok(e.message.includes(fault), `"${e.message}" should say "${fault}"`);
      } else assert.match(e.message, fault);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    },
  );
}

const ONE = `{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}`;

Deno.test("valid hand-made header parses (control for the malformed cases)", () => {
  const h = parseSafetensors(fileWith(ONE, 24), "ok.safetensors");
  assert.deepEqual(h.tensors.get("a"), {
    name: "a",
    dtype: "F32",
    shape: [2, 3],
    begin: 8 + ONE.length,
    end: 8 + ONE.length + 24,
  });
});

Deno.test("malformed: truncated file", async () => {
  const good = fileWith(ONE, 24);
  rejects(
    good.subarray(0, good.length - 4),
    /tensor 'a' ends at data offset 24, past the 20 bytes of data \(truncated file\?\)/,
  );
  rejects(good.subarray(0, 5), "truncated safetensors file: 5 bytes");
  // Through the file API too: the message names the path.
  const dir = await tempDir();
  try {
    const path = `${dir}/cut.safetensors`;
    await Deno.writeFile(path, good.subarray(0, good.length - 4));
    await assert.rejects(
      SafetensorsFile.open(path),
      (e) =>
        e instanceof TnlError && e.kind === "input" && e.message.startsWith(path) &&
        e.message.includes("truncated"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("malformed: header length beyond the file", () => {
  const b = fileWith(ONE, 24);
  new DataView(b.buffer).setBigUint64(0, 5000n, true);
  rejects(b, `header length 5000 runs past the end of the file (${b.length} bytes; truncated?)`);
});

Deno.test("malformed: header over 100 MB (just the 8-byte length)", () => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
  rejects(b, "header length 100000001 is over the limit of 100000000 bytes");
  new DataView(b.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
  rejects(b, "header length 18446744073709551615 is over the limit");
});

Deno.test("malformed: header not JSON", () => {
  rejects(
    fileWith(`{"a":{"dtype":"F32"`, 0),
    /safetensors header: not valid JSON: unexpected end at character 19$/,
  );
  rejects(fileWith(`{"a": nope}`, 0), "not valid JSON");
  const b = fileWith(`{"\xff":1}`, 0);
  b[10] = 0xff; // invalid UTF-8
  rejects(b, "header is not valid UTF-8");
});

Deno.test("malformed: header not an object", () => {
  rejects(fileWith(`[1, 2]`, 0), "header is an array, not a JSON object");
  rejects(fileWith(`"str"`, 0), "header is a string, not a JSON object");
  rejects(fileWith(`{"a": [1]}`, 0), "tensor 'a' must be an object, found an array");
});

Deno.test("malformed: duplicate tensor names", () => {
  rejects(
    fileWith(
      `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
      8,
    ),
    'duplicate key "a"',
  );
});

Deno.test("malformed: unknown dtype, and unknown or missing fields of a tensor", () => {
  rejects(
    fileWith(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}`, 1),
    "unsupported dtype Q7 of tensor 'a'",
  );
  rejects(
    fileWith(`{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, 1),
    "unsupported dtype F4 of tensor 'a'",
  );
  rejects(fileWith(`{"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}`, 1), "dtype must be a string");
  rejects(
    fileWith(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}}`, 1),
    `tensor 'a' has an unknown field "extra"`,
  );
  rejects(fileWith(`{"a":{"dtype":"U8","data_offsets":[0,1]}}`, 1), `tensor 'a' has no "shape"`);
  rejects(fileWith(`{"a":{"dtype":"U8","shape":[1]}}`, 1), `tensor 'a' has no "data_offsets"`);
});

Deno.test("malformed: shape × dtype size ≠ byte range", () => {
  rejects(
    fileWith(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20),
    "tensor 'a': shape [2,3] of F32 is 24 bytes, but data_offsets [0, 20] hold 20",
  );
  rejects(
    fileWith(`{"a":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}}`, 24),
    "shape must hold integers in [0, 2^53)",
  );
  rejects(fileWith(`{"a":{"dtype":"F32","shape":[6.0],"data_offsets":[0,24]}}`, 24), "found the number 6.0");
  rejects(fileWith(`{"a":{"dtype":"F32","shape":"6","data_offsets":[0,24]}}`, 24), "shape must be an array");
  rejects(
    fileWith(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,24]}}`, 24),
    "shape [4294967296,4294967296] is too large",
  );
  rejects(
    fileWith(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 1),
    "data_offsets must be [begin, end]",
  );
  rejects(fileWith(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}`, 1), "end before they begin");
});

Deno.test("malformed: overlapping offsets", () => {
  rejects(
    fileWith(
      `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`,
      12,
    ),
    "tensor 'b' at data_offsets [4, 12] overlaps 'a', which ends at 8",
  );
});

Deno.test("malformed: gapped offsets, and data not covered at the end", () => {
  rejects(
    fileWith(
      `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`,
      12,
    ),
    "gap in the data: bytes [4, 8) belong to no tensor (before 'b')",
  );
  rejects(
    fileWith(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
    "gap in the data: bytes [0, 4) belong to no tensor (before 'a')",
  );
  rejects(fileWith(ONE, 30), "the tensors cover 24 bytes, but 30 bytes of data follow the header");
});

Deno.test("malformed: offsets beyond 2^53", () => {
  rejects(
    fileWith(`{"a":{"dtype":"U8","shape":[9007199254740993],"data_offsets":[0,9007199254740993]}}`, 0),
    "shape must hold integers in [0, 2^53), found the number 9007199254740993",
  );
  rejects(
    fileWith(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[9007199254740992,9007199254740992]}}`, 0),
    "data_offsets must hold integers in [0, 2^53)",
  );
});

Deno.test("malformed: __metadata__ with a non-string value", () => {
  rejects(
    fileWith(`{"__metadata__":{"ok":"x","n":1},${ONE.slice(1)}`, 24),
    `__metadata__["n"] must be a string, found the number 1`,
  );
  rejects(
    fileWith(`{"__metadata__":["x"],${ONE.slice(1)}`, 24),
    "__metadata__ must be an object, found an array",
  );
});

// ---------------------------------------------------------------------------------------------------------
// Sharded checkpoints

async function writeShards(dir: string): Promise<TensorToWrite[]> {
  const t = sampleTensors();
  await writeSafetensors(`${dir}/model-00001-of-00002.safetensors`, t.slice(0, 3));
  await writeSafetensors(`${dir}/model-00002-of-00002.safetensors`, t.slice(3));
  const weightMap: Record<string, string> = {};
  t.forEach((x, i) => weightMap[x.name] = `model-0000${i < 3 ? 1 : 2}-of-00002.safetensors`);
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }),
  );
  return t;
}

Deno.test("sharded: the index presents all shards as one map", async () => {
  const dir = await tempDir();
  try {
    const tensors = await writeShards(dir);
    const r = await openSafetensorsIndex(`${dir}/model.safetensors.index.json`);
    try {
      assert.deepEqual(r.names(), tensors.map((t) => t.name));
      assert.deepEqual(r.info("ids.i64"), { dtype: "I64", shape: [6] });
      assert.deepEqual(await r.readInt("ids.i32"), tensors[3].data);
      const f32 = await r.readF32("w.f32");
      assert.deepEqual(
        new Uint32Array(f32.buffer),
        new Uint32Array((tensors[0].data as Float32Array).buffer),
      );
      assert.throws(
        () => r.info("nope"),
        (e) => e instanceof TnlError && e.message.includes("model.safetensors.index.json"),
      );
    } finally {
      r.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sharded: a tensor in the wrong shard, a missing shard, a stray or absent tensor are errors", async () => {
  const dir = await tempDir();
  const index = `${dir}/model.safetensors.index.json`;
  const setIndex = (map: Record<string, string>) =>
    Deno.writeTextFile(index, JSON.stringify({ weight_map: map }));
  const fail = async (kind: string, fault: string) =>
    await assert.rejects(
      openSafetensorsIndex(index),
      (e) => e instanceof TnlError && e.kind === kind && e.message.includes(fault),
      fault,
    );
  try {
    const t = await writeShards(dir);
    const s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
    const good: Record<string, string> = Object.fromEntries(t.map((x, i) => [x.name, i < 3 ? s1 : s2]));
    await setIndex({ ...good, "w.f32": s2 });
    await fail("input", `tensor 'w.f32' is in shard ${s1} but the index ${index} puts it in ${s2}`);
    await setIndex({ ...good, "extra.weight": s2 });
    await fail(
      "input",
      `${index}: tensor 'extra.weight' should be in shard ${s2}, but ${dir}/${s2} has no such tensor`,
    );
    const partial = { ...good };
    delete partial["scalar"];
    await setIndex(partial);
    await fail("input", `tensor 'scalar' is not in the index ${index}`);
    await setIndex({ ...good, "w.f32": "model-00003-of-00003.safetensors" });
    await fail("io", `${dir}/model-00003-of-00003.safetensors`);
    await setIndex({ ...good, "w.f32": "../elsewhere.safetensors" });
    await fail("input", `is not a plain file name`);
    await Deno.writeTextFile(index, `{"weight_map": {"a": "x", "a": "y"}}`);
    await fail("input", `duplicate key "a"`);
    await Deno.writeTextFile(index, `{"metadata": {}}`);
    await fail("input", `no "weight_map"`);
    await Deno.remove(index);
    await fail("io", index);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Fuzzing

Deno.test("fuzz: 10,000 seeded mutations of model.safetensors each load or throw an input error", async () => {
  const base = await Deno.readFile(`${TINY}/model.safetensors`);
  const headerEnd = 8 + Number(new DataView(base.buffer).getBigUint64(0, true));
  const hot: [number, number][] = [[0, 8], [8, headerEnd], [headerEnd - 64, headerEnd + 64]];
  const rng = new Rng(20240601);
  let loaded = 0, rejected = 0, slowest = 0;
  const start = performance.now();
  for (let it = 0; it < 10_000; it++) {
    const bytes = mutate(base, rng, hot);
    const t0 = performance.now();
    try {
      const f = SafetensorsFile.fromBytes(bytes, "fuzz.safetensors");
      for (const name of f.names()) {
        const { dtype } = f.info(name);
        if (FLOAT_DTYPES.includes(dtype)) await f.readF32(name);
        else if (INT_DTYPES.includes(dtype)) await f.readInt(name);
        else await f.readRaw(name);
      }
      loaded++;
    } catch (e) {
      if (!(e instanceof TnlError && e.kind === "input")) {
        assert.fail(`iteration ${it}: ${e instanceof Error ? `${e.name}: ${e.message}` : e}`);
      }
      rejected++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  const seconds = (performance.now() - start) / 1000;
  console.log(
    `safetensors fuzz: ${loaded} loaded, ${rejected} rejected, ${seconds.toFixed(2)} s, slowest ${
      slowest.toFixed(1)
    } ms`,
  );
  assert.ok(rejected > 5000 && loaded > 100, "mutations reach both outcomes");
  // About 1.5 s on a 2-core machine; the bound leaves room for slower ones and catches a hang.
  assert.ok(seconds < 30, `${seconds} s`);
});

Deno.test("fuzz: seeded random headers built from valid pieces each parse or throw an input error", () => {
  // Structured fuzzing of the header checks (offsets, shapes, dtypes) that byte mutations rarely hit.
  const rng = new Rng(99);
  const sizes: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, U8: 1, BOOL: 1, F64: 8, X: 1 };
  const dtypes = Object.keys(sizes);
  let ok = 0;
  for (let it = 0; it < 10_000; it++) {
    const n = rng.int(4);
    const parts: string[] = [];
    let offset = 0;
    for (let k = 0; k < n; k++) {
      const shape = Array.from({ length: rng.int(3) }, () => rng.int(4));
      const dtype = dtypes[rng.int(dtypes.length)];
      const size = shape.reduce((a, b) => a * b, 1) * sizes[dtype];
      const begin = rng.next() < 0.9 ? offset : offset + rng.int(5) - 2;
      const end = rng.next() < 0.9 ? begin + size : begin + rng.int(9);
      offset = end;
      parts.push(`"t${rng.int(3)}":{"dtype":"${dtype}","shape":[${shape}],"data_offsets":[${begin},${end}]}`);
    }
    const bytes = fileWith(
      `{${parts.join(",")}}`,
      Math.max(0, offset + (rng.next() < 0.9 ? 0 : rng.int(3) - 1)),
    );
    try {
      parseSafetensors(bytes, "gen.safetensors");
      ok++;
    } catch (e) {
      if (!(e instanceof TnlError && e.kind === "input")) assert.fail(`iteration ${it}: ${e}`);
    }
  }
  assert.ok(ok > 100);
});
