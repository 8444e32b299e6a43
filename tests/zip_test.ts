import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { type ByteSource, MemorySource } from "../core/files.ts";
import { crc32, ZipArchive } from "../core/zip.ts";
import { makeZip, unzip } from "./_zip.ts";

// Archives written by CPython 3.11's zipfile module.
// a.txt = b'hello ' * 50 (deflated), dir/b.bin = bytes(range(256)) (stored), empty = b'' (stored),
// archive comment b'a comment'
const PY_PLAIN =
  "504b030414000000080000002100c14842590c0000002c01000005000000612e747874cb48cdc9c957c81825892001504b030414000000000000002100738c05290001000000010000090000006469722f622e62696e000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff504b03041400000000000000210000000000000000000000000005000000656d707479504b0102140314000000080000002100c14842590c0000002c010000050000000000000000000000800100000000612e747874504b0102140314000000000000002100738c0529000100000001000009000000000000000000000080012f0000006469722f622e62696e504b0102140314000000000000002100000000000000000000000000050000000000000000000000800156010000656d707479504b050600000000030003009d0000007901000009006120636f6d6d656e74";
// big.bin = b'xyz' * 10 written with force_zip64=True (ZIP64 sizes in the local header)
const PY_ZIP64 =
  "504b03042d000000000000002100562d0f89ffffffffffffffff070014006269672e62696e010010001e000000000000001e0000000000000078797a78797a78797a78797a78797a78797a78797a78797a78797a78797a504b01022d032d000000000000002100562d0f891e0000001e0000000700000000000000000000008001000000006269672e62696e504b0506000000000100010035000000570000000000";

function hex(s: string): Uint8Array {
  return new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

const open = (bytes: Uint8Array, name = "t.zip") => ZipArchive.open(new MemorySource(name, bytes));

Deno.test("CRC-32 known answers", () => {
  const enc = new TextEncoder();
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(enc.encode("The quick brown fox jumps over the lazy dog")), 0x414fa339);
  // Incremental equals whole.
  const b = enc.encode("hello, incremental world");
  assert.equal(crc32(b.subarray(11), crc32(b.subarray(0, 11))), crc32(b));
});

Deno.test("reads CPython's zips: deflate, stored, empty entries, an archive comment, ZIP64 local headers", async () => {
  const z = await open(hex(PY_PLAIN));
  assert.deepEqual([...z.entries.keys()], ["a.txt", "dir/b.bin", "empty"]);
  assert.equal(new TextDecoder().decode(await z.read(z.entries.get("a.txt")!)), "hello ".repeat(50));
  assert.deepEqual(await z.read(z.entries.get("dir/b.bin")!), new Uint8Array(256).map((_, i) => i));
  assert.deepEqual(await z.readRange(z.entries.get("dir/b.bin")!, 10, 3), Uint8Array.from([10, 11, 12]));
  assert.deepEqual(await z.readRange(z.entries.get("a.txt")!, 6, 5), new TextEncoder().encode("hello"));
  assert.equal((await z.read(z.entries.get("empty")!)).length, 0);
  const z64 = await open(hex(PY_ZIP64));
  assert.equal(new TextDecoder().decode(await z64.read(z64.entries.get("big.bin")!)), "xyz".repeat(10));
});

Deno.test("reads torch-style archives (aligned, data descriptors, ZIP64 end records) and ZIP64 extra fields", async () => {
  const entries = [
    { name: "arch/data.pkl", data: new TextEncoder().encode("pickle") },
    { name: "arch/data/0", data: new Uint8Array(1000).map((_, i) => i * 7) },
  ];
  for (
    const opts of [
      { align: 64, dataDescriptor: true, zip64: true },
      { zip64: true },
      { deflate: true, dataDescriptor: true },
      { comment: "x".repeat(70000 % 65535) },
    ]
  ) {
    const bytes = await makeZip(entries, opts);
    const z = await open(bytes);
    if (opts.align) { for (const e of z.entries.values()) assert.equal(e.dataOffset % 64, 0); }
    assert.deepEqual(await unzip(bytes), entries, JSON.stringify(opts));
  }
});

/** A large virtual file: the given regions, zeros elsewhere. */
class SparseSource implements ByteSource {
  constructor(readonly name: string, readonly size: number, readonly regions: [number, Uint8Array][]) {}
  readAt(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    for (const [at, bytes] of this.regions) {
      const lo = Math.max(at, offset), hi = Math.min(at + bytes.length, offset + length);
      if (lo < hi) out.set(bytes.subarray(lo - at, hi - at), lo - offset);
    }
    return Promise.resolve(out);
  }
  close(): void {}
}

Deno.test("ZIP64: an archive over 4 GB (sizes and offsets past 32 bits), read sparsely", async () => {
  const big = 4_500_000_000; // the stored entry "x": zeros
  const le = (n: number, v: number | bigint) => {
    const b = new Uint8Array(n), d = new DataView(b.buffer);
    if (n === 2) d.setUint16(0, Number(v), true);
    else if (n === 4) d.setUint32(0, Number(v), true);
    else d.setBigUint64(0, BigInt(v), true);
    return b;
  };
  const cat = (...parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const name = (s: string) => new TextEncoder().encode(s);
  const hello = name("hello");
  const localX = cat(
    le(4, 0x04034b50),
    le(2, 45),
    le(2, 0),
    le(2, 0),
    le(4, 0),
    le(4, 0),
    le(4, 0xffffffff),
    le(4, 0xffffffff),
    le(2, 1),
    le(2, 20),
    name("x"),
    le(2, 1),
    le(2, 16),
    le(8, big),
    le(8, big),
  );
  const yAt = localX.length + big;
  const localY = cat(
    le(4, 0x04034b50),
    le(2, 45),
    le(2, 0),
    le(2, 0),
    le(4, 0),
    le(4, crc32(hello)),
    le(4, 5),
    le(4, 5),
    le(2, 1),
    le(2, 0),
    name("y"),
    hello,
  );
  const cdAt = yAt + localY.length;
  const central = cat(
    le(4, 0x02014b50),
    le(2, 45),
    le(2, 45),
    le(2, 0),
    le(2, 0),
    le(4, 0),
    le(4, 0),
    le(4, 0xffffffff),
    le(4, 0xffffffff),
    le(2, 1),
    le(2, 20),
    le(2, 0),
    le(2, 0),
    le(2, 0),
    le(4, 0),
    le(4, 0),
    name("x"),
    le(2, 1),
    le(2, 16),
    le(8, big),
    le(8, big),
    le(4, 0x02014b50),
    le(2, 45),
    le(2, 45),
    le(2, 0),
    le(2, 0),
    le(4, 0),
    le(4, crc32(hello)),
    le(4, 5),
    le(4, 5),
    le(2, 1),
    le(2, 12),
    le(2, 0),
    le(2, 0),
    le(2, 0),
    le(4, 0),
    le(4, 0xffffffff),
    name("y"),
    le(2, 1),
    le(2, 8),
    le(8, yAt),
  );
  const endAt = cdAt + central.length;
  const end = cat(
    le(4, 0x06064b50),
    le(8, 44),
    le(2, 45),
    le(2, 45),
    le(4, 0),
    le(4, 0),
    le(8, 2),
    le(8, 2),
    le(8, central.length),
    le(8, cdAt),
    le(4, 0x07064b50),
    le(4, 0),
    le(8, endAt),
    le(4, 1),
    le(4, 0x06054b50),
    le(2, 0),
    le(2, 0),
    le(2, 0xffff),
    le(2, 0xffff),
    le(4, 0xffffffff),
    le(4, 0xffffffff),
    le(2, 0),
  );
  const src = new SparseSource("big.zip", endAt + end.length, [[0, localX], [yAt, localY], [cdAt, central], [
    endAt,
    end,
  ]]);
  const z = await ZipArchive.open(src);
  const x = z.entries.get("x")!, y = z.entries.get("y")!;
  assert.equal(x.size, big);
  assert.equal(y.headerOffset, yAt);
  assert.equal(new TextDecoder().decode(await z.read(y)), "hello");
  assert.deepEqual(await z.readRange(x, big - 4, 4), new Uint8Array(4));
});

async function rejects(bytes: Uint8Array | Promise<Uint8Array>, fault: string, read?: string): Promise<void> {
  await assert.rejects(
    async () => {
      const z = await open(await bytes, "bad.zip");
      if (read !== undefined) await z.read(z.entries.get(read)!);
    },
    (e) => {
      assert.ok(e instanceof TnlError, String(e));
      assert.equal(e.kind, "input");
      assert.ok(e.message.startsWith("bad.zip: "), e.message);
      assert.ok(e.message.includes(fault), `"${e.message}" should say "${fault}"`);
      return true;
    },
  );
}

const ENTRIES = [
  { name: "a", data: new TextEncoder().encode("first entry") },
  { name: "b", data: new TextEncoder().encode("second entry") },
];

Deno.test("zip faults: truncated, not a zip, multi-disk, directory out of place", async () => {
  const good = await makeZip(ENTRIES, { zip64: true });
  await rejects(good.subarray(0, good.length - 1), "no zip end-of-central-directory record");
  await rejects(good.subarray(0, 10), "not a zip archive: 10 bytes");
  await rejects(new Uint8Array(100), "no zip end-of-central-directory record");
  const plain = await makeZip(ENTRIES);
  // Cut in the middle, then the end record appended again: the directory no longer ends at it.
  const cut = new Uint8Array([...plain.subarray(0, 40), ...plain.subarray(plain.length - 22)]);
  await rejects(cut, "does not end where the end record begins");
  const disk = plain.slice();
  new DataView(disk.buffer).setUint16(disk.length - 22 + 4, 1, true);
  await rejects(disk, "multi-disk zip archives are not supported");
  const count = plain.slice();
  new DataView(count.buffer).setUint16(count.length - 22 + 10, 60, true);
  new DataView(count.buffer).setUint16(count.length - 22 + 8, 60, true);
  await rejects(count, "60 entries cannot fit");
});

Deno.test("zip faults: corrupt data (CRC), encryption, unknown method, duplicates, overlaps, header mismatch", async () => {
  const plain = await makeZip(ENTRIES);
  const cdAt = new DataView(plain.buffer).getUint32(plain.length - 22 + 16, true);
  const corrupt = plain.slice();
  corrupt[31 + 2] ^= 1; // a data byte of "a"
  await rejects(corrupt, "zip entry 'a' is corrupt (CRC-32", "a");
  const central = (edit: (v: DataView, at: number) => void) => {
    const b = plain.slice();
    edit(new DataView(b.buffer), cdAt);
    return b;
  };
  await rejects(central((v, at) => v.setUint16(at + 8, 1, true)), "zip entry 'a' is encrypted");
  await rejects(
    central((v, at) => v.setUint16(at + 10, 12, true)),
    "zip entry 'a' uses compression method 12",
  );
  await rejects(
    central((v, at) => v.setUint32(at + 20, 5, true)),
    "zip entry 'a' is stored but its sizes differ",
  );
  await rejects(central((v, at) => v.setUint8(at + 46, "b".charCodeAt(0))), "zip entry 'b' appears twice");
  await rejects(
    central((v, at) => {
      v.setUint32(at + 24, 50, true);
      v.setUint32(at + 20, 50, true);
    }),
    "overlap",
  );
  await rejects(
    central((v, at) => v.setUint32(at + 42, 3, true)),
    "zip entry 'a': no local header at offset 3",
  );
  await rejects(central((v, at) => v.setUint32(at, 0x12345678, true)), "central directory entry 0 at offset");
  const local = plain.slice();
  local[30] = "z".charCodeAt(0);
  await rejects(local, "zip entry 'a': local header names a different file");
  const zip64 = await makeZip(ENTRIES, { zip64: true });
  const noExtra = zip64.slice();
  // Shorten the ZIP64 extra field of entry 0 (its length field) so the header offset is missing.
  const cd64 = Number(new DataView(zip64.buffer).getBigUint64(zip64.length - 22 - 20 - 56 + 48, true));
  new DataView(noExtra.buffer).setUint16(cd64 + 46 + 1 + 2, 16, true);
  await rejects(noExtra, "zip entry 'a': ZIP64 extra field lacks the header offset");
});

Deno.test("deflate faults: corrupt stream, declared size wrong", async () => {
  const deflated = await makeZip(ENTRIES, { deflate: true });
  const v = new DataView(deflated.buffer);
  const cdAt = v.getUint32(deflated.length - 22 + 16, true);
  const bad = deflated.slice();
  bad[31] = 0xff; // first byte of a's deflate stream: reserved block type
  await rejects(bad, "zip entry 'a': corrupt deflate data", "a");
  const size = deflated.slice();
  new DataView(size.buffer).setUint32(cdAt + 24, 5, true);
  await rejects(size, "zip entry 'a' inflates to more than its declared 5 bytes", "a");
  const huge = deflated.slice();
  new DataView(huge.buffer).setUint32(cdAt + 24, 0xfffffff0, true);
  await rejects(huge, "impossible", "a");
});
