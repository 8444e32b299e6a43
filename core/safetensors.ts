// safetensors files, read and written to the format's own rules:
//   8 bytes: N, the header length (u64, little-endian; N ≤ 100,000,000 and 8 + N ≤ the file size)
//   N bytes: UTF-8 JSON, one object: {"__metadata__": {string: string}, name: {"dtype", "shape",
//            "data_offsets": [begin, end]}, ...}; offsets count from the first byte after the header
//   the data: the tensors' bytes, little-endian, row-major, exactly covering the rest of the file
// Readers check every rule (duplicate keys, unknown fields, sizes, gaps, overlaps) and name the file and
// the fault. Files are read tensor by tensor, so a model of many GB never sits in memory whole.

import { type DType, DTYPE_SIZE, isDType, numel, toF32, toI32 } from "./dtype.ts";
import { TnlError } from "./errors.ts";
import { type ByteSource, MemorySource, RandomAccessFile, writeFileAtomicStreaming } from "./files.ts";
import { f32ArrayToBf16, f32ArrayToF16 } from "./half.ts";
import { isJsonObject, JsonNumber, jsonType, type JsonValue, parseJsonStrict } from "./json.ts";
import { ShardedWeights, type WeightInfo, type WeightReader } from "./shards.ts";

export type { DType } from "./dtype.ts";

/** The largest header the reference implementation accepts. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute file offsets of the tensor's bytes: [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Offset of the data section: 8 + the header length. */
  dataStart: number;
}

/** Reads the 8-byte header length and checks it against the limit and the file size. */
function headerLength(first8: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) {
    throw new TnlError(
      "input",
      `${source}: truncated safetensors file: ${fileSize} bytes, fewer than the 8 of the header length`,
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new TnlError(
      "input",
      `${source}: safetensors header length ${n} is over the limit of ${MAX_HEADER_BYTES} bytes`,
    );
  }
  if (8n + n > BigInt(fileSize)) {
    throw new TnlError(
      "input",
      `${source}: safetensors header length ${n} runs past the end of the file (${fileSize} bytes; truncated?)`,
    );
  }
  return Number(n);
}

function parseHeader(headerBytes: Uint8Array, fileSize: number, source: string): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  const dataLength = fileSize - dataStart;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new TnlError("input", `${source}: safetensors header is not valid UTF-8`);
  }
  const root = parseJsonStrict(text, `${source}: safetensors header`);
  if (!isJsonObject(root)) {
    throw new TnlError("input", `${source}: safetensors header is ${jsonType(root)}, not a JSON object`);
  }
  const metadata: Record<string, string> = Object.create(null);
  const tensors = new Map<string, TensorInfo>();
  const rel: { name: string; begin: number; end: number }[] = [];
  for (const [key, value] of root) {
    if (key === "__metadata__") {
      if (!isJsonObject(value)) {
        throw new TnlError("input", `${source}: __metadata__ must be an object, found ${jsonType(value)}`);
      }
      for (const [k, v] of value) {
        if (typeof v !== "string") {
          throw new TnlError(
            "input",
            `${source}: __metadata__["${k}"] must be a string, found ${jsonType(v)}`,
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    const t = parseTensorEntry(key, value, source);
    rel.push({ name: key, begin: t.begin, end: t.end });
    tensors.set(key, {
      name: key,
      dtype: t.dtype,
      shape: t.shape,
      begin: dataStart + t.begin,
      end: dataStart + t.end,
    });
  }
  // The tensors must tile the data section: sorted by offsets, each begins where the previous ended.
  rel.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous = "";
  for (const r of rel) {
    if (r.begin > covered) {
      throw new TnlError(
        "input",
        `${source}: gap in the data: bytes [${covered}, ${r.begin}) belong to no tensor (before '${r.name}')`,
      );
    }
    if (r.begin < covered) {
      throw new TnlError(
        "input",
        `${source}: tensor '${r.name}' at data_offsets [${r.begin}, ${r.end}] overlaps '${previous}', which ends at ${covered}`,
      );
    }
    covered = r.end;
    previous = r.name;
  }
  if (covered !== dataLength) {
    throw new TnlError(
      "input",
      covered > dataLength
        ? `${source}: tensor '${previous}' ends at data offset ${covered}, past the ${dataLength} bytes of data (truncated file?)`
        : `${source}: the tensors cover ${covered} bytes, but ${dataLength} bytes of data follow the header`,
    );
  }
  return { tensors, metadata, dataStart };
}

function parseTensorEntry(
  name: string,
  value: JsonValue,
  source: string,
): { dtype: DType; shape: number[]; begin: number; end: number } {
  const where = `${source}: tensor '${name}'`;
  if (!isJsonObject(value)) {
    throw new TnlError("input", `${where} must be an object, found ${jsonType(value)}`);
  }
  for (const k of value.keys()) {
    if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
      throw new TnlError("input", `${where} has an unknown field "${k}" (only dtype, shape, data_offsets)`);
    }
  }
  const dtype = value.get("dtype");
  if (dtype === undefined) throw new TnlError("input", `${where} has no "dtype"`);
  if (typeof dtype !== "string") {
    throw new TnlError("input", `${where}: dtype must be a string, found ${jsonType(dtype)}`);
  }
  if (!isDType(dtype)) {
    throw new TnlError("input", `${source}: unsupported dtype ${dtype} of tensor '${name}'`);
  }
  const shapeValue = value.get("shape");
  if (shapeValue === undefined) throw new TnlError("input", `${where} has no "shape"`);
  const shape = uintArray(shapeValue, `${where}: shape`);
  const offsetsValue = value.get("data_offsets");
  if (offsetsValue === undefined) throw new TnlError("input", `${where} has no "data_offsets"`);
  const offsets = uintArray(offsetsValue, `${where}: data_offsets`);
  if (offsets.length !== 2) {
    throw new TnlError(
      "input",
      `${where}: data_offsets must be [begin, end], found ${offsets.length} numbers`,
    );
  }
  const [begin, end] = offsets;
  if (end < begin) {
    throw new TnlError("input", `${where}: data_offsets [${begin}, ${end}] end before they begin`);
  }
  let elements = 1;
  for (const d of shape) elements *= d;
  const bytes = elements * DTYPE_SIZE[dtype];
  if (!Number.isSafeInteger(bytes)) throw new TnlError("input", `${where}: shape [${shape}] is too large`);
  if (bytes !== end - begin) {
    throw new TnlError(
      "input",
      `${where}: shape [${shape}] of ${dtype} is ${bytes} bytes, but data_offsets [${begin}, ${end}] hold ${
        end - begin
      }`,
    );
  }
  return { dtype, shape, begin, end };
}

function uintArray(v: JsonValue, what: string): number[] {
  if (!Array.isArray(v)) throw new TnlError("input", `${what} must be an array, found ${jsonType(v)}`);
  return v.map((x) => {
    const n = x instanceof JsonNumber ? x.safeUint : null;
    if (n === null) {
      throw new TnlError(
        "input",
        `${what} must hold integers in [0, 2^53), found ${jsonType(x)}`,
      );
    }
    return n;
  });
}

/** Parses and validates a whole safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array, source: string): SafetensorsHeader {
  const n = headerLength(bytes.subarray(0, 8), bytes.length, source);
  return parseHeader(bytes.subarray(8, 8 + n), bytes.length, source);
}

/** An open safetensors file with its validated header; tensors are read on demand. */
export class SafetensorsFile implements WeightReader {
  readonly #src: ByteSource;

  private constructor(
    src: ByteSource,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {
    this.#src = src;
  }

  get path(): string {
    return this.#src.name;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const src = await RandomAccessFile.open(path);
    try {
      return await SafetensorsFile.fromSource(src);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  static async fromSource(src: ByteSource): Promise<SafetensorsFile> {
    const first8 = src.size >= 8 ? await src.readAt(0, 8) : new Uint8Array(8);
    const n = headerLength(first8, src.size, src.name);
    const h = parseHeader(await src.readAt(8, n), src.size, src.name);
    return new SafetensorsFile(src, h.tensors, h.metadata);
  }

  /** A file held in memory (tests, small files). */
  static fromBytes(bytes: Uint8Array, source: string): SafetensorsFile {
    const h = parseSafetensors(bytes, source);
    return new SafetensorsFile(new MemorySource(source, bytes), h.tensors, h.metadata);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  #get(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined) throw new TnlError("input", `no tensor '${name}' in ${this.path}`);
    return t;
  }

  info(name: string): WeightInfo {
    const t = this.#get(name);
    return { dtype: t.dtype, shape: [...t.shape] };
  }

  /** The tensor's bytes as stored (little-endian), in a buffer of their own. */
  readRaw(name: string): Promise<Uint8Array> {
    const t = this.#get(name);
    return this.#src.readAt(t.begin, t.end - t.begin);
  }

  async readF32(name: string): Promise<Float32Array> {
    const t = this.#get(name);
    return toF32(t.dtype, await this.readRaw(name), `tensor '${name}' in ${this.path}`);
  }

  async readInt(name: string): Promise<Int32Array> {
    const t = this.#get(name);
    return toI32(t.dtype, await this.readRaw(name), `tensor '${name}' in ${this.path}`);
  }

  close(): void {
    this.#src.close();
  }
}

/** The shards of `model.safetensors.index.json` as one reader. */
export function openSafetensorsIndex(indexPath: string): Promise<ShardedWeights> {
  return ShardedWeights.open(indexPath, SafetensorsFile.open);
}

// ---------------------------------------------------------------------------------------------------------
// Writing

export type WritableDType = "F32" | "F16" | "BF16" | "I32" | "I64";

export type TensorData = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

/**
 * A tensor to write. `data` is the values in row-major order: F32 as Float32Array; F16/BF16 as their bits
 * (Uint16Array) or as Float32Array (rounded to nearest even); I32 as Int32Array; I64 as BigInt64Array or
 * Int32Array; any dtype also as its little-endian bytes (Uint8Array). writeSafetensors also takes a
 * function that produces the data when the tensor's turn comes (a GPU readback, say), so a model need not
 * be in host memory all at once.
 */
export interface TensorToWrite {
  name: string;
  dtype: WritableDType;
  shape: number[];
  data: TensorData | (() => Promise<TensorData>);
}

// Layout order of the reference implementation: larger-aligned dtypes first (I64 > F32 > I32 > BF16 > F16
// in its dtype enumeration), then by name. It keeps every tensor aligned to its element size and makes
// our files byte-identical to the reference's for the same tensors.
const WRITE_RANK: Record<WritableDType, number> = { I64: 4, F32: 3, I32: 2, BF16: 1, F16: 0 };

interface Plan {
  /** The 8-byte length and the space-padded JSON header. */
  head: Uint8Array;
  order: TensorToWrite[];
  dataBytes: number;
}

function plan(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string> | undefined,
  what: string,
): Plan {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === "__metadata__") {
      throw new TnlError("internal", `${what}: a tensor cannot be named __metadata__`);
    }
    if (seen.has(t.name)) throw new TnlError("internal", `${what}: tensor '${t.name}' given twice`);
    seen.add(t.name);
    if (!Object.hasOwn(WRITE_RANK, t.dtype)) {
      throw new TnlError("internal", `${what}: tensor '${t.name}': cannot write dtype ${t.dtype}`);
    }
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new TnlError("internal", `${what}: tensor '${t.name}': bad shape [${t.shape}]`);
      }
    }
  }
  const order = [...tensors].sort((a, b) =>
    WRITE_RANK[b.dtype] - WRITE_RANK[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort();
    for (const k of keys) {
      if (typeof metadata[k] !== "string") {
        throw new TnlError("internal", `${what}: metadata "${k}" must be a string`);
      }
    }
    parts.push(
      `"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`,
    );
  }
  let offset = 0;
  for (const t of order) {
    let elements = 1;
    for (const d of t.shape) elements *= d;
    const size = elements * DTYPE_SIZE[t.dtype];
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${
        t.shape.join(",")
      }],"data_offsets":[${offset},${offset + size}]}`,
    );
    offset += size;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  if (padded > MAX_HEADER_BYTES) {
    throw new TnlError("internal", `${what}: header of ${padded} bytes is over the limit`);
  }
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { head, order, dataBytes: offset };
}

/** The little-endian bytes of one tensor to write (a view where the data already has the file's layout). */
function tensorBytes(t: TensorToWrite, d: TensorData, what: string): Uint8Array {
  const elements = numel(t.shape);
  let out: Uint8Array;
  if (d instanceof Uint8Array) out = d;
  else if (t.dtype === "F32" && d instanceof Float32Array) out = bytesOf(d);
  else if ((t.dtype === "F16" || t.dtype === "BF16") && d instanceof Uint16Array) out = bytesOf(d);
  else if (t.dtype === "F16" && d instanceof Float32Array) out = bytesOf(f32ArrayToF16(d));
  else if (t.dtype === "BF16" && d instanceof Float32Array) out = bytesOf(f32ArrayToBf16(d));
  else if (t.dtype === "I32" && d instanceof Int32Array) out = bytesOf(d);
  else if (t.dtype === "I64" && d instanceof BigInt64Array) out = bytesOf(d);
  else if (t.dtype === "I64" && d instanceof Int32Array) {
    out = bytesOf(BigInt64Array.from(d, (x) => BigInt(x)));
  } else {
    throw new TnlError(
      "internal",
      `${what}: tensor '${t.name}': ${d.constructor.name} data for dtype ${t.dtype}`,
    );
  }
  if (out.length !== elements * DTYPE_SIZE[t.dtype]) {
    throw new TnlError(
      "internal",
      `${what}: tensor '${t.name}': ${out.length} bytes of data for shape [${t.shape}] of ${t.dtype}`,
    );
  }
  return out;
}

function bytesOf(a: Float32Array | Uint16Array | Int32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A whole safetensors file in memory (small files and tests; large ones go through writeSafetensors). */
export function serializeSafetensors(
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Uint8Array {
  const p = plan(tensors, metadata, "safetensors");
  const out = new Uint8Array(p.head.length + p.dataBytes);
  out.set(p.head);
  let at = p.head.length;
  for (const t of p.order) {
    if (typeof t.data === "function") {
      throw new TnlError("internal", `serializeSafetensors: tensor '${t.name}' has no data in memory`);
    }
    const b = tensorBytes(t, t.data, "safetensors");
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/**
 * Writes a safetensors file atomically (temporary file, fsync, rename), tensor by tensor: the data is
 * never gathered into one buffer. Tensors are laid out in the reference implementation's order (dtype,
 * then name), whatever the order given; metadata keys are written sorted.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const p = plan(tensors, metadata, path);
  // Check the data in hand before creating the file (produced data is checked when it comes).
  for (const t of p.order) {
    if (typeof t.data === "function") continue;
    if (t.data instanceof Float32Array && (t.dtype === "F16" || t.dtype === "BF16")) {
      // Converted while writing; only the count is checked here.
      if (t.data.length !== numel(t.shape)) {
        throw new TnlError(
          "internal",
          `${path}: tensor '${t.name}': ${t.data.length} values for shape [${t.shape}]`,
        );
      }
    } else {
      tensorBytes(t, t.data, path);
    }
  }
  await writeFileAtomicStreaming(path, async (write) => {
    await write(p.head);
    for (const t of p.order) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      await write(tensorBytes(t, data, path));
    }
  });
}
