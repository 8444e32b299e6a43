// `tnl train config.yaml`: trains (or resumes) the run the config describes. SIGINT/SIGTERM finish the step,
// save a checkpoint and exit 130/143.

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { train } from "../core/train.ts";
import { readTrainConfig } from "../core/train_config.ts";
import { type GlobalOptions, gpuFromOptions, note, writeOutput } from "./common.ts";

export function trainCommand(): CommandUnknownOpts {
  return new Command("train")
    .description("train a model from a YAML config (resumes from the newest checkpoint in out_dir)")
    .argument("<config>", 'training config (YAML; see the README, "Training config")')
    .option("--fresh", "start over although out_dir has checkpoints (refused unless --overwrite)")
    .option("--overwrite", "with --fresh: move the old run to out_dir/old-<time>/ (nothing is deleted)")
    .option("--force", "resume even though the model config changed")
    .option("--json", "print the final summary as one JSON document")
    .action(async (configPath: string, opts, cmd) => {
      const globals = cmd.optsWithGlobals() as GlobalOptions;
      const cfg = await readTrainConfig(configPath);
      let signal: "SIGINT" | "SIGTERM" | null = null;
      const onInt = () => (signal ??= "SIGINT");
      const onTerm = () => (signal ??= "SIGTERM");
      Deno.addSignalListener("SIGINT", onInt);
      Deno.addSignalListener("SIGTERM", onTerm);
      const gpu = await gpuFromOptions(globals);
      try {
        const s = await train(gpu, cfg, {
          fresh: Boolean(opts.fresh),
          overwrite: Boolean(opts.overwrite),
          force: Boolean(opts.force),
          log: note,
          interrupted: () => signal,
        });
        if (opts.json) await writeOutput("-", JSON.stringify(s, null, 2));
        else if (!s.already_finished) {
          await writeOutput(
            "-",
            `step ${s.step}/${s.steps}  train loss ${s.train_loss?.toFixed(4) ?? "-"}  val loss ${
              s.val_loss?.toFixed(4) ?? "-"
            }  best ${s.best_val_loss?.toFixed(4) ?? "-"} (step ${s.best_step ?? "-"})  ${
              Math.round(s.tokens_per_s)
            } tokens/s  checkpoint ${s.checkpoint}`,
          );
        }
        if (s.interrupted) {
          gpu.close();
          Deno.exit(s.interrupted === "SIGINT" ? 130 : 143);
        }
      } finally {
        Deno.removeSignalListener("SIGINT", onInt);
        Deno.removeSignalListener("SIGTERM", onTerm);
        gpu.close();
      }
    });
}
