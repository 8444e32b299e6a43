// The benchmark harness of `tnl bench`: kernels register cases; each case runs at its shapes with warm-up
// and repeats on random inputs, timed on the GPU with timestamp queries (one pass per repeat, all in one
// submit, one readback) or, where the device has no timestamps, by the wall clock around batches of
// repeats (said in the report). A kernels run also measures the adapter's ceilings in the same run (a
// device-copy bandwidth probe and the best matmul GFLOP/s) and shows each case as a fraction of them. The
// report schema is `BenchReportSchema` (docs/bench.md); reports, comparisons and charts: bench_report.ts,
// bench_svg.ts.

import { z } from "zod";
import type { Comparison } from "./bench_report.ts";
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
  // Derived columns (optional: reports written before them stay valid).
  /** median time / (b·T) in microseconds, for shapes with `T` and `b` (or `B`). */
  us_per_token: z.number().nonnegative().optional(),
  /** GFLOP/s / the run's matmul ceiling. */
  matmul_fraction: z.number().nonnegative().optional(),
  /** GB/s / the run's device-copy bandwidth. */
  copy_fraction: z.number().nonnegative().optional(),
  /**
   * With --profile: GPU time per kernel in one more run of the case, each dispatch timed in a pass of its
   * own (so the sum can exceed the median: the passes serialise), largest first.
   */
  profile: z.array(z.object({
    kernel: z.string(),
    calls: z.number().int().positive(),
    ms: z.number().nonnegative(),
  })).optional(),
});

/** The adapter's ceilings, measured in the same run (null: not measured, e.g. no matmul case selected). */
export const CeilingsSchema = z.object({
  copy: z.object({
    /** GB/s of the copy (bytes read + written per second). */
    gbs: z.number().nonnegative(),
    /** Size of the copied buffer. */
    bytes: z.number().int().positive(),
    median_ms: z.number().nonnegative(),
  }).nullable(),
  matmul: z.object({
    /** Best GFLOP/s of the run's `matmul` cases, and the shape that reached it. */
    gflops: z.number().nonnegative(),
    shape: z.record(z.string(), z.union([z.number(), z.string()])),
  }).nullable(),
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
  ceilings: CeilingsSchema.optional(),
  cases: z.array(CaseResultSchema),
});

export type CaseResult = z.infer<typeof CaseResultSchema>;
export type BenchReport = z.infer<typeof BenchReportSchema>;
export type Ceilings = z.infer<typeof CeilingsSchema>;

/** Name of the cases whose best GFLOP/s is the compute ceiling of a run. */
export const MATMUL_CEILING_CASE = "matmul";

export interface RunOptions {
  quick: boolean;
  /** Only cases whose name contains one of these strings. */
  filter?: string[];
  warmup?: number;
  repeats?: number;
  /** Force wall-clock timing even when timestamps are available. */
  wallClock?: boolean;
  /** Time each kernel too (one more run per case, needs timestamp queries): CaseResult.profile. */
  profile?: boolean;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /**
   * The device-copy probe (GB/s = the memory ceiling), run first; with it the report gets `ceilings`
   * (the matmul ceiling is the best `matmul` case of the run).
   */
  copyProbe?: BenchCase;
}

export async function runBench(
  gpu: Gpu,
  cases: readonly BenchCase[],
  opts: RunOptions,
): Promise<BenchReport> {
  const timing = gpu.features["timestamp-query"] && !opts.wallClock ? "gpu-timestamps" : "wall-clock";
  const selected = cases.filter((c) => !opts.filter?.length || opts.filter.some((f) => c.name.includes(f)));
  if (opts.profile && timing !== "gpu-timestamps") {
    throw new TnlError(
      "usage",
      "--profile needs GPU timestamps (the adapter lacks timestamp-query, or --wall-clock)",
    );
  }
  if (opts.filter?.length && selected.length === 0) {
    throw new TnlError(
      "usage",
      `no benchmark case matches ${opts.filter.map((f) => `'${f}'`).join(", ")}; cases: ${
        cases.map((c) => c.name).join(", ")
      }`,
    );
  }
  let copy: Ceilings["copy"] = null;
  if (opts.copyProbe) {
    const shape = opts.copyProbe.shapes(opts.quick)[0];
    opts.log?.(`bench ${opts.copyProbe.name} ${formatShape(shape)} (ceiling) ...`);
    const probe = await runCase(gpu, opts.copyProbe, shape, timing, opts);
    const gbs = probe.throughput.find((t) => t.unit === "GB/s");
    if (gbs) copy = { gbs: gbs.value, bytes: Number(shape.bytes), median_ms: probe.median_ms };
  }
  const results: CaseResult[] = [];
  for (const c of selected) {
    for (const shape of c.shapes(opts.quick)) {
      opts.log?.(`bench ${c.name} ${formatShape(shape)} ...`);
      const result = await runCase(gpu, c, shape, timing, opts);
      for (const line of formatProfile(result)) opts.log?.(line);
      results.push(result);
    }
  }
  const ceilings = opts.copyProbe ? { copy, matmul: matmulCeiling(results) } : undefined;
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
    ...(ceilings ? { ceilings } : {}),
    cases: results.map((c) => withDerivedColumns(c, ceilings)),
  };
}

/** The best GFLOP/s of the `matmul` cases, or null without any. */
export function matmulCeiling(cases: readonly CaseResult[]): Ceilings["matmul"] {
  let best: Ceilings["matmul"] = null;
  for (const c of cases) {
    if (c.name !== MATMUL_CEILING_CASE) continue;
    const g = throughputOf(c, "GFLOP/s");
    if (g !== undefined && (!best || g > best.gflops)) best = { gflops: g, shape: c.shape };
  }
  return best;
}

export function throughputOf(
  c: CaseResult,
  unit: CaseResult["throughput"][number]["unit"],
): number | undefined {
  return c.throughput.find((t) => t.unit === unit)?.value;
}

/** Tokens of one repeat by the shape: b·T (or B·T), when both are numbers. */
export function tokensOfShape(shape: BenchShape): number | undefined {
  const T = shape.T, b = shape.b ?? shape.B;
  return typeof T === "number" && typeof b === "number" && T > 0 && b > 0 ? b * T : undefined;
}

/** The case with its derived columns: time per token, fractions of the ceilings. */
export function withDerivedColumns(c: CaseResult, ceilings: Ceilings | undefined): CaseResult {
  const out: CaseResult = { ...c };
  const tokens = tokensOfShape(c.shape);
  if (tokens) out.us_per_token = (c.median_ms * 1e3) / tokens;
  const gflops = throughputOf(c, "GFLOP/s"), gbs = throughputOf(c, "GB/s");
  if (gflops !== undefined && ceilings?.matmul?.gflops) out.matmul_fraction = gflops / ceilings.matmul.gflops;
  if (gbs !== undefined && ceilings?.copy?.gbs) out.copy_fraction = gbs / ceilings.copy.gbs;
  return out;
}

export async function runCase(
  gpu: Gpu,
  c: BenchCase,
  shape: BenchShape,
  timing: "gpu-timestamps" | "wall-clock",
  opts: Pick<RunOptions, "quick" | "warmup" | "repeats" | "profile">,
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
    const profile = opts.profile && !run.measure ? await profileRun(gpu, run, c.name) : undefined;
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
      ...(profile ? { profile } : {}),
    };
  } finally {
    run.dispose();
  }
}

/** GPU time per kernel of one run, each dispatch in a pass of its own; largest total first. */
async function profileRun(
  gpu: Gpu,
  run: BenchRun,
  name: string,
): Promise<NonNullable<CaseResult["profile"]>> {
  const step = gpu.step(`${name} profile`);
  step.enableProfile();
  run.encode(step);
  step.submit();
  const per = new Map<string, { calls: number; ms: number }>();
  for (const { kernel, ms } of await step.profileTimes()) {
    const e = per.get(kernel) ?? { calls: 0, ms: 0 };
    e.calls++;
    e.ms += ms;
    per.set(kernel, e);
  }
  return [...per].map(([kernel, e]) => ({ kernel, ...e })).sort((a, b) => b.ms - a.ms);
}

/** Lines of a case's profile (none without one): kernel, calls, total ms, share of the profiled sum. */
export function formatProfile(c: CaseResult): string[] {
  if (!c.profile?.length) return [];
  const total = c.profile.reduce((s, p) => s + p.ms, 0);
  const width = Math.max(...c.profile.map((p) => p.kernel.length));
  return [
    `profile ${c.name} ${formatShape(c.shape)}: ${total.toFixed(3)} ms in ${
      c.profile.reduce((s, p) => s + p.calls, 0)
    } dispatches (median of the timed runs ${c.median_ms.toFixed(3)} ms)`,
    ...c.profile.map((p) =>
      `  ${p.kernel.padEnd(width)} ${String(p.calls).padStart(5)} × ${
        (p.ms / p.calls * 1e3).toFixed(1).padStart(9)
      } µs = ${p.ms.toFixed(3).padStart(9)} ms ${(100 * p.ms / total).toFixed(1).padStart(5)}%`
    ),
  ];
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

/** A ratio for a table cell: 3 decimals, or 3 significant digits when large. */
export function formatRatio(ratio: number): string {
  if (!Number.isFinite(ratio)) return "∞×";
  return `${ratio < 100 ? ratio.toFixed(3) : ratio.toPrecision(3)}×`;
}

function formatMs(ms: number): string {
  return ms.toFixed(3);
}

/** Three significant digits, without exponents for the sizes a report shows. */
export function formatSignificant(v: number): string {
  if (v === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v))));
  return v.toFixed(Math.min(digits, 6));
}

function formatPercent(fraction: number): string {
  return `${(100 * fraction).toFixed(fraction >= 0.1 ? 0 : 1)}%`;
}

/** The "vs ceiling" cell: the case's fraction of the matmul ceiling and/or the copy bandwidth. */
export function formatCeilingFraction(c: CaseResult): string {
  const parts: string[] = [];
  if (c.matmul_fraction !== undefined) parts.push(`${formatPercent(c.matmul_fraction)} matmul`);
  if (c.copy_fraction !== undefined) parts.push(`${formatPercent(c.copy_fraction)} copy`);
  return parts.join(", ") || "-";
}

/** The ceilings as one line ("" when the run has none). */
export function formatCeilings(r: BenchReport): string {
  if (!r.ceilings) return "";
  const copy = r.ceilings.copy
    ? `device copy ${formatThroughput({ value: r.ceilings.copy.gbs, unit: "GB/s" })} (${
      r.ceilings.copy.bytes / 2 ** 20
    } MiB buffer)`
    : "device copy not measured";
  const mm = r.ceilings.matmul
    ? `matmul ${formatThroughput({ value: r.ceilings.matmul.gflops, unit: "GFLOP/s" })} (${
      formatShape(r.ceilings.matmul.shape)
    })`
    : "matmul not measured (no matmul case ran)";
  return `ceilings: ${copy}; ${mm}`;
}

export function timingNote(r: BenchReport): string {
  return r.timing === "gpu-timestamps"
    ? "GPU time from timestamp queries"
    : "wall-clock time (this device has no timestamp queries)";
}

/** Columns of the report tables (text and Markdown): header, cells per case, right-aligned columns. */
export function reportTable(
  r: BenchReport,
  comparison?: Comparison,
): { head: string[]; rows: string[][]; right: boolean[] } {
  const head = [
    "case",
    "shape",
    "median ms",
    "min ms",
    "max ms",
    "throughput",
    "vs ceiling",
    "µs/token",
    "GPU MiB",
  ];
  const right = [false, false, true, true, true, false, false, true, true];
  if (comparison) {
    head.push("vs base", "verdict");
    right.push(true, false);
  }
  const rows = r.cases.map((c, i) => {
    const row = [
      c.name,
      formatShape(c.shape),
      formatMs(c.median_ms),
      formatMs(c.min_ms),
      formatMs(c.max_ms),
      c.throughput.map(formatThroughput).join(", ") || "-",
      formatCeilingFraction(c),
      c.us_per_token !== undefined ? formatSignificant(c.us_per_token) : "-",
      c.peak_bytes ? `${(c.peak_bytes / 2 ** 20).toFixed(1)}` : "-",
    ];
    if (comparison) {
      const d = comparison.byCurrentIndex[i];
      row.push(d ? formatRatio(d.ratio) : "-", d ? d.verdict : "new");
    }
    return row;
  });
  return { head, rows, right };
}

/** The human table of a report (stdout of `tnl bench`), with the comparison's columns when given. */
export function formatReport(r: BenchReport, comparison?: Comparison): string {
  const { head, rows, right } = reportTable(r, comparison);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (right[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join("  ")
      .trimEnd();
  const ceilings = formatCeilings(r);
  return [
    `adapter: ${r.adapter.description}${r.adapter.fallback ? " (software fallback)" : ""}; ${timingNote(r)}` +
    `; ${r.cases[0]?.repeats ?? 0} repeats`,
    ...(ceilings ? [ceilings] : []),
    line(head),
    ...rows.map(line),
  ].join("\n");
}
