// Charts of a `tnl bench` report as one standalone SVG (`--svg FILE`): the median time against the
// sequence length T, log-log, one series per case whose shapes have a `T` (the attention kernels: lightning
// against naive linear and softmax flash), with min–max whiskers, drawn when a case ran at several T; and
// tokens/s against the position for cases whose shapes have a `position` (decode: the constant-speed curve).
// The drawing is core/svg.ts.

import { type BenchReport, type CaseResult, formatShape, throughputOf } from "./bench.ts";
import { type Chart, type Point, renderCharts, type Series } from "./svg.ts";

/** Groups cases by name into series, in the order the names first appear. */
function seriesOf(cases: CaseResult[], point: (c: CaseResult) => Point | null): Series[] {
  const byName = new Map<string, Point[]>();
  for (const c of cases) {
    const p = point(c);
    if (!p) continue;
    byName.set(c.name, [...(byName.get(c.name) ?? []), p]);
  }
  return [...byName].map(([name, points]) => ({ name, points: points.sort((a, b) => a.x - b.x) }));
}

/** The charts a report has data for. */
export function chartsOf(r: BenchReport): Chart[] {
  const charts: Chart[] = [];
  const timeVsT = seriesOf(r.cases, (c) => {
    const T = c.shape.T;
    if (typeof T !== "number" || T <= 0 || "position" in c.shape || !(c.median_ms > 0)) return null;
    return {
      x: T,
      y: c.median_ms,
      lo: c.min_ms > 0 ? c.min_ms : undefined,
      hi: c.max_ms,
      tip:
        `${c.name} ${formatShape(c.shape)}: median ${c.median_ms.toFixed(3)} ms (min ${
          c.min_ms.toFixed(3)
        }, max ${c.max_ms.toFixed(3)})` +
        (c.us_per_token !== undefined ? `, ${c.us_per_token.toPrecision(3)} µs/token` : ""),
    };
  });
  // A line needs two sizes: a report with one T per case (a model run) has no time-vs-T chart.
  if (timeVsT.some((s) => new Set(s.points.map((p) => p.x)).size > 1)) {
    charts.push({
      title: "Time per repeat vs sequence length T (log-log; whiskers: min–max)",
      x: { label: "sequence length T (tokens)", log: true, dataTicks: true },
      y: { label: "median time (ms)", log: true },
      series: timeVsT,
    });
  }
  const positions = seriesOf(r.cases, (c) => {
    const pos = c.shape.position, tps = throughputOf(c, "tokens/s");
    if (typeof pos !== "number" || tps === undefined) return null;
    return { x: pos, y: tps, tip: `${c.name} ${formatShape(c.shape)}: ${tps.toFixed(1)} tokens/s` };
  });
  if (positions.length) {
    const xs = positions.flatMap((s) => s.points.map((p) => p.x));
    const log = Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) >= 4;
    charts.push({
      title: "Decode speed vs position",
      x: { label: "position in the sequence", log, dataTicks: true },
      y: { label: "tokens/s", log: false },
      series: positions,
    });
  }
  return charts;
}

/** The report's charts as a standalone SVG document. */
export function renderSvg(r: BenchReport): string {
  const adapter = `${r.adapter.description}${r.adapter.fallback ? " (software fallback)" : ""}`;
  return renderCharts(
    [`tnl bench: ${adapter}`, `${r.timing}; commit ${r.git_commit?.slice(0, 12) ?? "unknown"}; ${r.date}`],
    chartsOf(r),
    "nothing to chart: no case of this report ran at several T or at positions",
  );
}
