// Line charts as standalone SVG (no browser needed to produce them): loss curves of training runs.

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  logY?: boolean;
  width?: number;
  height?: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

export function escapeXml(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!,
  );
}

function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
    return out.filter((t) => t >= lo / 1.0001 && t <= hi * 1.0001);
  }
  const span = hi - lo || 1;
  const step = 10 ** Math.floor(Math.log10(span / 5));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 8) ?? step * 10;
  const out: number[] = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi + 1e-9 * span; t += nice) {
    out.push(Number(t.toPrecision(12)));
  }
  return out;
}

function fmt(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(0);
  return Number(x.toPrecision(4)).toString();
}

/** An SVG document with one polyline (and point markers) per series, axes, ticks and a legend. */
export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 720, H = o.height ?? 420;
  const m = { l: 70, r: 170, t: 40, b: 55 };
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) =>
    Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0)
  );
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (x0 === x1) [x0, x1] = o.logX ? [x0 / 2, x1 * 2] : [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = o.logY ? [y0 / 2, y1 * 2] : [y0 - 1, y1 + 1];
  const tx = (x: number) => o.logX ? Math.log10(x) : x, ty = (y: number) => o.logY ? Math.log10(y) : y;
  const px = (x: number) => m.l + ((tx(x) - tx(x0)) / (tx(x1) - tx(x0))) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((ty(y) - ty(y0)) / (ty(y1) - ty(y0))) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(o.title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
  ];
  for (const t of ticks(x0, x1, Boolean(o.logX))) {
    const x = px(t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${H - m.b}" x2="${x}" y2="${H - m.b + 5}" stroke="black"/>`);
    parts.push(`<text x="${x}" y="${H - m.b + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of ticks(y0, y1, Boolean(o.logY))) {
    const y = py(t).toFixed(1);
    parts.push(`<line x1="${m.l - 5}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  parts.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`,
  );
  parts.push(
    `<text x="16" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      (m.t + H - m.b) / 2
    })">${escapeXml(o.yLabel)}</text>`,
  );
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const ok = s.points.filter(([x, y]) =>
      Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0)
    );
    const path = ok.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    parts.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (ok.length > 1) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${path}"/>`);
    }
    for (const [x, y] of ok.length <= 60 ? ok : []) {
      parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="2.5" fill="${color}"/>`);
    }
    parts.push(`</g>`);
    const ly = m.t + 10 + i * 20;
    parts.push(
      `<line x1="${W - m.r + 12}" y1="${ly}" x2="${
        W - m.r + 34
      }" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
    );
    parts.push(`<text x="${W - m.r + 40}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}
