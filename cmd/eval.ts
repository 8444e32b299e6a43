// `tnl eval`: the reference-comparison mode (as llama.cpp offers for KL-divergence checks): the model's
// mean next-token loss on given token ids, and optionally its logits and gradients saved as safetensors.

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { loadModel } from "../core/checkpoint.ts";
import { TnlError } from "../core/errors.ts";
import { Activations, forward, forwardBackward, writeLogits } from "../core/model.ts";
import { SafetensorsFile, writeSafetensors } from "../core/safetensors.ts";
import { Tensor } from "../core/tensor.ts";
import { type GlobalOptions, gpuFromOptions, note, writeOutput } from "./common.ts";

export function evalCommand(): CommandUnknownOpts {
  return new Command("eval")
    .description(
      "evaluate a model: loss and perplexity on token ids (--input-ids), logits and gradients for reference comparisons",
    )
    .requiredOption("--model <dir>", "model directory (tnl checkpoint or HuggingFace TransNormerLLM)")
    .option("--input-ids <file>", "safetensors file with an I32/I64 tensor `input_ids` [B, T]")
    .option("--save-logits <file>", "write F32 logits [B, T, V] as `logits`")
    .option("--save-grads <file>", "write the gradient of the loss for every weight as `grad.<name>`")
    .option("--json", "print one JSON document: loss, perplexity, tokens")
    .argument("[files...]", "text or token files (not available yet: use --input-ids)")
    .action(async (files: string[], opts, cmd) => {
      const globals = cmd.optsWithGlobals() as GlobalOptions;
      if (files.length) {
        throw new TnlError(
          "unavailable",
          "`tnl eval FILES` is not available in this version yet: use --input-ids",
        );
      }
      if (!opts.inputIds) throw new TnlError("usage", "tnl eval: give --input-ids FILE");
      const idsFile = await SafetensorsFile.open(opts.inputIds);
      let ids: Int32Array, shape: number[];
      try {
        if (!idsFile.tensors.has("input_ids")) {
          throw new TnlError("input", `${opts.inputIds}: no tensor 'input_ids'`);
        }
        shape = idsFile.tensors.get("input_ids")!.shape;
        if (shape.length !== 2 || shape[0] < 1 || shape[1] < 1) {
          throw new TnlError("input", `${opts.inputIds}: input_ids has shape [${shape}], expected [B, T]`);
        }
        ids = await idsFile.readInt("input_ids");
      } finally {
        idsFile.close();
      }
      const [B, T] = shape;
      const gpu = await gpuFromOptions(globals);
      try {
        const { model, config } = await loadModel(gpu, opts.model);
        const m = model.dims;
        const train = Boolean(opts.saveGrads);
        const acts = new Activations(gpu, m, B, T, train);
        const predicted = acts.setBatch(ids, { what: opts.inputIds, train });
        if (predicted === 0) {
          throw new TnlError("input", `${opts.inputIds}: T = 1 leaves no next token to predict`);
        }
        const grads = train ? Tensor.empty(gpu, [model.layout.total], "f32", "gradients") : null;
        const logits = opts.saveLogits ? Tensor.empty(gpu, [B * T, m.vocab], "f32", "logits") : null;
        gpu.run("eval", (step) => {
          if (grads) forwardBackward(step, model, acts, grads, { lossScale: 1 / predicted });
          else forward(step, model, acts, { lossScale: 1 / predicted });
          if (logits) writeLogits(step, model, acts, logits);
        });
        const loss = (await acts.loss.readF32())[0];
        if (logits) {
          const data = await logits.readF32();
          await writeSafetensors(opts.saveLogits!, [{
            name: "logits",
            dtype: "F32",
            shape: [B, T, m.vocab],
            data,
          }]);
          note(`wrote ${opts.saveLogits}`);
        }
        if (grads) {
          const flat = await grads.readF32();
          await writeSafetensors(
            opts.saveGrads!,
            model.layout.specs.map((s) => ({
              name: `grad.${s.name}`,
              dtype: "F32" as const,
              shape: s.shape,
              data: flat.subarray(s.offset, s.offset + s.size),
            })),
          );
          note(`wrote ${opts.saveGrads}`);
        }
        const result = {
          loss,
          perplexity: Math.exp(loss),
          tokens: predicted,
          model: opts.model,
          tied: config.tie_word_embeddings,
        };
        if (opts.json) await writeOutput("-", JSON.stringify(result, null, 2));
        else {await writeOutput(
            "-",
            `loss ${loss.toFixed(6)}  perplexity ${Math.exp(loss).toFixed(4)}  tokens ${predicted}`,
          );}
      } finally {
        gpu.close();
      }
    });
}
