// The benchmark harness of `tnl bench`: kernels register cases; each case runs at its shapes with warm-up
// and repeats on random inputs, timed on the GPU with timestamp queries (one pass per repeat, all in one
// submit, one readback) or, where the device has no timestamps, by the wall clock around batches of
// repeats (said in the report). The report schema is `BenchReportSchema` (docs/bench.md).

import { z } from "zod";
import { TnlError } from "./errors.ts";
import type { AdapterFacts, Gpu, Step } from "./gpu.ts";
import { median } from "./stats.ts";
import { gitCommit, runtimeVersions, VERSION } from "./version.ts";

export type BenchShape = Record<string, number | string>;

/** One prepared instance of a case at one shape. */
export interface BenchRun {
  /** Encodes one repetition into the step's current pass. */
  encode(step: Step): void;
  /** Work per repetition, for derived throughput. */
  flops?: number;
  bytes?: number;
  tokens?: number;
  /**
   * For work that a single pass cannot hold (e.g. generation with its readbacks): times `warmup` + `repeats`
   * runs itself by the wall clock and returns the timed runs' milliseconds; `encode` is then not used.
   */
  measure?(repeats: number, warmup: number): Promise<number[]>;
  dispose(): void;
}

export interface BenchCase {
  /** Case name; attention cases contain `lightning`, `naive-linear` or `softmax-flash`. */
  name: string;
  group: "kernels" | "model";
  /** Shapes to run: small ones for `--quick` (CI on a 2-core software adapter), real ones otherwise. */
  shapes(quick: boolean): BenchShape[];
  setup(gpu: Gpu, shape: BenchShape): BenchRun | Promise<BenchRun>;
}

export const ThroughputSchema = z.object({
  value: z.number(),
  unit: z.enum(["GFLOP/s", "GB/s", "tokens/s"]),
});

export const CaseResultSchema = z.object({
  name: z.string(),
  group: z.enum(["kernels", "model"]),
  shape: z.record(z.string(), z.union([z.number(), z.string()])),
  repeats: z.number().int().positive(),
  warmup: z.number().int().nonnegative(),
  median_ms: z.number().nonnegative(),
  min_ms: z.number().nonnegative(),
  max_ms: z.number().nonnegative(),
  throughput: z.array(ThroughputSchema),
  /** GPU memory tnl allocated for the case (inputs, outputs, scratch), in bytes. */
  peak_bytes: z.number().int().nonnegative(),
});

export const BenchReportSchema = z.object({
  schema: z.literal("tnl-bench/1"),
  tnl: z.string(),
  git_commit: z.string().nullable(),
  date: z.string(),
  runtime: z.object({ deno: z.string(), v8: z.string(), typescript: z.string() }),
  adapter: z.object({
    description: z.string(),
    vendor: z.string(),
    architecture: z.string(),
    device: z.string(),
    fallback: z.boolean(),
    subgroupMinSize: z.number().nullable(),
    subgroupMaxSize: z.number().nullable(),
    backend: z.string().nullable(),
  }),
  features: z.record(z.string(), z.boolean()),
  timing: z.enum(["gpu-timestamps", "wall-clock"]),
  quick: z.boolean(),
  cases: z.array(CaseResultSchema),
});

export type CaseResult = z.infer<typeof CaseResultSchema>;
export type BenchReport = z.infer<typeof BenchReportSchema>;

export interface RunOptions {
  quick: boolean;
  /** Only cases whose name contains one of these strings. */
  filter?: string[];
  warmup?: number;
  repeats?: number;
  /** Force wall-clock timing even when timestamps are available. */
  wallClock?: boolean;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

export async function runBench(
  gpu: Gpu,
  cases: readonly BenchCase[],
  opts: RunOptions,
): Promise<BenchReport> {
  const timing = gpu.features["timestamp-query"] && !opts.wallClock ? "gpu-timestamps" : "wall-clock";
  const selected = cases.filter((c) => !opts.filter?.length || opts.filter.some((f) => c.name.includes(f)));
  if (opts.filter?.length && selected.length === 0) {
    throw new TnlError(
      "usage",
      `no benchmark case matches ${opts.filter.map((f) => `'${f}'`).join(", ")}; cases: ${
        cases.map((c) => c.name).join(", ")
      }`,
    );
  }
  const results: CaseResult[] = [];
  for (const c of selected) {
    for (const shape of c.shapes(opts.quick)) {
      opts.log?.(`bench ${c.name} ${formatShape(shape)} ...`);
      results.push(await runCase(gpu, c, shape, timing, opts));
    }
  }
  return {
    schema: "tnl-bench/1",
    tnl: VERSION,
    git_commit: await gitCommit(),
    date: new Date().toISOString(),
    runtime: runtimeVersions(),
    adapter: { ...(gpu.adapter as AdapterFacts) },
    features: { ...gpu.features },
    timing,
    quick: opts.quick,
    cases: results,
  };
}

export async function runCase(
  gpu: Gpu,
  c: BenchCase,
  shape: BenchShape,
  timing: "gpu-timestamps" | "wall-clock",
  opts: Pick<RunOptions, "quick" | "warmup" | "repeats">,
): Promise<CaseResult> {
  gpu.resetPeak();
  const before = gpu.liveBytes;
  const run = await c.setup(gpu, shape);
  try {
    const warmup = opts.warmup ?? (opts.quick ? 1 : 3);
    const repeats = opts.repeats ?? (opts.quick ? 3 : 10);
    const times = run.measure
      ? await run.measure(repeats, warmup)
      : timing === "gpu-timestamps"
      ? await timeWithTimestamps(gpu, run, warmup, repeats)
      : await timeWithWallClock(gpu, run, warmup, repeats);
    const med = median(times);
    const throughput: CaseResult["throughput"] = [];
    const perSecond = (x: number) => x / (med / 1e3);
    if (run.flops) throughput.push({ value: perSecond(run.flops) / 1e9, unit: "GFLOP/s" });
    if (run.bytes) throughput.push({ value: perSecond(run.bytes) / 1e9, unit: "GB/s" });
    if (run.tokens) throughput.push({ value: perSecond(run.tokens), unit: "tokens/s" });
    return {
      name: c.name,
      group: c.group,
      shape,
      repeats,
      warmup,
      median_ms: med,
      min_ms: Math.min(...times),
      max_ms: Math.max(...times),
      throughput,
      peak_bytes: Math.max(0, gpu.peakBytes - before),
    };
  } finally {
    run.dispose();
  }
}

/** Per-repeat GPU times (ms): one pass per repeat with timestamps, one submit, one readback. */
async function timeWithTimestamps(
  gpu: Gpu,
  run: BenchRun,
  warmup: number,
  repeats: number,
): Promise<number[]> {
  const querySet = gpu.device.createQuerySet({ type: "timestamp", count: 2 * repeats });
  const resolved = gpu.createBuffer(
    16 * repeats,
    "bench timestamps",
    GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  );
  try {
    const step = gpu.step("bench warm-up");
    for (let i = 0; i < warmup; i++) run.encode(step);
    for (let i = 0; i < repeats; i++) {
      step.newPass({
        timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      run.encode(step);
    }
    step.submit((enc) => enc.resolveQuerySet(querySet, 0, 2 * repeats, resolved, 0));
    const ticks = new BigInt64Array(await gpu.read(resolved, 0, 16 * repeats));
    const times: number[] = [];
    for (let i = 0; i < repeats; i++) times.push(Number(ticks[2 * i + 1] - ticks[2 * i]) / 1e6);
    return times;
  } finally {
    querySet.destroy();
    gpu.destroyBuffer(resolved);
  }
}

/**
 * Per-repeat wall-clock times (ms): each sample runs enough repetitions in one submit to last ≥ 20 ms,
 * minus the fixed cost of waiting for an idle queue, divided by the repetitions.
 */
async function timeWithWallClock(
  gpu: Gpu,
  run: BenchRun,
  warmup: number,
  repeats: number,
): Promise<number[]> {
  const sample = async (reps: number) => {
    const t0 = performance.now();
    const step = gpu.step("bench");
    for (let i = 0; i < reps; i++) run.encode(step);
    step.submit();
    await gpu.idle();
    return performance.now() - t0;
  };
  const waits: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await gpu.idle();
    waits.push(performance.now() - t0);
  }
  const overhead = median(waits);
  await sample(Math.max(warmup, 1));
  const one = Math.max(await sample(1) - overhead, 1e-3);
  const inner = Math.min(1000, Math.max(1, Math.ceil(20 / one)));
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) times.push(Math.max(0, (await sample(inner)) - overhead) / inner);
  return times;
}

export function formatShape(shape: BenchShape): string {
  return Object.entries(shape).map(([k, v]) => `${k}=${v}`).join(" ");
}

export function formatThroughput(t: { value: number; unit: string }): string {
  if (t.unit === "GFLOP/s" && t.value >= 1000) return `${(t.value / 1000).toFixed(2)} TFLOP/s`;
  const digits = t.value >= 100 ? 0 : t.value >= 10 ? 1 : 2;
  return `${t.value.toFixed(digits)} ${t.unit}`;
}

/** The human table of a report (stdout of `tnl bench`). */
export function formatReport(r: BenchReport): string {
  const rows = r.cases.map((c) => [
    c.name,
    formatShape(c.shape),
    c.median_ms.toFixed(3),
    c.min_ms.toFixed(3),
    c.max_ms.toFixed(3),
    c.throughput.map(formatThroughput).join(", "),
    c.peak_bytes ? `${(c.peak_bytes / 2 ** 20).toFixed(1)}` : "-",
  ]);
  const head = ["case", "shape", "median ms", "min ms", "max ms", "throughput", "GPU MiB"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (i >= 2 && i !== 5 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join("  ")
      .trimEnd();
  const timingNote = r.timing === "gpu-timestamps"
    ? "GPU time from timestamp queries"
    : "wall-clock time (this device has no timestamp queries)";
  return [
    `adapter: ${r.adapter.description}${r.adapter.fallback ? " (software fallback)" : ""}; ${timingNote}` +
    `; ${r.cases[0]?.repeats ?? 0} repeats`,
    line(head),
    ...rows.map(line),
  ].join("\n");
}
