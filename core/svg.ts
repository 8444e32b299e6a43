// Charts as standalone SVG (no browser needed to produce them): line charts with linear or log axes, ticks,
// labels, a legend, optional min–max whiskers and hover text; plain SVG 1.1, every text escaped. Used by the
// benchmark reports (bench_svg.ts) and the loss curves of training runs.

export interface Point {
  x: number;
  y: number;
  lo?: number;
  hi?: number;
  tip: string;
}

export interface Series {
  name: string;
  points: Point[];
}

export interface Axis {
  label: string;
  log: boolean;
  /** Use the data's x values as ticks (few distinct values, e.g. the T sweep). */
  dataTicks?: boolean;
}

export interface Chart {
  title: string;
  x: Axis;
  y: Axis;
  series: Series[];
}

const WIDTH = 900;
const CHART_HEIGHT = 400;
const MARGIN = { left: 84, right: 230, top: 48, bottom: 64 };
const HEADER = 56;
const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#79706e",
];
const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;")
    // characters XML 1.0 does not allow at all
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "?");
}

/** 1, 2, 5 · 10^k */
function niceValues(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) out.push(m * 10 ** e);
  }
  return out.map((v) => Number(v.toPrecision(12)));
}

interface Scale {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
}

function makeScale(values: number[], axis: Axis): Scale {
  const min = Math.min(...values), max = Math.max(...values);
  if (axis.log) {
    if (axis.dataTicks) {
      const ticks = [...new Set(values)].sort((a, b) => a - b);
      if (ticks.length <= 8) return { lo: min / 1.3, hi: max * 1.3, log: true, ticks };
    }
    const nice = niceValues(min, max);
    const lo = [...nice].reverse().find((v) => v <= min * (1 + 1e-9)) ?? min;
    const hi = nice.find((v) => v >= max * (1 - 1e-9)) ?? max;
    const [a, b] = lo === hi ? [lo / 2, hi * 2] : [lo, hi];
    let ticks = nice.filter((v) => v >= a * (1 - 1e-9) && v <= b * (1 + 1e-9));
    if (ticks.length > 10) {
      ticks = ticks.filter((v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9);
    }
    return { lo: a, hi: b, log: true, ticks };
  }
  if (axis.dataTicks) {
    const ticks = [...new Set(values)].sort((a, b) => a - b);
    if (ticks.length <= 8) {
      const pad = max > min ? (max - min) * 0.06 : Math.max(1, Math.abs(max) * 0.5);
      return { lo: min - pad, hi: max + pad, log: false, ticks };
    }
  }
  const top = max > 0 ? max : 1;
  const raw = top / 5;
  const step = [1, 2, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw) ?? raw;
  const lo = Math.min(0, Math.floor(min / step) * step), hi = Math.ceil(top / step) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo, hi, log: false, ticks };
}

function position(s: Scale, v: number, from: number, to: number): number {
  const t = s.log
    ? (Math.log(v) - Math.log(s.lo)) / (Math.log(s.hi) - Math.log(s.lo))
    : (v - s.lo) / (s.hi - s.lo);
  return from + t * (to - from);
}

export function formatTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e5) return String(v);
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  return trim(v);
}

function trim(v: number): string {
  return String(Number(v.toPrecision(3)));
}

const f1 = (v: number) => v.toFixed(1);

function renderChart(chart: Chart, top: number, out: string[]): void {
  const x0 = MARGIN.left, x1 = WIDTH - MARGIN.right;
  const y0 = top + MARGIN.top, y1 = top + CHART_HEIGHT - MARGIN.bottom;
  const points = chart.series.flatMap((s) => s.points);
  const xs = makeScale(points.map((p) => p.x), chart.x);
  const ys = makeScale(points.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]), chart.y);
  const X = (v: number) => position(xs, v, x0, x1), Y = (v: number) => position(ys, v, y1, y0);
  out.push(`<g class="chart">`);
  out.push(`<text class="title" x="${f1(x0)}" y="${f1(top + 28)}">${escapeXml(chart.title)}</text>`);
  out.push(`<rect class="plot" x="${f1(x0)}" y="${f1(y0)}" width="${f1(x1 - x0)}" height="${f1(y1 - y0)}"/>`);
  out.push(`<g class="axis x">`);
  for (const t of xs.ticks) {
    const x = X(t);
    out.push(`<line class="grid" x1="${f1(x)}" y1="${f1(y0)}" x2="${f1(x)}" y2="${f1(y1)}"/>`);
    out.push(`<line class="tick" x1="${f1(x)}" y1="${f1(y1)}" x2="${f1(x)}" y2="${f1(y1 + 5)}"/>`);
    out.push(
      `<text class="tick-label" x="${f1(x)}" y="${f1(y1 + 19)}" text-anchor="middle">${formatTick(t)}</text>`,
    );
  }
  out.push(
    `<text class="axis-label" x="${f1((x0 + x1) / 2)}" y="${f1(y1 + 44)}" text-anchor="middle">${
      escapeXml(chart.x.label)
    }</text>`,
  );
  out.push(`</g>`, `<g class="axis y">`);
  for (const t of ys.ticks) {
    const y = Y(t);
    out.push(`<line class="grid" x1="${f1(x0)}" y1="${f1(y)}" x2="${f1(x1)}" y2="${f1(y)}"/>`);
    out.push(`<line class="tick" x1="${f1(x0 - 5)}" y1="${f1(y)}" x2="${f1(x0)}" y2="${f1(y)}"/>`);
    out.push(
      `<text class="tick-label" x="${f1(x0 - 8)}" y="${f1(y + 4)}" text-anchor="end">${formatTick(t)}</text>`,
    );
  }
  const ly = (y0 + y1) / 2;
  out.push(
    `<text class="axis-label" x="${f1(x0 - 62)}" y="${f1(ly)}" text-anchor="middle" transform="rotate(-90 ${
      f1(x0 - 62)
    } ${f1(ly)})">${escapeXml(chart.y.label)}</text>`,
  );
  out.push(`</g>`);
  chart.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length], dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
    const style = `stroke="${color}"${dash ? ` stroke-dasharray="${dash}"` : ""}`;
    out.push(`<g class="series" data-case="${escapeXml(s.name)}">`);
    if (s.points.length > 1) {
      const pts = s.points.map((p) => `${f1(X(p.x))},${f1(Y(p.y))}`).join(" ");
      out.push(`<polyline class="line" points="${pts}" fill="none" stroke-width="2" ${style}/>`);
    }
    for (const p of s.points) {
      if (p.lo !== undefined && p.hi !== undefined && p.hi > p.lo) {
        out.push(
          `<line class="whisker" x1="${f1(X(p.x))}" y1="${f1(Y(p.lo))}" x2="${f1(X(p.x))}" y2="${
            f1(Y(p.hi))
          }" stroke="${color}"/>`,
        );
      }
      out.push(
        `<circle cx="${f1(X(p.x))}" cy="${f1(Y(p.y))}" r="3.5" fill="${color}"><title>${
          escapeXml(p.tip)
        }</title></circle>`,
      );
    }
    out.push(`</g>`);
  });
  out.push(`<g class="legend">`);
  chart.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length], dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
    const y = y0 + 10 + i * 20, x = x1 + 16;
    out.push(
      `<line x1="${f1(x)}" y1="${f1(y)}" x2="${f1(x + 22)}" y2="${f1(y)}" stroke="${color}" stroke-width="2"${
        dash ? ` stroke-dasharray="${dash}"` : ""
      }/>`,
    );
    out.push(`<circle cx="${f1(x + 11)}" cy="${f1(y)}" r="3.5" fill="${color}"/>`);
    out.push(`<text class="legend-label" x="${f1(x + 30)}" y="${f1(y + 4)}">${escapeXml(s.name)}</text>`);
  });
  out.push(`</g>`, `</g>`);
}

/** The report's charts as a standalone SVG document. */
/** Charts stacked in one SVG document under a header of up to two lines. */
export function renderCharts(header: string[], charts: Chart[], emptyNote = "nothing to chart"): string {
  const height = HEADER + Math.max(1, charts.length) * CHART_HEIGHT;
  const out = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${WIDTH}" height="${height}" ` +
    `viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<style>.plot{fill:none;stroke:#444}.grid{stroke:#e4e4e4}.tick{stroke:#444}.title{font-size:15px;` +
    `font-weight:bold}.header{font-size:13px}.axis-label{font-size:13px}.whisker{stroke-width:1.5}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...header.slice(0, 2).map((h, i) =>
      `<text class="header" x="16" y="${22 + 20 * i}">${escapeXml(h)}</text>`
    ),
  ];
  if (!charts.length) out.push(`<text x="16" y="${HEADER + 40}">${escapeXml(emptyNote)}</text>`);
  charts.forEach((c, i) => renderChart(c, HEADER + i * CHART_HEIGHT, out));
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** One chart of simple (x, y) series, e.g. loss against step. */
export function lineChart(o: {
  header: string[];
  title: string;
  x: Axis;
  y: Axis;
  series: { name: string; points: [number, number][] }[];
}): string {
  const series = o.series
    .map((s) => ({
      name: s.name,
      points: s.points.filter(([x, y]) =>
        Number.isFinite(x) && Number.isFinite(y) && (!o.x.log || x > 0) && (!o.y.log || y > 0)
      )
        .map(([x, y]) => ({ x, y, tip: `${s.name}: ${formatTick(x)}, ${y.toPrecision(5)}` })),
    }))
    .filter((s) => s.points.length);
  return renderCharts(
    o.header,
    series.length ? [{ title: o.title, x: o.x, y: o.y, series }] : [],
    "no data yet",
  );
}
