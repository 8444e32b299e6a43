// `tnl bench kernels|model`: runs the registered benchmark cases and prints a table (stdout); `--json`,
// `--markdown` and `--svg` also write the report, its Markdown table and its charts (schema: docs/bench.md;
// `-` = stdout instead of the table); `--compare BASE.json` adds ratios against a saved run and exits with
// code 9 when a case's median time grew by more than `--threshold` percent.

import { Command } from "@commander-js/extra-typings";
import { dirname } from "node:path";
import { type BenchReport, formatReport, runBench } from "../core/bench.ts";
import {
  compareReports,
  comparisonVerdict,
  formatComparisonSummary,
  formatMarkdown,
  readReport,
} from "../core/bench_report.ts";
import { renderSvg } from "../core/bench_svg.ts";
import { ioError, TnlError } from "../core/errors.ts";
import { modelBenchCases } from "../core/model_bench.ts";
import { kernelBenchCases } from "../kernels/cases.ts";
import { deviceCopyProbe } from "../kernels/copy.ts";
import { type GlobalOptions, gpuFromOptions, note, positiveInt, writeOutput } from "./common.ts";
import { decodeWeights } from "./generate.ts";

/** The output options both subcommands share. */
interface ReportOptions {
  json?: string;
  markdown?: string;
  svg?: string;
  compare?: string;
  threshold?: number;
  allowMissingBase?: true;
}

export const DEFAULT_THRESHOLD_PCT = 10;

const PROFILE_HELP =
  "also time each kernel of a case (one more run, to stderr and the JSON report; not decode)";

function percentage(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+(\.\d+)?\s*$/.test(value) || !Number.isFinite(n)) {
      throw new TnlError("usage", `${flag} ${value}: expected a percentage ≥ 0 (e.g. 10 or 2.5)`);
    }
    return n;
  };
}

/**
 * Checks the output options before anything runs: at most one document on stdout, the folders of the
 * files exist (created), and the base report of --compare is read and valid (null: no comparison).
 */
async function prepareReports(o: ReportOptions): Promise<BenchReport | null> {
  const files = [["--json", o.json], ["--markdown", o.markdown], ["--svg", o.svg]] as const;
  const toStdout = files.filter(([, f]) => f === "-").map(([flag]) => flag);
  if (toStdout.length > 1) {
    throw new TnlError(
      "usage",
      `${toStdout.join(" and ")} both write to stdout ('-'): give one of them a file`,
    );
  }
  if (o.threshold !== undefined && !o.compare) {
    throw new TnlError("usage", "--threshold needs --compare BASE.json");
  }
  if (o.allowMissingBase && !o.compare) {
    throw new TnlError("usage", "--allow-missing-base needs --compare BASE.json");
  }
  for (const [, file] of files) {
    if (!file || file === "-") continue;
    try {
      await Deno.mkdir(dirname(file), { recursive: true });
    } catch (e) {
      throw ioError("create the folder of", file, e);
    }
  }
  if (!o.compare) return null;
  if (o.allowMissingBase) {
    try {
      await Deno.stat(o.compare);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw ioError("read", o.compare, e);
      note(`no base report at ${o.compare}: nothing to compare with (--allow-missing-base)`);
      return null;
    }
  }
  return await readReport(o.compare);
}

/** Prints and writes what the options ask for; a regression against the base is an error (exit 9). */
async function emitReports(report: BenchReport, base: BenchReport | null, o: ReportOptions): Promise<void> {
  const comparison = base && o.compare
    ? compareReports(base, report, o.threshold ?? DEFAULT_THRESHOLD_PCT, o.compare)
    : undefined;
  const documents: [string | undefined, () => string][] = [
    [o.json, () => JSON.stringify(report, null, 2)],
    [o.markdown, () => formatMarkdown(report, comparison)],
    [o.svg, () => renderSvg(report)],
  ];
  const stdoutDocument = documents.find(([file]) => file === "-");
  if (stdoutDocument) {
    await writeOutput("-", stdoutDocument[1]());
    if (comparison) note(formatComparisonSummary(comparison));
  } else {
    const table = formatReport(report, comparison);
    await writeOutput("-", comparison ? `${table}\n\n${formatComparisonSummary(comparison)}` : table);
  }
  for (const [file, render] of documents) {
    if (!file || file === "-") continue;
    await writeOutput(file, render());
    note(`wrote ${file}`);
  }
  if (comparison?.regressions.length) throw new TnlError("regression", comparisonVerdict(comparison));
}

export function benchCommand(): Command {
  const bench = new Command("bench").description(
    "benchmark kernels and whole models; reports, charts, regression gate",
  );
  bench.command("kernels")
    .description("time every registered kernel case on random inputs")
    .option("--quick", "small shapes and few repeats (CI on a software adapter: under a minute)")
    .option("--json <file>", "also write the report as JSON to FILE ('-' = stdout, replacing the table)")
    .option("--markdown <file>", "also write the table as Markdown to FILE (for a pull request comment)")
    .option("--svg <file>", "also write charts to FILE: time vs T (log-log), tokens/s vs position")
    .option("--compare <base>", "ratios against a saved --json report; exit 9 if a case got slower")
    .option(
      "--threshold <pct>",
      `with --compare: percent a median time may grow (default ${DEFAULT_THRESHOLD_PCT})`,
      percentage("--threshold"),
    )
    .option(
      "--allow-missing-base",
      "with --compare: a missing BASE file is a note, not an error (first CI run)",
    )
    .option("--filter <names...>", "only cases whose name contains one of these")
    .option("--repeats <n>", "timed repeats per shape", positiveInt("--repeats"))
    .option("--warmup <n>", "untimed runs before timing", (v) => (v === "0" ? 0 : positiveInt("--warmup")(v)))
    .option("--wall-clock", "time by the wall clock even where timestamp queries exist")
    .option("--profile", PROFILE_HELP)
    .action(async function (this: Command, opts) {
      const globals = this.optsWithGlobals() as GlobalOptions;
      const base = await prepareReports(opts);
      const gpu = await gpuFromOptions(globals);
      try {
        const report = await runBench(gpu, kernelBenchCases, {
          quick: Boolean(opts.quick),
          filter: opts.filter,
          repeats: opts.repeats,
          warmup: opts.warmup,
          wallClock: Boolean(opts.wallClock),
          profile: Boolean(opts.profile),
          log: note,
          copyProbe: deviceCopyProbe(gpu),
        });
        await gpu.sync();
        await emitReports(report, base, opts);
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
    .option("--markdown <file>", "also write the table as Markdown to FILE (for a pull request comment)")
    .option("--svg <file>", "also write charts to FILE: time vs T (log-log), tokens/s vs position")
    .option("--compare <base>", "ratios against a saved --json report; exit 9 if a case got slower")
    .option(
      "--threshold <pct>",
      `with --compare: percent a median time may grow (default ${DEFAULT_THRESHOLD_PCT})`,
      percentage("--threshold"),
    )
    .option(
      "--allow-missing-base",
      "with --compare: a missing BASE file is a note, not an error (first CI run)",
    )
    .option("--repeats <n>", "timed repeats", positiveInt("--repeats"))
    .option("--profile", PROFILE_HELP)
    .option(
      "--weights <type>",
      "the decode case's weights: f32, or f16 (as tnl generate --weights)",
      decodeWeights,
      "f32",
    )
    .option("--warmup <n>", "untimed runs before timing", (v) => (v === "0" ? 0 : positiveInt("--warmup")(v)))
    .action(async function (this: Command, opts) {
      const globals = this.optsWithGlobals() as GlobalOptions;
      const base = await prepareReports(opts);
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
          weights: opts.weights,
        });
        const report = await runBench(gpu, cases, {
          quick: false,
          filter: opts.filter,
          repeats: opts.repeats ?? 5,
          warmup: opts.warmup ?? 2,
          profile: Boolean(opts.profile),
          log: note,
        });
        await gpu.sync();
        await emitReports(report, base, opts);
      } finally {
        gpu.close();
      }
    });
  return bench;
}
