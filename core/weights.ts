// One entry point to a model directory's weights, whatever the checkpoint format, and a check for
// non-finite values. The model code checks names and shapes against its config; this only reads.

import { ioError, TnlError } from "./errors.ts";
import { openPytorchIndex, PytorchCheckpoint } from "./pytorch.ts";
import { openSafetensorsIndex, SafetensorsFile } from "./safetensors.ts";
import type { WeightReader } from "./shards.ts";

export type { WeightInfo, WeightReader } from "./shards.ts";

/** The files looked for, in order of preference. */
export const WEIGHT_FILES = [
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
] as const;

export type WeightFormat = (typeof WEIGHT_FILES)[number];

export interface ModelWeights extends WeightReader {
  /** Which of WEIGHT_FILES was opened. */
  readonly format: WeightFormat;
}

/** Opens the weights of the model in `dir`: the first of WEIGHT_FILES present. */
export async function openWeights(dir: string): Promise<ModelWeights> {
  try {
    const st = await Deno.stat(dir);
    if (!st.isDirectory) throw new TnlError("io", `cannot open model directory ${dir}: not a directory`);
  } catch (e) {
    if (e instanceof TnlError) throw e;
    throw ioError("open model directory", dir, e);
  }
  const base = dir.endsWith("/") ? dir : `${dir}/`;
  for (const format of WEIGHT_FILES) {
    const path = base + format;
    try {
      await Deno.stat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw ioError("open", path, e);
    }
    let reader: WeightReader;
    switch (format) {
      case "model.safetensors":
        reader = await SafetensorsFile.open(path);
        break;
      case "model.safetensors.index.json":
        reader = await openSafetensorsIndex(path);
        break;
      case "pytorch_model.bin":
        reader = await PytorchCheckpoint.open(path);
        break;
      case "pytorch_model.bin.index.json":
        reader = await openPytorchIndex(path);
        break;
    }
    return {
      format,
      path: reader.path,
      names: () => reader.names(),
      info: (name) => reader.info(name),
      readF32: (name) => reader.readF32(name),
      readInt: (name) => reader.readInt(name),
      close: () => reader.close(),
    };
  }
  throw new TnlError("io", `no weights in ${dir}: none of ${WEIGHT_FILES.join(", ")} is there`);
}

/** Throws an input error naming the tensor, the file and the first NaN or infinity in `data`. */
export function assertFinite(name: string, data: Float32Array, file: string): void {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (x - x !== 0) {
      const what = Number.isNaN(x) ? "NaN" : x > 0 ? "+Infinity" : "-Infinity";
      throw new TnlError("input", `tensor ${name} in ${file} has ${what} at index ${i}`);
    }
  }
}
