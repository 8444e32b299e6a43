// The common face of every weight file reader, and checkpoints split into shards by a HuggingFace index
// (`model.safetensors.index.json`, `pytorch_model.bin.index.json`: {"metadata": {...}, "weight_map":
// {tensor name: shard file name}}) presented as one reader.

import type { DType } from "./dtype.ts";
import { ioError, TnlError } from "./errors.ts";
import { isJsonObject, jsonType, parseJsonStrict } from "./json.ts";

export interface WeightInfo {
  dtype: DType;
  shape: number[];
}

/** Tensors of a checkpoint by name, read one at a time. */
export interface WeightReader {
  /** The file (or index file) read. */
  readonly path: string;
  /** Tensor names in file order. */
  names(): string[];
  /** Dtype and shape of a tensor; an unknown name is an input error naming the file. */
  info(name: string): WeightInfo;
  /** The tensor as f32 (F32, F16 and BF16 exactly). */
  readF32(name: string): Promise<Float32Array>;
  /** The tensor as i32 (integer types; a value outside i32 is an error naming the tensor). */
  readInt(name: string): Promise<Int32Array>;
  close(): void;
}

/** Reads and checks an index file: its weight map in file order. */
export async function readShardIndex(indexPath: string): Promise<Map<string, string>> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(indexPath);
  } catch (e) {
    throw ioError("read", indexPath, e);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new TnlError("input", `${indexPath}: not valid UTF-8`);
  }
  const root = parseJsonStrict(text, indexPath);
  if (!isJsonObject(root)) {
    throw new TnlError("input", `${indexPath}: expected a JSON object, found ${jsonType(root)}`);
  }
  const meta = root.get("metadata");
  if (meta !== undefined && !isJsonObject(meta)) {
    throw new TnlError("input", `${indexPath}: "metadata" must be an object, found ${jsonType(meta)}`);
  }
  const map = root.get("weight_map");
  if (map === undefined) throw new TnlError("input", `${indexPath}: no "weight_map"`);
  if (!isJsonObject(map)) {
    throw new TnlError("input", `${indexPath}: "weight_map" must be an object, found ${jsonType(map)}`);
  }
  const out = new Map<string, string>();
  for (const [name, shard] of map) {
    if (typeof shard !== "string") {
      throw new TnlError(
        "input",
        `${indexPath}: weight_map["${name}"] must be a file name, found ${jsonType(shard)}`,
      );
    }
    // Shards sit next to the index: a path elsewhere is refused rather than followed.
    if (shard === "" || shard === "." || shard === ".." || /[/\\\0]/.test(shard)) {
      throw new TnlError(
        "input",
        `${indexPath}: weight_map["${name}"] = "${shard}" is not a plain file name`,
      );
    }
    out.set(name, shard);
  }
  if (out.size === 0) throw new TnlError("input", `${indexPath}: "weight_map" is empty`);
  return out;
}

/** Shards listed by an index, as one reader. Every tensor must be in exactly the shard the index names. */
export class ShardedWeights implements WeightReader {
  private constructor(
    readonly path: string,
    readonly shards: ReadonlyMap<string, WeightReader>,
    readonly weightMap: ReadonlyMap<string, string>,
  ) {}

  static async open(
    indexPath: string,
    openShard: (path: string) => Promise<WeightReader>,
  ): Promise<ShardedWeights> {
    const weightMap = await readShardIndex(indexPath);
    const dir = indexPath.includes("/") ? indexPath.slice(0, indexPath.lastIndexOf("/") + 1) : "";
    const shards = new Map<string, WeightReader>();
    try {
      for (const shard of new Set(weightMap.values())) shards.set(shard, await openShard(dir + shard));
      const present = new Set<string>();
      for (const [shard, reader] of shards) {
        for (const name of reader.names()) {
          present.add(name);
          const listed = weightMap.get(name);
          if (listed === undefined) {
            throw new TnlError("input", `${reader.path}: tensor '${name}' is not in the index ${indexPath}`);
          }
          if (listed !== shard) {
            throw new TnlError(
              "input",
              `${reader.path}: tensor '${name}' is in shard ${shard} but the index ${indexPath} puts it in ${listed}`,
            );
          }
        }
      }
      for (const [name, shard] of weightMap) {
        if (!present.has(name)) {
          throw new TnlError(
            "input",
            `${indexPath}: tensor '${name}' should be in shard ${shard}, but ${
              dir + shard
            } has no such tensor`,
          );
        }
      }
    } catch (e) {
      for (const r of shards.values()) r.close();
      throw e;
    }
    return new ShardedWeights(indexPath, shards, weightMap);
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  #shard(name: string): WeightReader {
    const shard = this.weightMap.get(name);
    if (shard === undefined) throw new TnlError("input", `no tensor '${name}' in ${this.path}`);
    return this.shards.get(shard) as WeightReader;
  }

  info(name: string): WeightInfo {
    return this.#shard(name).info(name);
  }

  readF32(name: string): Promise<Float32Array> {
    return this.#shard(name).readF32(name);
  }

  readInt(name: string): Promise<Int32Array> {
    return this.#shard(name).readInt(name);
  }

  close(): void {
    for (const r of this.shards.values()) r.close();
  }
}
