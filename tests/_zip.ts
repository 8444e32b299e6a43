// Test-only zip writer, to build archives the way torch.save does (stored, 64-byte aligned data, data
// descriptors, ZIP64 end records) and variants it does not write (deflate, ZIP64 extra fields everywhere).

import { crc32, ZipArchive } from "../core/zip.ts";
import { MemorySource } from "../core/files.ts";

export interface ZipInput {
  name: string;
  data: Uint8Array;
}

export interface ZipOptions {
  /** Compress with deflate. */
  deflate?: boolean;
  /** ZIP64 extra fields in every central directory entry, and the ZIP64 end records. */
  zip64?: boolean;
  /** Align data like torch (an "FB" padding extra field in the local header). */
  align?: number;
  /** Sizes and CRC in a data descriptor after the data, zeros in the local header (as torch writes). */
  dataDescriptor?: boolean;
  comment?: string;
}

class Bytes {
  parts: number[] = [];
  get length(): number {
    return this.parts.length;
  }
  u16(v: number): this {
    this.parts.push(v & 0xff, (v >>> 8) & 0xff);
    return this;
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 65536) & 0xffff);
  }
  u64(v: number): this {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  raw(b: Uint8Array | number[]): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  done(): Uint8Array {
    return new Uint8Array(this.parts);
  }
}

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

export async function makeZip(entries: ZipInput[], opts: ZipOptions = {}): Promise<Uint8Array> {
  const out = new Bytes();
  const central = new Bytes();
  const enc = new TextEncoder();
  for (const e of entries) {
    const name = enc.encode(e.name);
    const body = opts.deflate ? await deflateRaw(e.data) : e.data;
    const crc = crc32(e.data);
    const offset = out.length;
    let extra: number[] = [];
    if (opts.align) {
      const at = offset + 30 + name.length + 4;
      const pad = (opts.align - (at % opts.align)) % opts.align;
      extra = [0x46, 0x42, pad & 0xff, pad >> 8, ...new Array(pad).fill(0x5a)];
    }
    const dd = opts.dataDescriptor ?? false;
    out.u32(0x04034b50).u16(opts.zip64 ? 45 : 20).u16(dd ? 0x0808 : 0x0800).u16(opts.deflate ? 8 : 0)
      .u16(0).u16(0).u32(dd ? 0 : crc).u32(dd ? 0 : body.length).u32(dd ? 0 : e.data.length)
      .u16(name.length).u16(extra.length).raw(name).raw(extra).raw(body);
    if (dd) out.u32(0x08074b50).u32(crc).u32(body.length).u32(e.data.length);
    const cExtra = opts.zip64
      ? new Bytes().u16(1).u16(24).u64(e.data.length).u64(body.length).u64(offset).done()
      : [];
    central.u32(0x02014b50).u16(0x031e).u16(opts.zip64 ? 45 : 20).u16(dd ? 0x0808 : 0x0800)
      .u16(opts.deflate ? 8 : 0).u16(0).u16(0).u32(crc)
      .u32(opts.zip64 ? 0xffffffff : body.length).u32(opts.zip64 ? 0xffffffff : e.data.length)
      .u16(name.length).u16(cExtra.length).u16(0).u16(0).u16(0).u32(0)
      .u32(opts.zip64 ? 0xffffffff : offset).raw(name).raw(cExtra);
  }
  const cdOffset = out.length;
  out.raw(central.parts);
  const cdSize = central.length;
  if (opts.zip64) {
    const recordOffset = out.length;
    out.u32(0x06064b50).u64(44).u16(0x031e).u16(45).u32(0).u32(0).u64(entries.length).u64(entries.length)
      .u64(cdSize).u64(cdOffset);
    out.u32(0x07064b50).u32(0).u64(recordOffset).u32(1);
  }
  const comment = enc.encode(opts.comment ?? "");
  out.u32(0x06054b50).u16(0).u16(0).u16(opts.zip64 ? 0xffff : entries.length)
    .u16(opts.zip64 ? 0xffff : entries.length).u32(opts.zip64 ? 0xffffffff : cdSize)
    .u32(opts.zip64 ? 0xffffffff : cdOffset).u16(comment.length).raw(comment);
  return out.done();
}

/** The entries of a zip in memory, in central directory order. */
export async function unzip(bytes: Uint8Array): Promise<ZipInput[]> {
  const zip = await ZipArchive.open(new MemorySource("zip", bytes));
  const out: ZipInput[] = [];
  for (const e of zip.entries.values()) out.push({ name: e.name, data: await zip.read(e) });
  return out;
}
