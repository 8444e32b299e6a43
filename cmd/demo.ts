// `tnl demo`: the whole path on real data, small enough for a 2-core machine without a GPU: the Brown
// Corpus → a byte-level BPE tokenizer → training a small TNL until its validation loss is well below ln(V)
// (the loss of knowing nothing) → validation loss, perplexity and bits per byte before and after.

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { trainBpeFromFiles } from "../core/bpe_train.ts";
import { defaultBrownSource, writeBrown } from "../core/brown.ts";
import { loadTokens } from "../core/data.ts";
import { TnlError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/files.ts";
import { train } from "../core/train.ts";
import { parseTrainConfig } from "../core/train_config.ts";
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
      const gpu = await gpuFromOptions(globals);
      let summary;
      try {
        summary = await train(gpu, parseTrainConfig(yaml, `${out}/train.yaml`), {
          fresh: true,
          overwrite: true,
          log: note,
        });
      } finally {
        gpu.close();
      }
      const rows = (await Deno.readTextFile(`${out}/run/metrics.jsonl`)).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      const val = rows.filter((r) => typeof r.val_loss === "number");
      if (val.length < 2) throw new TnlError("internal", "demo: no validation rows");
      // bits per byte over the validation windows: Σ NLL / (ln 2 · bytes), with the split's bytes per token
      const valBytes = (await Deno.stat(`${data}/val.txt`)).size;
      const stream = await loadTokens([`${data}/val.txt`], tok, "val");
      const bytesPerToken = valBytes / stream.ids.length;
      const report = (loss: number) => ({
        val_loss: loss,
        perplexity: Math.exp(loss),
        bits_per_byte: loss / (Math.LN2 * bytesPerToken),
      });
      const before = report(val[0].val_loss), after = report(val.at(-1)!.val_loss);
      const lnV = Math.log(tok.vocabSize);
      const result = {
        before,
        after,
        ln_vocab: lnV,
        below_ln_vocab: lnV - after.val_loss,
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
        `${what.padEnd(15)} val loss ${r.val_loss.toFixed(4)}  perplexity ${
          r.perplexity.toFixed(2)
        }  bits/byte ${r.bits_per_byte.toFixed(4)}`;
      await writeOutput(
        "-",
        [
          line("before training", before),
          line("after training", after),
          `ln(V) = ${lnV.toFixed(4)}: the trained model is ${
            (lnV - after.val_loss).toFixed(2)
          } nats below it`,
          `outputs: corpus ${data}/, tokenizer ${tokPath}, config ${out}/train.yaml, run ${out}/run/ (metrics.jsonl, loss.svg, ${summary.checkpoint})`,
          `wall time ${result.wall_s.toFixed(0)} s, ${
            Math.round(summary.tokens_per_s)
          } tokens/s while training`,
        ].join("\n"),
      );
    });
}
