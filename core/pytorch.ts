// PyTorch checkpoints (`pytorch_model.bin`, torch.save's zip format since PyTorch 1.6): a zip of
// `<archive>/data.pkl` (the state dict, pickled) and `<archive>/data/<key>` (one entry per storage, raw
// little-endian elements), plus `byteorder` and `version`. The pickle is read by a restricted unpickler
// that knows only the globals a state dict of tensors needs and refuses every other one, so loading a
// checkpoint never runs code. Tensors are read one at a time, by byte range from their storage entry.

import { type DType, DTYPE_SIZE, FLOAT_DTYPES, toF32, toI32 } from "./dtype.ts";
import { TnlError } from "./errors.ts";
import { type ByteSource, MemorySource, RandomAccessFile } from "./files.ts";
import {
  PickleDict,
  PickleGlobal,
  PickleObject,
  PickleTuple,
  type PickleValue,
  unpickle,
  type UnpicklePolicy,
} from "./pickle.ts";
import { ShardedWeights, type WeightInfo, type WeightReader } from "./shards.ts";
import { ZipArchive, type ZipEntry } from "./zip.ts";

/** The storage classes torch.save names in persistent ids, and their element types. */
const STORAGE_TYPES: Readonly<Record<string, DType>> = {
  "torch.FloatStorage": "F32",
  "torch.HalfStorage": "F16",
  "torch.BFloat16Storage": "BF16",
  "torch.DoubleStorage": "F64",
  "torch.LongStorage": "I64",
  "torch.IntStorage": "I32",
  "torch.ShortStorage": "I16",
  "torch.CharStorage": "I8",
  "torch.ByteStorage": "U8",
  "torch.BoolStorage": "BOOL",
};

const ORDERED_DICT = "collections.OrderedDict";
const REBUILD_TENSOR = "torch._utils._rebuild_tensor_v2";
const REBUILD_PARAMETER = "torch._utils._rebuild_parameter";

/** The largest data.pkl read: a state dict's pickle is a few hundred bytes per tensor. */
const MAX_PICKLE_BYTES = 1 << 28;

export interface StorageRef {
  key: string;
  dtype: DType;
  /** Elements in the storage. */
  numel: number;
}

export interface TensorRef {
  storage: StorageRef;
  /** In elements of the storage. */
  offset: number;
  shape: number[];
  stride: number[];
}

export interface TorchTensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  stride: number[];
  storageKey: string;
  /** In elements. */
  storageOffset: number;
  /** Row-major without gaps (read as one range); otherwise gathered element by element. */
  contiguous: boolean;
}

function bad(why: string): TnlError {
  return new TnlError("input", why);
}

function isUint(v: PickleValue): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function uintTuple(v: PickleValue, what: string): number[] {
  if (!(v instanceof PickleTuple) || !v.items.every(isUint)) {
    throw bad(`${what} must be a tuple of integers ≥ 0`);
  }
  return [...v.items] as number[];
}

/** Meaning of the few globals a state dict needs; everything else is refused by allowGlobal. */
class TorchPolicy implements UnpicklePolicy {
  readonly storages = new Map<string, StorageRef>();

  allowGlobal(module: string, name: string): boolean {
    const q = `${module}.${name}`;
    return q === ORDERED_DICT || q === REBUILD_TENSOR || q === REBUILD_PARAMETER ||
      Object.hasOwn(STORAGE_TYPES, q);
  }

  call(fn: PickleGlobal, args: readonly PickleValue[]): PickleValue {
    switch (fn.qualifiedName) {
      case ORDERED_DICT: {
        const d = new PickleDict("OrderedDict");
        if (args.length === 0) return d;
        const pairs = args[0];
        if (args.length !== 1 || !Array.isArray(pairs)) throw bad("OrderedDict takes () or a list of pairs");
        for (const p of pairs) {
          if (!(p instanceof PickleTuple) || p.items.length !== 2 || typeof p.items[0] !== "string") {
            throw bad("OrderedDict pairs must be (string, value)");
          }
          d.items.set(p.items[0], p.items[1]);
        }
        return d;
      }
      case REBUILD_TENSOR:
        return rebuildTensor(args);
      case REBUILD_PARAMETER: {
        if (args.length !== 3) throw bad(`${REBUILD_PARAMETER} takes 3 arguments, got ${args.length}`);
        const data = args[0];
        if (!(data instanceof PickleObject && data.type === "tensor")) {
          throw bad(`${REBUILD_PARAMETER} of a non-tensor`);
        }
        return data;
      }
      default:
        throw bad(`calling ${fn.qualifiedName} is not supported`);
    }
  }

  persistentLoad(pid: PickleValue): PickleValue {
    // ('storage', storage type, key, location, numel)
    if (!(pid instanceof PickleTuple) || pid.items.length !== 5 || pid.items[0] !== "storage") {
      throw bad("persistent id is not ('storage', type, key, location, numel)");
    }
    const [, type, key, location, numel] = pid.items;
    const dtype = type instanceof PickleGlobal && Object.hasOwn(STORAGE_TYPES, type.qualifiedName)
      ? STORAGE_TYPES[type.qualifiedName]
      : undefined;
    if (dtype === undefined) throw bad("persistent id names no storage type");
    if (typeof key !== "string" || key === "" || key.includes("/")) {
      throw bad("storage key must be a plain name");
    }
    if (typeof location !== "string") throw bad(`storage '${key}': location must be a string`);
    if (!isUint(numel)) throw bad(`storage '${key}': element count must be an integer ≥ 0`);
    const seen = this.storages.get(key);
    if (seen !== undefined) {
      if (seen.dtype !== dtype || seen.numel !== numel) {
        throw bad(`storage '${key}' appears as ${seen.numel} × ${seen.dtype} and as ${numel} × ${dtype}`);
      }
      return new PickleObject("storage", seen);
    }
    const ref: StorageRef = { key, dtype, numel };
    this.storages.set(key, ref);
    return new PickleObject("storage", ref);
  }
}

/** _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
function rebuildTensor(args: readonly PickleValue[]): PickleValue {
  if (args.length !== 6 && args.length !== 7) {
    throw bad(`${REBUILD_TENSOR} takes 6 or 7 arguments, got ${args.length}`);
  }
  const [storageObj, offset, size, stride, requiresGrad, hooks] = args;
  if (!(storageObj instanceof PickleObject && storageObj.type === "storage")) {
    throw bad("tensor without a storage");
  }
  const storage = storageObj.value as StorageRef;
  if (!isUint(offset)) throw bad("tensor storage offset must be an integer ≥ 0");
  const shape = uintTuple(size, "tensor size");
  const strides = uintTuple(stride, "tensor stride");
  if (strides.length !== shape.length) {
    throw bad(`tensor size [${shape}] and stride [${strides}] differ in length`);
  }
  if (typeof requiresGrad !== "boolean") throw bad("tensor requires_grad must be a boolean");
  if (!(hooks instanceof PickleDict) || hooks.items.size !== 0) {
    throw bad("tensors with backward hooks are not supported");
  }
  let count = 1;
  let last = offset; // index of the last element
  for (let d = 0; d < shape.length; d++) {
    count *= shape[d];
    if (shape[d] > 0) last += (shape[d] - 1) * strides[d];
  }
  if (!Number.isSafeInteger(count) || !Number.isSafeInteger(last)) {
    throw bad(`tensor size [${shape}] is too large`);
  }
  if (count > 0 && (last >= storage.numel || count > storage.numel - offset)) {
    throw bad(
      `tensor of size [${shape}], stride [${strides}], offset ${offset} reaches beyond storage '${storage.key}' of ${storage.numel} elements`,
    );
  }
  if (count === 0 && offset > storage.numel) {
    throw bad(`tensor offset ${offset} beyond storage '${storage.key}'`);
  }
  const ref: TensorRef = { storage, offset, shape, stride: strides };
  return new PickleObject("tensor", ref);
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  if (shape.includes(0)) return true;
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    if (stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/** A state dict's tensors as the pickle describes them (names in pickle order); storages not yet looked at. */
export function parseStateDict(pickle: Uint8Array, source: string): Map<string, TensorRef> {
  const root = unpickle(pickle, source, new TorchPolicy());
  if (!(root instanceof PickleDict)) throw bad(`${source}: the pickled object is not a state dict`);
  const out = new Map<string, TensorRef>();
  for (const [name, value] of root.items) {
    if (typeof name !== "string") throw bad(`${source}: state dict key ${String(name)} is not a string`);
    if (!(value instanceof PickleObject && value.type === "tensor")) {
      throw bad(`${source}: state dict entry '${name}' is not a tensor (a flat dict of tensors is expected)`);
    }
    out.set(name, value.value as TensorRef);
  }
  return out;
}

interface Located {
  info: TorchTensorInfo;
  entry: ZipEntry;
}

/** An open torch.save checkpoint: the state dict's tensors by name, read on demand. */
export class PytorchCheckpoint implements WeightReader {
  private constructor(
    readonly zip: ZipArchive,
    readonly tensors: ReadonlyMap<string, TorchTensorInfo>,
    readonly located: ReadonlyMap<string, Located>,
    readonly bigEndian: boolean,
  ) {}

  get path(): string {
    return this.zip.name;
  }

  static async open(path: string): Promise<PytorchCheckpoint> {
    const src = await RandomAccessFile.open(path);
    try {
      return await PytorchCheckpoint.fromSource(src);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  /** A checkpoint held in memory (tests, fuzzing). */
  static fromBytes(bytes: Uint8Array, source: string): Promise<PytorchCheckpoint> {
    return PytorchCheckpoint.fromSource(new MemorySource(source, bytes));
  }

  static async fromSource(src: ByteSource): Promise<PytorchCheckpoint> {
    const file = src.name;
    if (src.size >= 2) {
      const magic = await src.readAt(0, 2);
      if (magic[0] === 0x80 && magic[1] <= 5) {
        throw bad(
          `${file} is a legacy torch.save file (before PyTorch 1.6), not the zip format; save it again with a recent PyTorch`,
        );
      }
    }
    const zip = await ZipArchive.open(src);
    const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pickles.length !== 1) {
      throw bad(
        pickles.length === 0
          ? `${file}: no <archive>/data.pkl entry: not a torch.save checkpoint`
          : `${file}: ${pickles.length} data.pkl entries (${pickles.join(", ")})`,
      );
    }
    const prefix = pickles[0].slice(0, -"data.pkl".length);

    let bigEndian = false;
    const order = zip.entries.get(`${prefix}byteorder`);
    if (order !== undefined) {
      const text = order.size <= 16 ? new TextDecoder().decode(await zip.read(order)) : "";
      if (text !== "little" && text !== "big") {
        throw bad(`${file}: byteorder entry says "${text.slice(0, 16)}"`);
      }
      bigEndian = text === "big";
    }

    const pklEntry = zip.entries.get(pickles[0]) as ZipEntry;
    if (pklEntry.size > MAX_PICKLE_BYTES) {
      throw bad(`${file}: ${pickles[0]} of ${pklEntry.size} bytes is too large`);
    }
    const stateDict = parseStateDict(await zip.read(pklEntry), `${file}: ${pickles[0]}`);

    const located = new Map<string, Located>();
    const tensors = new Map<string, TorchTensorInfo>();
    for (const [name, ref] of stateDict) {
      const entryName = `${prefix}data/${ref.storage.key}`;
      const entry = zip.entries.get(entryName);
      if (entry === undefined) {
        throw bad(`${file}: storage entry '${entryName}' of tensor '${name}' is missing`);
      }
      const bytes = ref.storage.numel * DTYPE_SIZE[ref.storage.dtype];
      if (entry.size !== bytes) {
        throw bad(
          `${file}: storage entry '${entryName}' holds ${entry.size} bytes, but ${ref.storage.numel} × ${ref.storage.dtype} is ${bytes} (tensor '${name}')`,
        );
      }
      const info: TorchTensorInfo = {
        name,
        dtype: ref.storage.dtype,
        shape: ref.shape,
        stride: ref.stride,
        storageKey: ref.storage.key,
        storageOffset: ref.offset,
        contiguous: isContiguous(ref.shape, ref.stride),
      };
      tensors.set(name, info);
      located.set(name, { info, entry });
    }
    return new PytorchCheckpoint(zip, tensors, located, bigEndian);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  #get(name: string): Located {
    const t = this.located.get(name);
    if (t === undefined) throw new TnlError("input", `no tensor '${name}' in ${this.path}`);
    return t;
  }

  info(name: string): WeightInfo {
    const t = this.#get(name).info;
    return { dtype: t.dtype, shape: [...t.shape] };
  }

  /** The tensor's elements, row-major and little-endian, in a buffer of their own. */
  async readRaw(name: string): Promise<Uint8Array> {
    const { info, entry } = this.#get(name);
    const es = DTYPE_SIZE[info.dtype];
    let count = 1;
    for (const d of info.shape) count *= d;
    if (count === 0) return new Uint8Array(0);
    let out: Uint8Array;
    if (info.contiguous) {
      out = await this.zip.readRange(entry, info.storageOffset * es, count * es);
    } else {
      let span = 1;
      for (let d = 0; d < info.shape.length; d++) span += (info.shape[d] - 1) * info.stride[d];
      const src = await this.zip.readRange(entry, info.storageOffset * es, span * es);
      out = gather(src, es, info.shape, info.stride, count);
    }
    if (this.bigEndian && es > 1) {
      for (let i = 0; i < out.length; i += es) out.subarray(i, i + es).reverse();
    }
    return out;
  }

  async readF32(name: string): Promise<Float32Array> {
    const { info } = this.#get(name);
    return toF32(info.dtype, await this.readRaw(name), `tensor '${name}' in ${this.path}`);
  }

  async readInt(name: string): Promise<Int32Array> {
    const { info } = this.#get(name);
    return toI32(info.dtype, await this.readRaw(name), `tensor '${name}' in ${this.path}`);
  }

  close(): void {
    this.zip.close();
  }
}

/** Copies a strided view (strides in elements, from element 0 of `src`) into row-major order. */
function gather(src: Uint8Array, es: number, shape: number[], stride: number[], count: number): Uint8Array {
  const out = new Uint8Array(count * es);
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let from = 0; // element index into src
  for (let i = 0; i < count; i++) {
    out.set(src.subarray(from * es, from * es + es), i * es);
    // Advance the multi-index like an odometer, last dimension fastest.
    for (let d = rank - 1; d >= 0; d--) {
      index[d]++;
      from += stride[d];
      if (index[d] < shape[d]) break;
      from -= stride[d] * shape[d];
      index[d] = 0;
    }
  }
  return out;
}

export interface LoadedTensor {
  /** The stored element type. */
  dtype: DType;
  shape: number[];
  /** Floats (F32, F16, BF16) as f32, integers as i32. */
  data: Float32Array | Int32Array;
}

async function readAll(reader: WeightReader): Promise<Map<string, LoadedTensor>> {
  const out = new Map<string, LoadedTensor>();
  for (const name of reader.names()) {
    const { dtype, shape } = reader.info(name);
    const data = FLOAT_DTYPES.includes(dtype) ? await reader.readF32(name) : await reader.readInt(name);
    out.set(name, { dtype, shape, data });
  }
  return out;
}

/** Every tensor of a torch.save checkpoint, converted one at a time. */
export async function readPytorchCheckpoint(path: string): Promise<Map<string, LoadedTensor>> {
  const ckpt = await PytorchCheckpoint.open(path);
  try {
    return await readAll(ckpt);
  } finally {
    ckpt.close();
  }
}

/** The shards of `pytorch_model.bin.index.json` as one reader. */
export function openPytorchIndex(indexPath: string): Promise<ShardedWeights> {
  return ShardedWeights.open(indexPath, PytorchCheckpoint.open);
}

/** Every tensor of a sharded torch.save checkpoint. */
export async function readPytorchIndex(indexPath: string): Promise<Map<string, LoadedTensor>> {
  const sharded = await openPytorchIndex(indexPath);
  try {
    return await readAll(sharded);
  } finally {
    sharded.close();
  }
}
