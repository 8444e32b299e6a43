// What `tnl bench` makes of a report besides its table: reading a saved report back (validated against
// the schema), comparing a run with a saved one (`--compare BASE.json`: per-case ratios of the median time,
// a regression when a matched case grew by more than the threshold), and the Markdown of a run for a pull
// request comment. Charts are in bench_svg.ts.

import {
  type BenchReport,
  BenchReportSchema,
  type BenchShape,
  type CaseResult,
  formatCeilings,
  formatShape,
  reportTable,
  timingNote,
} from "./bench.ts";
import { ioError, TnlError } from "./errors.ts";

/** Reads and validates a saved report; every failure is one line naming the file. */
export async function readReport(path: string): Promise<BenchReport> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw ioError("read", path, e);
  }
  return parseReport(text, path);
}

export function parseReport(text: string, path: string): BenchReport {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new TnlError("input", `${path}: not a tnl bench report: not JSON (${(e as Error).message})`);
  }
  const schema = (raw as { schema?: unknown } | null)?.schema;
  if (typeof schema === "string" && schema.startsWith("tnl-bench/") && schema !== "tnl-bench/1") {
    throw new TnlError(
      "input",
      `${path}: report schema '${schema}' is not supported; this tnl reads tnl-bench/1`,
    );
  }
  const parsed = BenchReportSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length ? issue.path.join(".") : "top level";
    throw new TnlError(
      "input",
      `${path}: not a tnl bench report (schema tnl-bench/1): ${where}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** One case present in both runs. */
export interface CaseDelta {
  name: string;
  shape: BenchShape;
  base_ms: number;
  median_ms: number;
  /** median_ms / base_ms */
  ratio: number;
  /** `slower`: grew by more than the threshold (a regression); `faster`: shrank by more than it. */
  verdict: "slower" | "ok" | "faster";
}

export interface Comparison {
  baseFile: string;
  base: Pick<BenchReport, "git_commit" | "date" | "adapter" | "timing" | "quick">;
  thresholdPct: number;
  /** Matched cases in the order of the current run. */
  matched: CaseDelta[];
  /** Per case of the current run, its match (null: not in the base run). */
  byCurrentIndex: (CaseDelta | null)[];
  /** In the base run only. */
  missing: { name: string; shape: BenchShape }[];
  /** In the current run only. */
  added: { name: string; shape: BenchShape }[];
  regressions: CaseDelta[];
  /** Differences of the setting that make the ratios doubtful (adapter, timing method, --quick). */
  notes: string[];
}

/** Cases match by name and shape; the order of a shape's keys does not matter. */
export function caseKey(c: { name: string; shape: BenchShape }): string {
  const entries = Object.entries(c.shape).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([c.name, entries]);
}

/**
 * Compares `current` with `base`: a matched case is a regression when its median time grew by strictly
 * more than `thresholdPct` percent (a growth of exactly the threshold is not, up to rounding of the
 * division). Throughput is derived from the times and is not judged.
 */
export function compareReports(
  base: BenchReport,
  current: BenchReport,
  thresholdPct: number,
  baseFile = "base",
): Comparison {
  if (!(thresholdPct >= 0) || !Number.isFinite(thresholdPct)) {
    throw new TnlError("usage", `--threshold ${thresholdPct}: expected a percentage ≥ 0`);
  }
  const pool = new Map<string, CaseResult[]>();
  for (const c of base.cases) {
    const k = caseKey(c);
    pool.set(k, [...(pool.get(k) ?? []), c]);
  }
  const limit = 1 + thresholdPct / 100;
  const byCurrentIndex = current.cases.map((c): CaseDelta | null => {
    const old = pool.get(caseKey(c))?.shift();
    if (!old) return null;
    const ratio = old.median_ms > 0 ? c.median_ms / old.median_ms : c.median_ms > 0 ? Infinity : 1;
    // 1e-12: a ratio that equals the limit but for the rounding of the division is not over it
    const verdict = ratio > limit * (1 + 1e-12) ? "slower" : ratio < 1 / limit ? "faster" : "ok";
    return { name: c.name, shape: c.shape, base_ms: old.median_ms, median_ms: c.median_ms, ratio, verdict };
  });
  const matched = byCurrentIndex.filter((d): d is CaseDelta => d !== null);
  const missing = [...pool.values()].flat().map((c) => ({ name: c.name, shape: c.shape }));
  const added = current.cases.filter((_, i) => !byCurrentIndex[i]).map((c) => ({
    name: c.name,
    shape: c.shape,
  }));
  const notes: string[] = [];
  if (base.adapter.description !== current.adapter.description) {
    notes.push(`the base ran on '${base.adapter.description}', this run on '${current.adapter.description}'`);
  }
  if (base.timing !== current.timing) {
    notes.push(`the base was timed by ${base.timing}, this run by ${current.timing}`);
  }
  if (base.quick !== current.quick) {
    notes.push(
      `the base ran ${base.quick ? "with" : "without"} --quick, this run ${
        current.quick ? "with" : "without"
      }`,
    );
  }
  return {
    baseFile,
    base: {
      git_commit: base.git_commit,
      date: base.date,
      adapter: base.adapter,
      timing: base.timing,
      quick: base.quick,
    },
    thresholdPct,
    matched,
    byCurrentIndex,
    missing,
    added,
    regressions: matched.filter((d) => d.verdict === "slower"),
    notes,
  };
}

function growth(d: CaseDelta): string {
  const pct = (d.ratio - 1) * 100;
  if (!Number.isFinite(pct)) return "+∞%";
  return `${pct >= 0 ? "+" : ""}${Math.abs(pct) < 1e4 ? pct.toFixed(1) : pct.toPrecision(3)}%`;
}

const caseLabel = (c: { name: string; shape: BenchShape }) => `${c.name} (${formatShape(c.shape)})`;

/** The verdict of a comparison in one line (the first `listed` regressions named, the slowest first). */
export function comparisonVerdict(cmp: Comparison, listed = 5): string {
  const n = cmp.regressions.length;
  const of = `of ${cmp.matched.length} matched case${cmp.matched.length === 1 ? "" : "s"}`;
  if (n === 0) return `no case ${of} is slower than ${cmp.baseFile} by more than ${cmp.thresholdPct}%`;
  const worst = [...cmp.regressions].sort((a, b) => b.ratio - a.ratio);
  const names = worst.slice(0, listed).map((d) => `${caseLabel(d)} ${growth(d)}`);
  if (n > listed) names.push(`and ${n - listed} more`);
  return `${n} ${of} slower than ${cmp.baseFile} by more than ${cmp.thresholdPct}%: ${names.join(", ")}`;
}

/** What the table does not show: base run, cases on one side only, setting differences, the verdict. */
export function formatComparisonSummary(cmp: Comparison): string {
  const lines = [
    `compared with ${cmp.baseFile} (commit ${shortCommit(cmp.base.git_commit)}, ${cmp.base.date}); ` +
    `ratio = median / base median; threshold +${cmp.thresholdPct}%`,
  ];
  for (const n of cmp.notes) lines.push(`note: ${n}`);
  if (cmp.missing.length) {
    lines.push(`not in this run (not judged): ${cmp.missing.map(caseLabel).join(", ")}`);
  }
  if (cmp.added.length) lines.push(`new in this run (not judged): ${cmp.added.map(caseLabel).join(", ")}`);
  lines.push(`verdict: ${comparisonVerdict(cmp)}`);
  return lines.join("\n");
}

function shortCommit(c: string | null): string {
  return c ? c.slice(0, 12) : "unknown";
}

function markdownCell(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/** The run as Markdown for a pull request comment: a header line, one table, the comparison. */
export function formatMarkdown(r: BenchReport, comparison?: Comparison): string {
  const groups = [...new Set(r.cases.map((c) => c.group))].join(", ") || "no cases";
  const adapter = `${r.adapter.description}${r.adapter.fallback ? " (software fallback)" : ""}`;
  const out = [
    `**tnl bench** (${groups}${r.quick ? ", quick" : ""}): adapter ${markdownCell(adapter)} · ${
      timingNote(r)
    } · ` +
    `commit \`${shortCommit(r.git_commit)}\` · ${r.date} · Deno ${r.runtime.deno}`,
    "",
  ];
  const ceilings = formatCeilings(r);
  if (ceilings) out.push(markdownCell(ceilings), "");
  const { head, rows, right } = reportTable(r, comparison);
  out.push(`| ${head.map(markdownCell).join(" | ")} |`);
  out.push(`|${right.map((ri) => (ri ? " ---: " : " --- ")).join("|")}|`);
  for (const row of rows) {
    const cells = row.map((cell, i) => {
      const text = markdownCell(cell);
      return comparison && head[i] === "verdict" && cell === "slower" ? `**${text}**` : text;
    });
    out.push(`| ${cells.join(" | ")} |`);
  }
  if (comparison) {
    out.push("");
    for (const line of formatComparisonSummary(comparison).split("\n")) out.push(`- ${markdownCell(line)}`);
  }
  return out.join("\n") + "\n";
}
