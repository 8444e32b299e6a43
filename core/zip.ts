// A minimal, strict zip reader for torch.save checkpoints: end of central directory (with the ZIP64
// locator and record, which torch always writes), central directory (with ZIP64 extra fields for entries
// over 4 GB), local headers (torch aligns stored data to 64 bytes through an extra field and puts sizes in
// a data descriptor, so the central directory is the authority). Entries are STORED or DEFLATE
// (DecompressionStream "deflate-raw"); no encryption, no multi-disk archives. Data is read by range, so a
// multi-GB archive is never held whole. Every malformation is a TnlError("input") naming the file.

import { TnlError } from "./errors.ts";
import type { ByteSource } from "./files.ts";

export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE. */
  method: 0 | 8;
  crc32: number;
  compressedSize: number;
  /** Uncompressed size. */
  size: number;
  /** Offset of the local header. */
  headerOffset: number;
  /** Offset of the entry's (compressed) data. */
  dataOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_END64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const END_SIZE = 22;
const MAX_COMMENT = 0xffff;

export class ZipArchive {
  private constructor(readonly src: ByteSource, readonly entries: ReadonlyMap<string, ZipEntry>) {}

  get name(): string {
    return this.src.name;
  }

  static async open(src: ByteSource): Promise<ZipArchive> {
    const file = src.name;
    const bad = (why: string) => new TnlError("input", `${file}: ${why}`);
    if (src.size < END_SIZE) throw bad(`not a zip archive: ${src.size} bytes, too short for one`);

    // The end record is the last 22 bytes plus a comment of up to 64 KiB; take the last signature whose
    // comment length reaches exactly the end of the file.
    const tailLength = Math.min(src.size, END_SIZE + MAX_COMMENT);
    const tailStart = src.size - tailLength;
    const tail = await src.readAt(tailStart, tailLength);
    const tv = view(tail);
    let endAt = -1;
    for (let p = tailLength - END_SIZE; p >= 0; p--) {
      if (tail[p] !== 0x50) continue; // "P" of the signature: skips most positions cheaply
      if (tv.getUint32(p, true) === SIG_END && p + END_SIZE + tv.getUint16(p + 20, true) === tailLength) {
        endAt = p;
        break;
      }
    }
    if (endAt < 0) throw bad("no zip end-of-central-directory record (not a zip archive, or truncated)");
    const endOffset = tailStart + endAt;
    let disk = tv.getUint16(endAt + 4, true);
    let cdDisk = tv.getUint16(endAt + 6, true);
    let entriesOnDisk = tv.getUint16(endAt + 8, true);
    let entryCount = tv.getUint16(endAt + 10, true);
    let cdSize = tv.getUint32(endAt + 12, true);
    let cdOffset = tv.getUint32(endAt + 16, true);
    let cdEnd = endOffset;

    if (endOffset >= 20) {
      const loc = view(await src.readAt(endOffset - 20, 20));
      if (loc.getUint32(0, true) === SIG_LOCATOR64) {
        const recordDisk = loc.getUint32(4, true);
        const recordOffset = u64(loc, 8, file, "ZIP64 end record offset");
        const disks = loc.getUint32(16, true);
        if (recordDisk !== 0 || disks !== 1) throw bad("multi-disk zip archives are not supported");
        if (recordOffset + 56 > endOffset - 20) {
          throw bad(`ZIP64 end record offset ${recordOffset} is not before its locator`);
        }
        const rec = view(await src.readAt(recordOffset, 56));
        if (rec.getUint32(0, true) !== SIG_END64) throw bad(`no ZIP64 end record at offset ${recordOffset}`);
        const recordSize = u64(rec, 4, file, "ZIP64 end record size");
        if (recordSize < 44 || recordOffset + 12 + recordSize > endOffset - 20) {
          throw bad(`ZIP64 end record size ${recordSize} does not fit before its locator`);
        }
        disk = rec.getUint32(16, true);
        cdDisk = rec.getUint32(20, true);
        entriesOnDisk = u64(rec, 24, file, "ZIP64 entry count");
        entryCount = u64(rec, 32, file, "ZIP64 entry count");
        cdSize = u64(rec, 40, file, "ZIP64 central directory size");
        cdOffset = u64(rec, 48, file, "ZIP64 central directory offset");
        cdEnd = recordOffset;
      }
    }
    if (disk !== 0 || cdDisk !== 0 || entriesOnDisk !== entryCount) {
      throw bad("multi-disk zip archives are not supported");
    }
    if (cdOffset + cdSize !== cdEnd) {
      throw bad(
        `central directory [${cdOffset}, ${
          cdOffset + cdSize
        }) does not end where the end record begins (${cdEnd}); truncated or not a plain zip archive`,
      );
    }
    if (entryCount * 46 > cdSize) {
      throw bad(`${entryCount} entries cannot fit in a central directory of ${cdSize} bytes`);
    }

    const cd = await src.readAt(cdOffset, cdSize);
    const cv = view(cd);
    const utf8 = new TextDecoder("utf-8", { fatal: true });
    const entries = new Map<string, ZipEntry>();
    const nameBytes = new Map<string, Uint8Array>();
    let p = 0;
    for (let k = 0; k < entryCount; k++) {
      if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) {
        throw bad(`central directory entry ${k} at offset ${cdOffset + p} is malformed`);
      }
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      const crc32 = cv.getUint32(p + 16, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let size = cv.getUint32(p + 24, true);
      const nameLength = cv.getUint16(p + 28, true);
      const extraLength = cv.getUint16(p + 30, true);
      const commentLength = cv.getUint16(p + 32, true);
      let diskStart = cv.getUint16(p + 34, true);
      let headerOffset = cv.getUint32(p + 42, true);
      const next = p + 46 + nameLength + extraLength + commentLength;
      if (next > cdSize) throw bad(`central directory entry ${k} runs past the central directory`);
      const rawName = cd.subarray(p + 46, p + 46 + nameLength);
      let name: string;
      try {
        name = utf8.decode(rawName);
      } catch {
        throw bad(`central directory entry ${k}: file name is not valid UTF-8`);
      }
      const what = `zip entry '${name}'`;
      // ZIP64 extra field: the 64-bit values of the fields set to all ones, in this order.
      const extra = cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength);
      const ev = view(extra);
      let e = 0;
      while (e + 4 <= extra.length) {
        const id = ev.getUint16(e, true);
        const len = ev.getUint16(e + 2, true);
        if (e + 4 + len > extra.length) throw bad(`${what}: extra field runs past its end`);
        if (id === 0x0001) {
          let f = e + 4;
          const take = (field: string): number => {
            if (f + 8 > e + 4 + len) throw bad(`${what}: ZIP64 extra field lacks the ${field}`);
            const v = u64(ev, f, file, `${what} ${field}`);
            f += 8;
            return v;
          };
          if (size === 0xffffffff) size = take("size");
          if (compressedSize === 0xffffffff) compressedSize = take("compressed size");
          if (headerOffset === 0xffffffff) headerOffset = take("header offset");
          if (diskStart === 0xffff) {
            if (f + 4 > e + 4 + len) throw bad(`${what}: ZIP64 extra field lacks the disk number`);
            diskStart = ev.getUint32(f, true);
          }
        }
        e += 4 + len;
      }
      if (size === 0xffffffff || compressedSize === 0xffffffff || headerOffset === 0xffffffff) {
        throw bad(`${what}: 64-bit sizes without a ZIP64 extra field`);
      }
      if (diskStart !== 0) throw bad("multi-disk zip archives are not supported");
      if ((flags & 0x41) !== 0) throw bad(`${what} is encrypted`);
      if (method !== 0 && method !== 8) {
        throw bad(`${what} uses compression method ${method} (only stored and deflate are read)`);
      }
      if (method === 0 && compressedSize !== size) {
        throw bad(`${what} is stored but its sizes differ (${compressedSize} vs ${size})`);
      }
      if (entries.has(name)) throw bad(`zip entry '${name}' appears twice`);
      entries.set(name, { name, method, crc32, compressedSize, size, headerOffset, dataOffset: 0 });
      nameBytes.set(name, rawName);
      p = next;
    }
    if (p !== cdSize) throw bad(`central directory has ${cdSize - p} bytes after its ${entryCount} entries`);

    // Local headers: where each entry's data begins (their extra fields differ from the central ones).
    for (const entry of entries.values()) {
      const what = `zip entry '${entry.name}'`;
      const rawName = nameBytes.get(entry.name) as Uint8Array;
      if (entry.headerOffset + 30 + rawName.length > cdOffset) {
        throw bad(`${what}: local header offset ${entry.headerOffset} is not before the central directory`);
      }
      const local = await src.readAt(entry.headerOffset, 30 + rawName.length);
      const lv = view(local);
      if (lv.getUint32(0, true) !== SIG_LOCAL) {
        throw bad(`${what}: no local header at offset ${entry.headerOffset}`);
      }
      if (lv.getUint16(8, true) !== entry.method) throw bad(`${what}: local header disagrees on the method`);
      const nameLength = lv.getUint16(26, true);
      const extraLength = lv.getUint16(28, true);
      if (nameLength !== rawName.length || !equalBytes(local.subarray(30), rawName)) {
        throw bad(`${what}: local header names a different file`);
      }
      entry.dataOffset = entry.headerOffset + 30 + nameLength + extraLength;
      if (entry.dataOffset + entry.compressedSize > cdOffset) {
        throw bad(
          `${what}: data [${entry.dataOffset}, +${entry.compressedSize}) runs into the central directory`,
        );
      }
    }
    const byOffset = [...entries.values()].sort((a, b) => a.headerOffset - b.headerOffset);
    for (let k = 1; k < byOffset.length; k++) {
      const a = byOffset[k - 1], b = byOffset[k];
      if (a.dataOffset + a.compressedSize > b.headerOffset) {
        throw bad(`zip entries '${a.name}' and '${b.name}' overlap`);
      }
    }
    return new ZipArchive(src, entries);
  }

  /** The whole entry, decompressed; its CRC-32 is checked (except a stored CRC of 0, which writers that skip
   * the checksum leave). */
  async read(entry: ZipEntry): Promise<Uint8Array> {
    const raw = await this.src.readAt(entry.dataOffset, entry.compressedSize);
    const data = entry.method === 8
      ? await inflateRaw(raw, entry.size, `${this.name}: zip entry '${entry.name}'`)
      : raw;
    if (entry.crc32 !== 0) {
      const crc = crc32(data);
      if (crc !== entry.crc32) {
        throw new TnlError(
          "input",
          `${this.name}: zip entry '${entry.name}' is corrupt (CRC-32 ${hex(crc)}, expected ${
            hex(entry.crc32)
          })`,
        );
      }
    }
    return data;
  }

  /** Bytes [offset, offset + length) of the entry's uncompressed data. A stored entry is read by range (the
   * CRC is checked when the range is the whole entry); a deflated one is inflated whole. */
  async readRange(entry: ZipEntry, offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > entry.size) {
      throw new TnlError(
        "internal",
        `range ${offset}+${length} beyond zip entry '${entry.name}' of ${entry.size}`,
      );
    }
    if (offset === 0 && length === entry.size) return this.read(entry);
    if (entry.method === 0) return this.src.readAt(entry.dataOffset + offset, length);
    return (await this.read(entry)).slice(offset, offset + length);
  }

  close(): void {
    this.src.close();
  }
}

async function inflateRaw(raw: Uint8Array, size: number, what: string): Promise<Uint8Array> {
  // Deflate expands at most 1032:1; a larger declared size is corrupt (and must not be allocated).
  if (size > 1032 * raw.length + 64) {
    throw new TnlError(
      "input",
      `${what} declares ${size} bytes from ${raw.length} deflated bytes: impossible`,
    );
  }
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate-raw"),
  );
  const reader = stream.getReader();
  const out = new Uint8Array(size);
  let got = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > size) {
        await reader.cancel();
        throw new TnlError("input", `${what} inflates to more than its declared ${size} bytes`);
      }
      out.set(value, got);
      got += value.length;
    }
  } catch (e) {
    if (e instanceof TnlError) throw e;
    throw new TnlError("input", `${what}: corrupt deflate data (${e instanceof Error ? e.message : e})`);
  }
  if (got !== size) throw new TnlError("input", `${what} inflates to ${got} bytes, not its declared ${size}`);
  return out;
}

// CRC-32 (IEEE, reflected), eight bytes at a time ("slicing by 8").
const CRC_TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k][n] = (t[0][t[k - 1][n] & 0xff] ^ (t[k - 1][n] >>> 8)) >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n8 = data.length - (data.length % 8);
  for (; i < n8; i += 8) {
    const a = (c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))) >>> 0;
    c = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24] ^
      t3[data[i + 4]] ^ t2[data[i + 5]] ^ t1[data[i + 6]] ^ t0[data[i + 7]];
  }
  for (; i < data.length; i++) c = t0[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(v: DataView, at: number, file: string, what: string): number {
  const x = v.getBigUint64(at, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new TnlError("input", `${file}: ${what} ${x} is out of range`);
  }
  return Number(x);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hex(x: number): string {
  return x.toString(16).padStart(8, "0");
}
