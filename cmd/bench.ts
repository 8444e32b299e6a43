// `tnl bench kernels|model`: runs the registered benchmark cases and prints a table (stdout); `--json FILE`
// also writes the report (schema: docs/bench.md; `-` = stdout instead of the table).

import { Command } from "@commander-js/extra-typings";
import { formatReport, runBench } from "../core/bench.ts";
import { modelBenchCases } from "../core/model_bench.ts";
import { kernelBenchCases } from "../kernels/cases.ts";
import { type GlobalOptions, gpuFromOptions, note, positiveInt, writeOutput } from "./common.ts";

export function benchCommand(): Command {
  const bench = new Command("bench").description("benchmark kernels and whole models");
  bench.command("kernels")
    .description("time every registered kernel case on random inputs")
    .option("--quick", "small shapes and few repeats (CI on a software adapter: under a minute)")
    .option("--json <file>", "also write the report as JSON to FILE ('-' = stdout, replacing the table)")
    .option("--filter <names...>", "only cases whose name contains one of these")
    .option("--repeats <n>", "timed repeats per shape", positiveInt("--repeats"))
    .option("--warmup <n>", "untimed runs before timing", (v) => (v === "0" ? 0 : positiveInt("--warmup")(v)))
    .option("--wall-clock", "time by the wall clock even where timestamp queries exist")
    .action(async function (this: Command, opts) {
      const globals = this.optsWithGlobals() as GlobalOptions;
      const gpu = await gpuFromOptions(globals);
      try {
        const report = await runBench(gpu, kernelBenchCases, {
          quick: Boolean(opts.quick),
          filter: opts.filter,
          repeats: opts.repeats,
          warmup: opts.warmup,
          wallClock: Boolean(opts.wallClock),
          log: note,
        });
        await gpu.sync();
        const json = JSON.stringify(report, null, 2);
        if (opts.json === "-") {
          await writeOutput("-", json);
        } else {
          await writeOutput("-", formatReport(report));
          if (opts.json) {
            await writeOutput(opts.json, json);
            note(`wrote ${opts.json}`);
          }
        }
      } finally {
        gpu.close();
      }
    });
  bench.command("model")
    .description(
      "whole-model throughput of a preset with random weights: the training step, the prefill of a prompt, " +
        "and decoding at given positions (tokens/s)",
    )
    .option("--preset <name>", "model preset", "tnl-tiny")
    .option("--batch <n>", "sequences per training step", positiveInt("--batch"), 4)
    .option("--seq <n>", "tokens per training sequence", positiveInt("--seq"), 2048)
    .option("--vocab <n>", "vocabulary size", positiveInt("--vocab"), 64000)
    .option("--prefill <n>", "prompt tokens of the prefill case", positiveInt("--prefill"), 4096)
    .option(
      "--positions <list>",
      "positions the decode case starts at, comma-separated",
      (v) => v.split(",").map((x) => positiveInt("--positions")(x.trim())),
      [512, 1024, 4096, 16384, 65536],
    )
    .option(
      "--decode-tokens <n>",
      "tokens drawn per decode repeat (batch 1)",
      positiveInt("--decode-tokens"),
      512,
    )
    .option(
      "--filter <names...>",
      "only cases whose name contains one of these (train-step, prefill, decode)",
    )
    .option("--json <file>", "also write the report as JSON to FILE ('-' = stdout, replacing the table)")
    .option("--repeats <n>", "timed repeats", positiveInt("--repeats"))
    .option("--warmup <n>", "untimed runs before timing", (v) => (v === "0" ? 0 : positiveInt("--warmup")(v)))
    .action(async function (this: Command, opts) {
      const globals = this.optsWithGlobals() as GlobalOptions;
      const gpu = await gpuFromOptions(globals);
      try {
        const cases = modelBenchCases({
          preset: opts.preset,
          batch: opts.batch,
          seq: opts.seq,
          vocab: opts.vocab,
          prefill: opts.prefill,
          positions: opts.positions,
          decodeTokens: opts.decodeTokens,
        });
        const report = await runBench(gpu, cases, {
          quick: false,
          filter: opts.filter,
          repeats: opts.repeats ?? 5,
          warmup: opts.warmup ?? 2,
          log: note,
        });
        await gpu.sync();
        const json = JSON.stringify(report, null, 2);
        if (opts.json === "-") await writeOutput("-", json);
        else {
          await writeOutput("-", formatReport(report));
          if (opts.json) await writeOutput(opts.json, json);
        }
      } finally {
        gpu.close();
      }
    });
  return bench;
}
