// `tnl demo`: the whole path on real data, small enough for a 2-core machine without a GPU: the Brown
// Corpus → a byte-level BPE tokenizer → training a small TNL until its validation loss is well below ln(V)
// (the loss of knowing nothing) → loss, perplexity and bits per byte of validation documents before and
// after training, measured as `tnl eval` measures them (whole documents after BOS, constant memory) → a
// sample the trained model generates (seeded, as `tnl generate` draws it).

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { trainBpeFromFiles } from "../core/bpe_train.ts";
import { defaultBrownSource, writeBrown } from "../core/brown.ts";
import { loadModel } from "../core/checkpoint.ts";
import { evaluatePerplexity, loadDocuments, type PerplexityResult } from "../core/eval.ts";
import { continuationDecoder, generate, Generator } from "../core/generate.ts";
import { writeFileAtomic } from "../core/files.ts";
import { TnlModel } from "../core/model.ts";
import { configuredBos, type Tokenizer } from "../core/tokenizer.ts";
import { train } from "../core/train.ts";
import { parseTrainConfig, trainDims } from "../core/train_config.ts";
import { type GlobalOptions, gpuFromOptions, note, positiveInt, writeOutput } from "./common.ts";

export function demoCommand(): CommandUnknownOpts {
  return new Command("demo")
    .description(
      "Brown Corpus → tokenizer → train a small TNL → evaluate: the whole path, a few minutes on a CPU",
    )
    .option("--out <dir>", "where the corpus, tokenizer and run go", "runs/demo")
    .option("--vocab <n>", "tokenizer vocabulary", positiveInt("--vocab"), 1024)
    .option("--steps <n>", "training steps", positiveInt("--steps"), 120)
    .option("--preset <name>", "model preset", "tnl-mini")
    .option(
      "--eval-docs <n>",
      "validation documents evaluated before and after training, from the start of the split (0: all 50)",
      (v: string) => (v === "0" ? 0 : positiveInt("--eval-docs")(v)),
      20,
    )
    .option("--prompt <text>", "the start of the generated sample", "The")
    .option("--sample-tokens <n>", "tokens of the generated sample", positiveInt("--sample-tokens"), 60)
    .option("--json", "print the summary as one JSON document")
    .action(async (opts, cmd) => {
      const globals = cmd.optsWithGlobals() as GlobalOptions;
      const t0 = performance.now();
      const out = opts.out.replace(/\/$/, "");
      const data = `${out}/brown`;
      const written = await writeBrown(defaultBrownSource(), data);
      for (const w of written) note(`corpus    ${w.path}: ${w.documents} documents, ${w.bytes} bytes`);
      const tokPath = `${out}/tokenizer.json`;
      const tok = await trainBpeFromFiles([`${data}/train.txt`], { vocabSize: opts.vocab, minFrequency: 0 });
      await writeFileAtomic(tokPath, tok.toJsonText());
      note(`tokenizer ${tokPath}: ${tok.vocabSize} tokens`);
      const yaml = `# written by tnl demo
model:
  preset: ${opts.preset}
data:
  train: brown/train.txt
  val: brown/val.txt
  tokenizer: tokenizer.json
train:
  batch_size: 8
  seq_len: 128
  steps: ${opts.steps}
  lr: 3.0e-3
  min_lr: 3.0e-4
  warmup_steps: 10
  eval_every: ${Math.max(1, Math.floor(opts.steps / 2))}
  eval_tokens: 16384
  log_every: 10
  save_every: ${opts.steps}
  keep_last: 1
out_dir: run
`;
      await writeFileAtomic(`${out}/train.yaml`, yaml);
      const cfg = parseTrainConfig(yaml, `${out}/train.yaml`);
      const gpu = await gpuFromOptions(globals);
      let summary, before: PerplexityResult, after: PerplexityResult;
      let evalSeconds = 0;
      let sample = "";
      const valPath = `${data}/val.txt`;
      const allDocs = await loadDocuments([valPath], {
        tokenizer: tok,
        vocab: tok.vocabSize,
        eos: tok.specialIds.eos,
        bos: true,
        model: "the demo",
      });
      const docs = opts.evalDocs === 0 ? allDocs : allDocs.slice(0, opts.evalDocs);
      const part = docs.length === allDocs.length
        ? `the whole val split (${docs.length} documents)`
        : `the first ${docs.length} of the val split's ${allDocs.length} documents`;
      try {
        summary = await train(gpu, cfg, { fresh: true, overwrite: true, log: note });
        // The model before training is the run's initialisation: the same dims and seed.
        const ckpt = summary.checkpoint!;
        const bos = await configuredBos(ckpt, tok, null);
        const t1 = performance.now();
        note(`evaluating ${part} before and after training (tnl eval)`);
        const initial = TnlModel.init(gpu, trainDims(cfg, tok.vocabSize).dims, cfg.train.seed);
        try {
          before = await evaluatePerplexity(initial, docs, { bos });
        } finally {
          initial.destroy();
        }
        const { model } = await loadModel(gpu, ckpt);
        try {
          after = await evaluatePerplexity(model, docs, { bos });
          evalSeconds = (performance.now() - t1) / 1000;
          sample = await generateSample(model, tok, bos, opts.prompt, opts.sampleTokens);
        } finally {
          model.destroy();
        }
      } finally {
        gpu.close();
      }
      const report = (r: PerplexityResult) => ({
        loss: r.loss,
        perplexity: r.perplexity,
        bits_per_byte: r.bitsPerByte!,
      });
      const lnV = Math.log(tok.vocabSize);
      const result = {
        before: report(before),
        after: report(after),
        evaluated: {
          part,
          documents: after.documents,
          tokens: after.tokens,
          bytes: after.bytes,
          seconds: evalSeconds,
        },
        sample: {
          prompt: opts.prompt,
          text: sample,
          seed: SAMPLE_SEED,
          temp: SAMPLE_TEMP,
          top_k: SAMPLE_TOP_K,
        },
        ln_vocab: lnV,
        below_ln_vocab: lnV - after.loss,
        steps: summary.step,
        tokens_per_s: summary.tokens_per_s,
        wall_s: (performance.now() - t0) / 1000,
        outputs: {
          corpus: data,
          tokenizer: tokPath,
          config: `${out}/train.yaml`,
          run: `${out}/run`,
          checkpoint: summary.checkpoint,
        },
      };
      if (opts.json) {
        await writeOutput("-", JSON.stringify(result, null, 2));
        return;
      }
      const line = (what: string, r: ReturnType<typeof report>) =>
        `${what.padEnd(15)} loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(2)}  bits per byte ${
          r.bits_per_byte.toFixed(4)
        }`;
      await writeOutput(
        "-",
        [
          `validation: ${part}, ${after.tokens} tokens, ${after.bytes} bytes (whole documents after BOS, as tnl eval)`,
          line("before training", result.before),
          line("after training", result.after),
          `ln(V) = ${lnV.toFixed(4)}: the trained model is ${(lnV - after.loss).toFixed(2)} nats below it`,
          `sample (seed ${SAMPLE_SEED}, temperature ${SAMPLE_TEMP}, top-k ${SAMPLE_TOP_K}): ${
            JSON.stringify(opts.prompt + sample)
          }`,
          `outputs: corpus ${data}/, tokenizer ${tokPath}, config ${out}/train.yaml, run ${out}/run/ (metrics.jsonl, loss.svg, ${summary.checkpoint})`,
          `wall time ${result.wall_s.toFixed(0)} s (evaluation ${evalSeconds.toFixed(0)} s), ${
            Math.round(summary.tokens_per_s)
          } tokens/s while training`,
        ].join("\n"),
      );
    });
}

const SAMPLE_SEED = 1, SAMPLE_TEMP = 0.8, SAMPLE_TOP_K = 40;

/** The text the model continues `prompt` with (after the BOS the checkpoint names), up to EOS or `n` tokens. */
async function generateSample(
  model: TnlModel,
  tok: Tokenizer,
  bos: number | null,
  prompt: string,
  n: number,
): Promise<string> {
  const ids = (bos === null ? [] : [bos]).concat(tok.encode(prompt));
  const gen = new Generator(model, {
    batch: 1,
    sampling: {
      temp: SAMPLE_TEMP,
      topK: SAMPLE_TOP_K,
      topP: 1,
      minP: 0,
      repeatPenalty: 1,
      repeatLastN: 0,
      seed: SAMPLE_SEED,
      banned: null,
      logprobs: false,
    },
  });
  const eos = model.dims.eosId;
  const stream = continuationDecoder(tok, ids);
  let text = "";
  try {
    await generate(gen, [{ ids, stream: 0 }], {
      maxTokens: n,
      eos,
      onToken: (_, token) => {
        if (token !== eos && token < tok.vocabSize) text += stream.push(token);
      },
    });
  } finally {
    gen.destroy();
  }
  return text + stream.flush();
}
