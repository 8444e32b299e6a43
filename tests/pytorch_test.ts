import assert from "node:assert/strict";
import { FLOAT_DTYPES } from "../core/dtype.ts";
import { TnlError } from "../core/errors.ts";
import { bf16BitsToF32, f32ToBf16Bits } from "../core/half.ts";
import {
  openPytorchIndex,
  parseStateDict,
  PytorchCheckpoint,
  readPytorchCheckpoint,
  readPytorchIndex,
} from "../core/pytorch.ts";
import { Rng } from "../core/random.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { mutate } from "./_fuzz.ts";
import { REPO_ROOT } from "./_gpu.ts";
import { global, int, MARK, pkl, PROTO2, stateDict, STOP, str, tensor, tuple } from "./_pickle.ts";
import { makeZip, unzip, type ZipInput } from "./_zip.ts";
import { ZipArchive } from "../core/zip.ts";
import { MemorySource } from "../core/files.ts";

const TORCH = `${REPO_ROOT}/testdata/tnl-tiny-torch/pytorch_model.bin`;
const SAFE = `${REPO_ROOT}/testdata/tnl-tiny/model.safetensors`;

Deno.test("tnl-tiny-torch: loads without running anything; names equal the safetensors ones; bf16 values are the f32 ones rounded", async () => {
  const torch = await PytorchCheckpoint.open(TORCH);
  const safe = await SafetensorsFile.open(SAFE);
  try {
    assert.deepEqual(torch.names().toSorted(), safe.names().toSorted());
    assert.equal(torch.names().length, 13);
    for (const name of safe.names()) {
      const info = torch.info(name);
      assert.deepEqual(info, { dtype: "BF16", shape: safe.info(name).shape }, name);
      assert.ok(torch.tensors.get(name)!.contiguous);
      const f32 = await safe.readF32(name);
      const bits = new Uint16Array((await torch.readRaw(name)).buffer);
      const wide = await torch.readF32(name);
      assert.equal(bits.length, f32.length);
      for (let i = 0; i < f32.length; i++) {
        if (bits[i] !== f32ToBf16Bits(f32[i])) {
          assert.fail(`${name}[${i}]: 0x${bits[i].toString(16)} vs ${f32[i]}`);
        }
        if (wide[i] !== bf16BitsToF32(bits[i])) assert.fail(`${name}[${i}] widened`);
      }
    }
    assert.throws(
      () => torch.info("nope"),
      (e) => e instanceof TnlError && e.message.includes(`no tensor 'nope' in ${TORCH}`),
    );
  } finally {
    torch.close();
    safe.close();
  }
});

Deno.test("readPytorchCheckpoint gives every tensor as f32 with its stored dtype and shape", async () => {
  const all = await readPytorchCheckpoint(TORCH);
  assert.equal(all.size, 13);
  const emb = all.get("model.embed_tokens.weight")!;
  assert.equal(emb.dtype, "BF16");
  assert.deepEqual(emb.shape, [256, 64]);
  assert.ok(emb.data instanceof Float32Array && emb.data.length === 256 * 64);
});

/** The fixture's entries, for rebuilding variants of it. */
async function fixtureEntries(): Promise<ZipInput[]> {
  return await unzip(await Deno.readFile(TORCH));
}

async function loadAll(
  bytes: Uint8Array,
  name = "ckpt.bin",
): Promise<Map<string, Float32Array | Int32Array>> {
  const c = await PytorchCheckpoint.fromBytes(bytes, name);
  const out = new Map<string, Float32Array | Int32Array>();
  for (const n of c.names()) {
    out.set(n, FLOAT_DTYPES.includes(c.info(n).dtype) ? await c.readF32(n) : await c.readInt(n));
  }
  return out;
}

Deno.test("the same checkpoint deflated, or with ZIP64 fields everywhere, loads identically", async () => {
  const reference = await loadAll(await Deno.readFile(TORCH));
  const entries = await fixtureEntries();
  for (const opts of [{ deflate: true }, { zip64: true, align: 64, dataDescriptor: true }]) {
    assert.deepEqual(await loadAll(await makeZip(entries, opts)), reference, JSON.stringify(opts));
  }
});

/** A torch-style archive "arch/" with the given pickle and storages. */
function torchZip(
  pickle: Uint8Array,
  storages: [string, Uint8Array][],
  byteorder = "little",
): Promise<Uint8Array> {
  const enc = new TextEncoder();
  return makeZip(
    [
      { name: "arch/data.pkl", data: pickle },
      { name: "arch/byteorder", data: enc.encode(byteorder) },
      ...storages.map(([k, data]) => ({ name: `arch/data/${k}`, data })),
      { name: "arch/version", data: enc.encode("3\n") },
    ],
    { align: 64, dataDescriptor: true, zip64: true },
  );
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

Deno.test("views: transposed and offset tensors are gathered; shared storages; F32, F16, I64, I32 storages", async () => {
  const storage = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  const halfs = Uint16Array.from([0x3c00, 0xc000, 0x7c00, 0x0001]); // 1, -2, inf, 2^-24
  const longs = BigInt64Array.from([5n, -7n, 2n ** 31n - 1n]);
  const pickle = stateDict([
    ["full", tensor("FloatStorage", "0", 8, 0, [2, 4], [4, 1])],
    ["transposed", tensor("FloatStorage", "0", 8, 0, [4, 2], [1, 4])], // .t() of "full"
    ["slice", tensor("FloatStorage", "0", 8, 5, [3], [1])],
    ["column", tensor("FloatStorage", "0", 8, 1, [2, 1], [4, 1])],
    ["half", tensor("HalfStorage", "1", 4, 0, [4], [1])],
    ["ids", tensor("LongStorage", "2", 3, 0, [3], [1])],
    ["scalar", tensor("IntStorage", "3", 1, 0, [], [])],
    ["empty", tensor("FloatStorage", "0", 8, 8, [0, 3], [3, 1])],
  ]);
  const zip = await torchZip(pickle, [
    ["0", bytesOf(storage)],
    ["1", bytesOf(halfs)],
    ["2", bytesOf(longs)],
    ["3", bytesOf(Int32Array.from([-9]))],
  ]);
  const c = await PytorchCheckpoint.fromBytes(zip, "views.bin");
  assert.deepEqual([...await c.readF32("full")], [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(c.tensors.get("transposed")!.contiguous, false);
  assert.deepEqual([...await c.readF32("transposed")], [0, 4, 1, 5, 2, 6, 3, 7]);
  assert.deepEqual([...await c.readF32("slice")], [5, 6, 7]);
  assert.deepEqual([...await c.readF32("column")], [1, 5]);
  assert.deepEqual([...await c.readF32("half")], [1, -2, Infinity, 2 ** -24]);
  assert.deepEqual([...await c.readInt("ids")], [5, -7, 2 ** 31 - 1]);
  assert.deepEqual(c.info("scalar"), { dtype: "I32", shape: [] });
  assert.deepEqual([...await c.readInt("scalar")], [-9]);
  assert.equal((await c.readF32("empty")).length, 0);
  await assert.rejects(
    c.readF32("ids"),
    (e) => e instanceof TnlError && e.message.includes("tensor 'ids' in views.bin has dtype I64"),
  );

  // Big-endian archives are byte-swapped on reading.
  const swapped = bytesOf(storage).slice();
  for (let i = 0; i < swapped.length; i += 4) swapped.subarray(i, i + 4).reverse();
  const be = await PytorchCheckpoint.fromBytes(
    await torchZip(
      stateDict([["t", tensor("FloatStorage", "0", 8, 0, [4, 2], [1, 4])]]),
      [["0", swapped]],
      "big",
    ),
    "be.bin",
  );
  assert.deepEqual([...await be.readF32("t")], [0, 4, 1, 5, 2, 6, 3, 7]);
});

Deno.test("an I64 value outside i32 is an error naming the tensor and file", async () => {
  const zip = await torchZip(stateDict([["pos", tensor("LongStorage", "0", 2, 0, [2], [1])]]), [
    ["0", bytesOf(BigInt64Array.from([1n, 2n ** 33n]))],
  ]);
  const c = await PytorchCheckpoint.fromBytes(zip, "long.bin");
  await assert.rejects(
    c.readInt("pos"),
    (e) =>
      e instanceof TnlError && e.kind === "input" &&
      e.message ===
        "tensor 'pos' in long.bin has value 8589934592 at index 1, outside the 32-bit integer range",
  );
});

async function rejectsCkpt(bytes: Uint8Array | Promise<Uint8Array>, fault: string): Promise<void> {
  await assert.rejects(
    async () => {
      const c = await PytorchCheckpoint.fromBytes(await bytes, "bad.bin");
      for (const n of c.names()) await c.readRaw(n);
    },
    (e) => {
      assert.ok(e instanceof TnlError, String(e));
      assert.equal(e.kind, "input");
      assert.ok(e.message.startsWith("bad.bin"), e.message);
      assert.ok(e.message.includes(fault), `"${e.message}" should say "${fault}"`);
      return true;
    },
  );
}

Deno.test("a pickle asking for os.system, posix.system or builtins.eval is refused, naming the global", async () => {
  for (
    const [module, name] of [["os", "system"], ["posix", "system"], ["builtins", "eval"], ["torch", "load"]]
  ) {
    const evil = pkl(PROTO2, global(module, name), MARK, str("echo pwned"), "t", "R", STOP);
    await rejectsCkpt(torchZip(evil, []), `arch/data.pkl: pickle: refuses global '${module}.${name}'`);
    // Hidden inside an otherwise valid state dict too.
    const inner = stateDict([["w", [global(module, name), MARK, str("id"), "t", "R"]]]);
    await rejectsCkpt(torchZip(inner, []), `refuses global '${module}.${name}'`);
  }
});

Deno.test("the fixture with a hostile data.pkl swapped in is refused", async () => {
  const entries = await fixtureEntries();
  const evil = pkl(PROTO2, global("os", "system"), tuple([str("touch /tmp/tnl-pwned")]), "R", STOP);
  const swapped = entries.map((e) => e.name.endsWith("/data.pkl") ? { ...e, data: evil } : e);
  await rejectsCkpt(makeZip(swapped), "pytorch_model/data.pkl: pickle: refuses global 'os.system'");
});

Deno.test("a truncated zip is an input error naming the file", async () => {
  const full = await Deno.readFile(TORCH);
  for (const keep of [full.length - 1, full.length - 30, Math.floor(full.length / 2), 100, 21, 0]) {
    await rejectsCkpt(
      full.subarray(0, keep),
      keep < 22 ? "not a zip archive" : "no zip end-of-central-directory record",
    );
  }
  // Through the file API: the message names the path.
  const dir = await Deno.makeTempDir({ prefix: "tnl-pt-" });
  try {
    const path = `${dir}/pytorch_model.bin`;
    await Deno.writeFile(path, full.subarray(0, 200_000));
    await assert.rejects(
      PytorchCheckpoint.open(path),
      (e) =>
        e instanceof TnlError && e.kind === "input" &&
        e.message.startsWith(`${path}: no zip end-of-central-directory`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a missing storage entry names the entry and the tensor", async () => {
  const entries = (await fixtureEntries()).filter((e) => e.name !== "pytorch_model/data/5");
  await rejectsCkpt(
    makeZip(entries),
    "storage entry 'pytorch_model/data/5' of tensor 'model.layers.0.token_mixer.lrpe.theta' is missing",
  );
});

Deno.test("checkpoint faults: storage size, tensor beyond its storage, bad persistent id, not a state dict, legacy format", async () => {
  const f8 = bytesOf(new Float32Array(8));
  await rejectsCkpt(
    torchZip(stateDict([["w", tensor("FloatStorage", "0", 9, 0, [9], [1])]]), [["0", f8]]),
    "storage entry 'arch/data/0' holds 32 bytes, but 9 × F32 is 36 (tensor 'w')",
  );
  await rejectsCkpt(
    torchZip(stateDict([["w", tensor("FloatStorage", "0", 8, 4, [2, 3], [3, 1])]]), [["0", f8]]),
    "reaches beyond storage '0' of 8 elements",
  );
  await rejectsCkpt(
    torchZip(stateDict([["w", tensor("FloatStorage", "0", 8, 0, [2, 3], [3])]]), [["0", f8]]),
    "tensor size [2,3] and stride [3] differ in length",
  );
  await rejectsCkpt(
    torchZip(stateDict([["w", tensor("ComplexFloatStorage", "0", 8, 0, [8], [1])]]), [["0", f8]]),
    "refuses global 'torch.ComplexFloatStorage'",
  );
  await rejectsCkpt(
    torchZip(
      stateDict([["a", tensor("FloatStorage", "0", 8, 0, [8], [1])], [
        "b",
        tensor("HalfStorage", "0", 16, 0, [8], [1]),
      ]]),
      [["0", f8]],
    ),
    "storage '0' appears as 8 × F32 and as 16 × F16",
  );
  await rejectsCkpt(
    torchZip(pkl(PROTO2, "}", MARK, str("w"), tuple([str("storage"), int(1)]), "Q", "u", STOP), []),
    "persistent id is not ('storage', type, key, location, numel)",
  );
  await rejectsCkpt(torchZip(pkl(PROTO2, "]", STOP), []), "the pickled object is not a state dict");
  await rejectsCkpt(torchZip(stateDict([["n", int(3)]]), []), "state dict entry 'n' is not a tensor");
  await rejectsCkpt(
    makeZip([{ name: "x/other.pkl", data: new Uint8Array(1) }]),
    "no <archive>/data.pkl entry",
  );
  await rejectsCkpt(torchZip(stateDict([]), [], "middle"), `byteorder entry says "middle"`);
  await rejectsCkpt(Promise.resolve(pkl(PROTO2, "}", STOP)), "legacy torch.save file (before PyTorch 1.6)");
});

Deno.test("sharded: pytorch_model.bin.index.json presents both shards as one checkpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tnl-pt-" });
  try {
    const a = Float32Array.from([1, 2, 3]), b = Float32Array.from([4, 5]);
    await Deno.writeFile(
      `${dir}/pytorch_model-00001-of-00002.bin`,
      await torchZip(stateDict([["a", tensor("FloatStorage", "0", 3, 0, [3], [1])]]), [["0", bytesOf(a)]]),
    );
    await Deno.writeFile(
      `${dir}/pytorch_model-00002-of-00002.bin`,
      await torchZip(stateDict([["b", tensor("FloatStorage", "0", 2, 0, [2], [1])]]), [["0", bytesOf(b)]]),
    );
    const index = `${dir}/pytorch_model.bin.index.json`;
    await Deno.writeTextFile(
      index,
      JSON.stringify({
        weight_map: { a: "pytorch_model-00001-of-00002.bin", b: "pytorch_model-00002-of-00002.bin" },
      }),
    );
    const all = await readPytorchIndex(index);
    assert.deepEqual([...all.keys()], ["a", "b"]);
    assert.deepEqual([...all.get("b")!.data], [4, 5]);
    const r = await openPytorchIndex(index);
    assert.deepEqual(r.info("a"), { dtype: "F32", shape: [3] });
    r.close();
    await Deno.writeTextFile(
      index,
      JSON.stringify({
        weight_map: { a: "pytorch_model-00002-of-00002.bin", b: "pytorch_model-00002-of-00002.bin" },
      }),
    );
    await assert.rejects(
      openPytorchIndex(index),
      (e) =>
        e instanceof TnlError && e.kind === "input" &&
        e.message.includes("tensor 'a' should be in shard pytorch_model-00002-of-00002.bin"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: 10,000 seeded mutations of pytorch_model.bin each load or throw an input error", async () => {
  const base = await Deno.readFile(TORCH);
  const z = await unzipLayout(base);
  const rng = new Rng(1234567);
  let loaded = 0, rejected = 0, slowest = 0;
  const start = performance.now();
  for (let it = 0; it < 10_000; it++) {
    const bytes = mutate(base, rng, z.hot);
    const t0 = performance.now();
    try {
      const c = await PytorchCheckpoint.fromBytes(bytes, "fuzz.bin");
      for (const n of c.names()) await c.readRaw(n);
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
    `pytorch fuzz: ${loaded} loaded, ${rejected} rejected, ${seconds.toFixed(2)} s, slowest ${
      slowest.toFixed(1)
    } ms`,
  );
  assert.ok(rejected > 5000 && loaded > 100, "mutations reach both outcomes");
  // A few seconds on a 2-core machine; the bound leaves room for slower ones and catches a hang.
  assert.ok(seconds < 60, `${seconds} s`);
});

Deno.test("fuzz: 10,000 seeded mutations of the fixture's data.pkl each parse or throw an input error", async () => {
  // The archive's CRC rejects most pickle mutations before unpickling; this reaches the unpickler itself.
  const pickle = (await fixtureEntries()).find((e) => e.name.endsWith("/data.pkl"))!.data;
  assert.equal(parseStateDict(pickle, "data.pkl").size, 13);
  const rng = new Rng(42);
  let parsed = 0, rejected = 0, refused = 0;
  const start = performance.now();
  for (let it = 0; it < 10_000; it++) {
    const bytes = mutate(pickle, rng, [[0, pickle.length]]);
    try {
      parseStateDict(bytes, "data.pkl");
      parsed++;
    } catch (e) {
      if (!(e instanceof TnlError && e.kind === "input")) {
        assert.fail(`iteration ${it}: ${e instanceof Error ? `${e.name}: ${e.message}` : e}`);
      }
      if (e.message.includes("refuses global")) refused++;
      rejected++;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  console.log(
    `data.pkl fuzz: ${parsed} parsed, ${rejected} rejected (${refused} refused globals), ${
      seconds.toFixed(2)
    } s`,
  );
  assert.ok(
    parsed > 100 && rejected > 5000 && refused > 10,
    "mutations reach the opcodes, the policy and success",
  );
  assert.ok(seconds < 30, `${seconds} s`);
});

/** Hot ranges of the fixture for mutation: the pickle (twice the weight), the local headers, and the
 * central directory with the end records (twice the weight). */
async function unzipLayout(bytes: Uint8Array): Promise<{ hot: [number, number][] }> {
  const zip = await ZipArchive.open(new MemorySource("fixture", bytes));
  const hot: [number, number][] = [];
  let cdAt = 0;
  for (const e of zip.entries.values()) {
    hot.push([e.headerOffset, e.dataOffset]);
    if (e.name.endsWith("/data.pkl")) {
      hot.push([e.dataOffset, e.dataOffset + e.size], [e.dataOffset, e.dataOffset + e.size]);
    }
    cdAt = Math.max(cdAt, e.dataOffset + e.compressedSize);
  }
  hot.push([cdAt, bytes.length], [cdAt, bytes.length]);
  return { hot };
}
