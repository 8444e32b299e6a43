// Model directories: config.json + weights (model.safetensors, its shards, or pytorch_model.bin (+ index)),
// the format of the released TransNormerLLM checkpoints and of tnl's own. Loading checks every tensor
// name and shape against the config and refuses non-finite weights, naming the tensor; saving writes HF
// names, `lm_head.weight` iff untied and `tie_word_embeddings` explicitly.

import { configJson, type ModelDims, readConfigJson, resolveDims, type TnlConfig } from "./config.ts";
import { TnlError } from "./errors.ts";
import { writeFileAtomic } from "./files.ts";
import type { Gpu } from "./gpu.ts";
import { TnlModel } from "./model.ts";
import { writeSafetensors } from "./safetensors.ts";
import { assertFinite, openWeights } from "./weights.ts";

export interface LoadedModel {
  model: TnlModel;
  config: TnlConfig;
  /** which weight file was read */
  weightsPath: string;
}

/**
 * Reads `dir` onto the GPU. Tied iff the weights have no `lm_head.weight` (spec §2.8), whatever
 * config.json says. Missing, extra and misshapen tensors are all listed in one error.
 */
export async function loadModel(gpu: Gpu, dir: string): Promise<LoadedModel> {
  const configPath = `${dir.replace(/\/$/, "")}/config.json`;
  const config = await readConfigJson(configPath);
  const weights = await openWeights(dir);
  try {
    const names = new Set(weights.names());
    const tied = !names.has("lm_head.weight");
    const dims: ModelDims = resolveDims({ ...config, tie_word_embeddings: tied }, configPath);
    const model = TnlModel.empty(gpu, dims);
    const problems: string[] = [];
    for (const s of model.layout.specs) {
      if (!names.has(s.name)) {
        problems.push(`missing tensor ${s.name} [${s.shape}]`);
        continue;
      }
      const shape = weights.info(s.name).shape;
      if (shape.join(",") !== s.shape.join(",")) {
        problems.push(`tensor ${s.name} has shape [${shape}], the config needs [${s.shape}]`);
      }
    }
    for (const n of names) if (!model.layout.byName.has(n)) problems.push(`unexpected tensor ${n}`);
    if (problems.length) {
      model.destroy();
      throw new TnlError(
        "input",
        problems.map((p) => `${weights.path}: ${p} (config ${configPath})`).join("\n"),
      );
    }
    for (const s of model.layout.specs) {
      const data = await weights.readF32(s.name);
      assertFinite(s.name, data, weights.path);
      model.param(s.name).write(data);
    }
    return { model, config: { ...config, tie_word_embeddings: tied }, weightsPath: weights.path };
  } finally {
    weights.close();
  }
}

/** Writes config.json and model.safetensors (F32, HF names) of `model` into `dir` (which must exist). */
export async function saveModel(model: TnlModel, config: TnlConfig, dir: string): Promise<void> {
  const base = dir.replace(/\/$/, "");
  const params = await model.readParams();
  for (const [name, data] of params) assertFinite(name, data, `${base}/model.safetensors`);
  await writeSafetensors(
    `${base}/model.safetensors`,
    model.layout.specs.map((s) => ({
      name: s.name,
      dtype: "F32" as const,
      shape: s.shape,
      data: params.get(s.name)!,
    })),
    { format: "pt" },
  );
  await writeFileAtomic(
    `${base}/config.json`,
    JSON.stringify(configJson(config, model.dims.tied), null, 2) + "\n",
  );
}
