// `tnl eval`: perplexity and bits per byte of documents at constant memory, zero-shot multiple choice,
// associative recall (MQAR); and the reference-comparison mode (as llama.cpp offers for KL-divergence
// checks): the model's mean next-token loss on given token ids, its logits and gradients as safetensors.

import { Command, type CommandUnknownOpts, Option } from "@commander-js/extra-typings";
import { loadModel } from "../core/checkpoint.ts";
import { evaluateChoices, readChoiceTask } from "../core/choices.ts";
import { readConfigJson, resolveDims } from "../core/config.ts";
import { TnlError } from "../core/errors.ts";
import {
  checkDocuments,
  EVAL_BATCH_TOKENS,
  EVAL_CHUNK,
  evaluateMqar,
  evaluatePerplexity,
  loadDocuments,
  type ScorerOptions,
} from "../core/eval.ts";
import type { Gpu } from "../core/gpu.ts";
import { Activations, forward, forwardBackward, writeLogits } from "../core/model.ts";
import { checkMqar, MQAR_POWER_A, type MqarSettings } from "../core/mqar.ts";
import { Progress } from "../core/progress.ts";
import { SafetensorsFile, writeSafetensors } from "../core/safetensors.ts";
import { Tensor } from "../core/tensor.ts";
import { configuredBos, loadTokenizer, type Tokenizer, tokenizerFileIn } from "../core/tokenizer.ts";
import { type GlobalOptions, gpuFromOptions, note, positiveInt, writeOutput } from "./common.ts";

const TASKS = ["perplexity", "choices", "mqar"] as const;

function nonNegativeInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) {
      throw new TnlError("usage", `${flag} ${value}: expected an integer ≥ 0`);
    }
    return n;
  };
}

function fraction(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !(n > 0 && n <= 1)) {
      throw new TnlError("usage", `${flag} ${value}: expected a number in (0, 1]`);
    }
    return n;
  };
}

const round = (x: number, digits = 6) => Number(x.toFixed(digits));

export function evalCommand(): CommandUnknownOpts {
  return new Command("eval")
    .description(
      "evaluate a model: perplexity and bits per byte of documents (constant memory), multiple-choice tasks, " +
        "associative recall (--task mqar); loss, logits and gradients of token ids for reference comparisons",
    )
    .requiredOption("--model <dir>", "model directory (tnl checkpoint or HuggingFace TransNormerLLM)")
    .argument(
      "[files...]",
      'documents: text (split at blank lines), JSONL with "text", token files (split at </s>); with --task choices: the task file',
    )
    .addOption(new Option("--task <task>", "what to evaluate (default: perplexity of FILES)").choices(TASKS))
    .option(
      "--chunk <n>",
      "tokens per forward of one sequence: memory stays that of one chunk",
      positiveInt("--chunk"),
      EVAL_CHUNK,
    )
    .option(
      "--batch-tokens <n>",
      `tokens per forward over a batch of sequences (default max(chunk, ${EVAL_BATCH_TOKENS}))`,
      positiveInt("--batch-tokens"),
    )
    .option("--details", "with --json: per-document or per-item results")
    .option("--pairs <n>", "mqar: key-value pairs per sequence (default 8)", positiveInt("--pairs"))
    .option("--seq-len <n>", "mqar: tokens per sequence (default 256)", positiveInt("--seq-len"))
    .option("--samples <n>", "mqar: sequences (default 1000)", positiveInt("--samples"))
    .option("--seed <n>", "mqar: seed of the sequences (default 0)", nonNegativeInt("--seed"))
    .option("--vocab <n>", "mqar: vocabulary of the sequences (default: the model's)", positiveInt("--vocab"))
    .option(
      "--power-a <a>",
      `mqar: exponent of the query-gap power law (default ${MQAR_POWER_A})`,
      fraction("--power-a"),
    )
    .option(
      "--input-ids <file>",
      "reference mode: safetensors file with an I32/I64 tensor `input_ids` [B, T]",
    )
    .option("--save-logits <file>", "reference mode: write F32 logits [B, T, V] as `logits`")
    .option(
      "--save-grads <file>",
      "reference mode: write the gradient of the loss for every weight as `grad.<name>`",
    )
    .option("--json", "print one JSON document")
    .action(async (files: string[], opts, cmd) => {
      const globals = cmd.optsWithGlobals() as GlobalOptions;
      const mqarFlags = (["pairs", "seqLen", "samples", "seed", "vocab", "powerA"] as const).filter((k) =>
        opts[k] !== undefined
      );
      const flagName = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      if (opts.inputIds !== undefined) {
        if (files.length || opts.task || mqarFlags.length || opts.details) {
          throw new TnlError(
            "usage",
            "tnl eval --input-ids: give no FILES, --task, mqar flags or --details with it",
          );
        }
        await referenceMode(globals, opts.model, opts.inputIds, opts);
        return;
      }
      if (opts.saveLogits || opts.saveGrads) {
        throw new TnlError("usage", "--save-logits and --save-grads need --input-ids");
      }
      const task = opts.task ?? "perplexity";
      if (task !== "mqar" && mqarFlags.length) {
        throw new TnlError("usage", `${flagName(mqarFlags[0])} is an option of --task mqar`);
      }
      if (opts.details && !opts.json) throw new TnlError("usage", "--details needs --json");
      if (task === "mqar" && files.length) throw new TnlError("usage", "--task mqar takes no FILES");
      if (task === "choices" && files.length !== 1) {
        throw new TnlError("usage", "--task choices: give one task file (JSONL)");
      }
      if (task === "perplexity" && !files.length) {
        throw new TnlError(
          "usage",
          "tnl eval: give FILES to evaluate, --task choices FILE, --task mqar, or --input-ids FILE",
        );
      }

      // Inputs first (files, tokenizer, ids against the vocabulary), so that bad input is reported before
      // the GPU opens.
      const dir = opts.model.replace(/\/+$/, "");
      const dims = resolveDims(await readConfigJson(`${dir}/config.json`), `${dir}/config.json`);
      const tokFile = await tokenizerFileIn(dir);
      const tokenizer: Tokenizer | null = tokFile ? await loadTokenizer(tokFile) : null;
      const bos = await configuredBos(dir, tokenizer, dims.bosId);
      const chunk = opts.chunk;
      const batchTokens = opts.batchTokens ?? Math.max(chunk, EVAL_BATCH_TOKENS);
      if (batchTokens < chunk) {
        throw new TnlError("usage", `--batch-tokens ${batchTokens} is smaller than --chunk ${chunk}`);
      }
      const t0 = performance.now();
      let bar: Progress | null = null;
      const progress = { finish: () => bar?.finish() };
      const scorer: ScorerOptions = {
        chunk,
        batchTokens,
        onProgress: (done, total) => {
          bar ??= new Progress(`eval ${task}`, total, { unit: "tokens" });
          bar.update(done);
        },
      };
      const common = { model: opts.model, chunk, batch_tokens: batchTokens, bos };
      const withGpu = async <T>(
        fn: (gpu: Gpu, model: Awaited<ReturnType<typeof loadModel>>["model"]) => Promise<T>,
      ) => {
        const gpu = await gpuFromOptions(globals);
        try {
          const { model } = await loadModel(gpu, dir);
          try {
            return await fn(gpu, model);
          } finally {
            model.destroy();
          }
        } finally {
          gpu.close();
        }
      };

      if (task === "perplexity") {
        const docs = await loadDocuments(files, {
          tokenizer,
          vocab: dims.vocab,
          eos: tokenizer?.specialIds.eos ?? dims.eosId,
          bos: bos !== null,
          model: opts.model,
        });
        checkDocuments(docs, dims.vocab);
        note(
          `eval: ${docs.length} documents from ${files.length} file${files.length > 1 ? "s" : ""}, ` +
            `BOS ${
              bos === null ? "none (the first token of each document is context only)" : bos
            }, chunks of ${chunk} tokens`,
        );
        const r = await withGpu((_gpu, model) => evaluatePerplexity(model, docs, { bos, ...scorer }));
        const seconds = (performance.now() - t0) / 1000;
        progress.finish();
        if (opts.json) {
          await writeOutput(
            "-",
            JSON.stringify(
              {
                task,
                loss: r.loss,
                perplexity: r.perplexity,
                ...(r.bitsPerByte === null ? {} : { bits_per_byte: r.bitsPerByte }),
                tokens: r.tokens,
                bytes: r.bytes,
                documents: r.documents,
                files,
                ...common,
                constant_memory: true,
                seconds: round(seconds, 3),
                tokens_per_s: Math.round(r.tokens / seconds),
                ...(opts.details
                  ? {
                    details: r.perDocument.map((d) => ({ ...d, loss: d.tokens ? d.nll / d.tokens : null })),
                  }
                  : {}),
              },
              null,
              2,
            ),
          );
          return;
        }
        const bpb = r.bitsPerByte === null ? "" : `, bits per byte ${r.bitsPerByte.toFixed(4)}`;
        await writeOutput(
          "-",
          `loss ${r.loss.toFixed(4)}, perplexity ${
            r.perplexity.toFixed(3)
          }${bpb} over ${r.documents} documents ` +
            `(${r.tokens} tokens${
              r.bytes === null ? "" : `, ${r.bytes} bytes`
            }), constant memory: chunks of ${chunk} tokens`,
        );
        if (r.bitsPerByte === null) {
          note("bits per byte: unknown (token files and a model without a tokenizer)");
        }
        note(`${seconds.toFixed(1)} s, ${Math.round(r.tokens / seconds)} tokens/s`);
        return;
      }

      if (task === "choices") {
        const path = files[0];
        if (!tokenizer) {
          throw new TnlError(
            "input",
            `${opts.model} has no tokenizer (tokenizer.json or a SentencePiece model) to encode ${path}`,
          );
        }
        const items = await readChoiceTask(path);
        const r = await withGpu((_gpu, model) =>
          evaluateChoices(model, tokenizer, items, {
            bos,
            eos: tokenizer.specialIds.eos ?? dims.eosId,
            path,
            ...scorer,
          })
        );
        const seconds = (performance.now() - t0) / 1000;
        progress.finish();
        if (opts.json) {
          const { details, ...summary } = r;
          await writeOutput(
            "-",
            JSON.stringify(
              {
                task,
                file: path,
                ...summary,
                ...common,
                seconds: round(seconds, 3),
                ...(opts.details ? { details } : {}),
              },
              null,
              2,
            ),
          );
          return;
        }
        const se = (x: number | null) => (x === null ? "" : ` ± ${x.toFixed(4)}`);
        await writeOutput(
          "-",
          `acc ${r.acc.toFixed(4)}${se(r.acc_stderr)}, acc_norm ${r.acc_norm.toFixed(4)}${
            se(r.acc_norm_stderr)
          } over ${r.items} items of ${path}`,
        );
        return;
      }

      // mqar
      const settings: MqarSettings = {
        vocab: opts.vocab ?? dims.vocab,
        pairs: opts.pairs ?? 8,
        seqLen: opts.seqLen ?? 256,
        powerA: opts.powerA ?? MQAR_POWER_A,
      };
      checkMqar(settings, "--task mqar");
      if (settings.vocab > dims.vocab) {
        throw new TnlError(
          "input",
          `--vocab ${settings.vocab} is larger than the model's vocabulary of ${dims.vocab}`,
        );
      }
      const samples = opts.samples ?? 1000, seed = opts.seed ?? 0;
      const r = await withGpu((_gpu, model) => evaluateMqar(model, settings, { samples, seed, ...scorer }));
      const seconds = (performance.now() - t0) / 1000;
      progress.finish();
      if (opts.json) {
        await writeOutput(
          "-",
          JSON.stringify(
            {
              task,
              accuracy: r.accuracy,
              chance: r.chance,
              loss: r.loss,
              answers: r.answers,
              samples,
              vocab: settings.vocab,
              pairs: settings.pairs,
              seq_len: settings.seqLen,
              power_a: settings.powerA,
              seed,
              ...common,
              seconds: round(seconds, 3),
            },
            null,
            2,
          ),
        );
        return;
      }
      await writeOutput(
        "-",
        `mqar accuracy ${r.accuracy.toFixed(4)} (chance ${r.chance.toFixed(4)}) over ${r.answers} answers: ` +
          `${samples} sequences of ${settings.seqLen} tokens, ${settings.pairs} pairs, vocab ${settings.vocab}`,
      );
    });
}

/** `--input-ids`: the loss of token ids, optionally their logits and gradients as safetensors. */
async function referenceMode(
  globals: GlobalOptions,
  modelDir: string,
  inputIds: string,
  opts: { saveLogits?: string; saveGrads?: string; json?: true },
): Promise<void> {
  const idsFile = await SafetensorsFile.open(inputIds);
  let ids: Int32Array, shape: number[];
  try {
    if (!idsFile.tensors.has("input_ids")) {
      throw new TnlError("input", `${inputIds}: no tensor 'input_ids'`);
    }
    shape = idsFile.tensors.get("input_ids")!.shape;
    if (shape.length !== 2 || shape[0] < 1 || shape[1] < 1) {
      throw new TnlError("input", `${inputIds}: input_ids has shape [${shape}], expected [B, T]`);
    }
    ids = await idsFile.readInt("input_ids");
  } finally {
    idsFile.close();
  }
  const [B, T] = shape;
  const gpu = await gpuFromOptions(globals);
  try {
    const { model, config } = await loadModel(gpu, modelDir);
    const m = model.dims;
    const train = Boolean(opts.saveGrads);
    const acts = new Activations(gpu, m, B, T, train);
    const predicted = acts.setBatch(ids, { what: inputIds, train });
    if (predicted === 0) {
      throw new TnlError("input", `${inputIds}: T = 1 leaves no next token to predict`);
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
      model: modelDir,
      tied: config.tie_word_embeddings,
    };
    if (opts.json) await writeOutput("-", JSON.stringify(result, null, 2));
    else {
      await writeOutput(
        "-",
        `loss ${loss.toFixed(6)}  perplexity ${Math.exp(loss).toFixed(4)}  tokens ${predicted}`,
      );
    }
  } finally {
    gpu.close();
  }
}
