// Reports of `tnl bench` on synthetic runs (no GPU, no timing asserted): the schema with its optional
// ceilings and derived columns, --compare (faster, slower, missing and new cases, the threshold edge),
// the Markdown table, the SVG charts (well-formed XML, one series per kernel), and the CLI's exit codes.

import assert from "node:assert/strict";
import {
  type BenchReport,
  BenchReportSchema,
  type CaseResult,
  formatReport,
  matmulCeiling,
  withDerivedColumns,
} from "../core/bench.ts";
import {
  caseKey,
  compareReports,
  comparisonVerdict,
  formatMarkdown,
  parseReport,
  readReport,
} from "../core/bench_report.ts";
import { chartsOf, renderSvg } from "../core/bench_svg.ts";
import { EXIT_CODES, TnlError } from "../core/errors.ts";
import { REPO_ROOT } from "./_gpu.ts";
import { tnl as runTnl } from "./_cli.ts";
import { allElements, parseXml, type XmlElement } from "./_xml.ts";

function benchCase(
  name: string,
  shape: CaseResult["shape"],
  median: number,
  extra: Partial<CaseResult> = {},
) {
  return {
    name,
    group: "kernels" as const,
    shape,
    repeats: 3,
    warmup: 1,
    median_ms: median,
    min_ms: median * 0.9,
    max_ms: median * 1.2,
    throughput: [],
    peak_bytes: 1 << 20,
    ...extra,
  } satisfies CaseResult;
}

function report(cases: CaseResult[], extra: Partial<BenchReport> = {}): BenchReport {
  return {
    schema: "tnl-bench/1",
    tnl: "0.1.0",
    git_commit: "0123456789abcdef0123456789abcdef01234567",
    date: "2026-01-02T03:04:05.000Z",
    runtime: { deno: "2.9.6", v8: "13", typescript: "5.9" },
    adapter: {
      description: "Test Adapter | rev 1",
      vendor: "test",
      architecture: "",
      device: "",
      fallback: false,
      subgroupMinSize: null,
      subgroupMaxSize: null,
      backend: null,
    },
    features: { "timestamp-query": true },
    timing: "gpu-timestamps",
    quick: true,
    cases,
    ...extra,
  };
}

const attention = ["lightning-fwd", "lightning-fwdbwd", "naive-linear-fwd", "softmax-flash-fwd"];

function kernelsReport(): BenchReport {
  const cases: CaseResult[] = [
    benchCase("matmul", { op: "nn", m: 256, n: 256, k: 256 }, 2, {
      throughput: [{ value: 8, unit: "GFLOP/s" }],
    }),
    benchCase("matmul", { op: "nt", m: 255, n: 257, k: 129 }, 1, {
      throughput: [{ value: 10, unit: "GFLOP/s" }],
    }),
    benchCase("srmsnorm-fwd", { rows: 256, d: 256 }, 0.5, { throughput: [{ value: 3, unit: "GB/s" }] }),
  ];
  attention.forEach((name, j) => {
    for (const T of [128, 300, 768]) {
      cases.push(benchCase(name, { b: 1, h: 2, T, d: 64, e: 32 }, (j + 1) * T * 0.01, {
        throughput: [{ value: 2, unit: "GFLOP/s" }, { value: 1e5, unit: "tokens/s" }],
      }));
    }
  });
  const ceilings = { copy: { gbs: 12, bytes: 16 << 20, median_ms: 2.8 }, matmul: matmulCeiling(cases) };
  return report(cases.map((c) => withDerivedColumns(c, ceilings)), { ceilings });
}

// ---------------------------------------------------------------- schema and derived columns

Deno.test("schema: reports without ceilings or derived columns stay valid; malformed new fields are rejected", () => {
  const old = report([benchCase("a", { m: 1 }, 1)]);
  BenchReportSchema.parse(old);
  const r = kernelsReport();
  assert.deepEqual(BenchReportSchema.parse(r), r, "nothing is dropped");
  assert.throws(() =>
    BenchReportSchema.parse({ ...r, ceilings: { copy: { gbs: -1, bytes: 1, median_ms: 1 } } })
  );
  assert.throws(
    () => BenchReportSchema.parse({ ...r, ceilings: { copy: null } }),
    "matmul: null or a ceiling",
  );
  assert.throws(() => BenchReportSchema.parse(report([benchCase("a", { m: 1 }, 1, { us_per_token: -2 })])));
  assert.throws(() => BenchReportSchema.parse(report([benchCase("a", { m: 1 }, 1, { copy_fraction: NaN })])));
});

Deno.test("derived columns: time per token from b·T or B·T, fractions of the run's ceilings", () => {
  const ceilings = {
    copy: { gbs: 20, bytes: 1 << 24, median_ms: 1 },
    matmul: { gflops: 50, shape: { m: 1 } },
  };
  const att = withDerivedColumns(
    benchCase("lightning-fwd", { b: 4, h: 16, T: 1024, d: 128, e: 128 }, 8.192, {
      throughput: [{ value: 40, unit: "GFLOP/s" }],
    }),
    ceilings,
  );
  assert.equal(att.us_per_token, (8.192 * 1000) / (4 * 1024));
  assert.equal(att.matmul_fraction, 0.8);
  assert.equal(att.copy_fraction, undefined);
  const step = withDerivedColumns(
    benchCase("train-step", { preset: "tnl-tiny", B: 2, T: 64 }, 1.28),
    undefined,
  );
  assert.equal(step.us_per_token, 10);
  const mem = withDerivedColumns(
    benchCase("srmsnorm-fwd", { rows: 8, d: 8 }, 1, { throughput: [{ value: 5, unit: "GB/s" }] }),
    ceilings,
  );
  assert.equal(mem.copy_fraction, 0.25);
  assert.equal(mem.us_per_token, undefined);
  assert.equal(mem.matmul_fraction, undefined);
  const r = kernelsReport();
  assert.deepEqual(
    r.ceilings?.matmul,
    { gflops: 10, shape: { op: "nt", m: 255, n: 257, k: 129 } },
    "best matmul",
  );
  assert.equal(matmulCeiling(r.cases.filter((c) => c.name !== "matmul")), null);
  assert.match(formatReport(r), /ceilings: device copy 12\.0 GB\/s \(16 MiB buffer\); matmul 10\.0 GFLOP\/s/);
  assert.match(formatReport(r), /80% matmul/);
  assert.match(formatReport(r), /25% copy/);
});

// ---------------------------------------------------------------- --compare

Deno.test("compare: faster, slower, unchanged, missing and new cases; throughput is not judged", () => {
  const base = report([
    benchCase("a", { m: 1, n: 2 }, 10, { throughput: [{ value: 100, unit: "GFLOP/s" }] }),
    benchCase("b", { m: 1 }, 10),
    benchCase("c", { m: 1 }, 10),
    benchCase("gone", { m: 1 }, 10),
    benchCase("b", { m: 2 }, 10), // same name, other shape: a different case
  ]);
  const current = report([
    // shape keys in another order still match; a throughput collapse alone is no regression
    benchCase("a", { n: 2, m: 1 }, 10, { throughput: [{ value: 1, unit: "GFLOP/s" }] }),
    benchCase("b", { m: 1 }, 5),
    benchCase("c", { m: 1 }, 12),
    benchCase("fresh", { m: 1 }, 1),
    benchCase("b", { m: 3 }, 10),
  ]);
  const cmp = compareReports(base, current, 10, "base.json");
  assert.deepEqual(cmp.matched.map((d) => [d.name, d.ratio, d.verdict]), [
    ["a", 1, "ok"],
    ["b", 0.5, "faster"],
    ["c", 1.2, "slower"],
  ]);
  assert.deepEqual(cmp.regressions.map((d) => d.name), ["c"]);
  assert.deepEqual(cmp.missing, [{ name: "gone", shape: { m: 1 } }, { name: "b", shape: { m: 2 } }]);
  assert.deepEqual(cmp.added, [{ name: "fresh", shape: { m: 1 } }, { name: "b", shape: { m: 3 } }]);
  assert.deepEqual(cmp.byCurrentIndex.map((d) => d?.name ?? null), ["a", "b", "c", null, null]);
  assert.equal(
    caseKey({ name: "x", shape: { a: 1, b: "2" } }),
    caseKey({ name: "x", shape: { b: "2", a: 1 } }),
  );
  assert.notEqual(caseKey({ name: "x", shape: { a: 1 } }), caseKey({ name: "x", shape: { a: "1" } }));
  const table = formatReport(current, cmp);
  assert.match(table, /vs base\s+verdict/);
  assert.match(table, /1\.200×\s+slower/);
  assert.match(table, /fresh .* -\s+new$/m);
});

Deno.test("compare: growth exactly at the threshold passes, strictly more fails (default 10% and others)", () => {
  const judge = (old: number, now: number, pct: number) =>
    compareReports(report([benchCase("k", { n: 1 }, old)]), report([benchCase("k", { n: 1 }, now)]), pct)
      .matched[0].verdict;
  assert.equal(judge(10, 11, 10), "ok"); // +10% at the default threshold
  assert.equal(judge(10, 11.000001, 10), "slower");
  assert.equal(judge(4, 5, 25), "ok");
  assert.equal(judge(4, 5.0001, 25), "slower");
  assert.equal(judge(3, 3.3, 10), "ok"); // 3.3 / 3 rounds to just above 1.1 in binary
  assert.equal(judge(0.7, 0.77, 10), "ok");
  assert.equal(judge(2, 2, 0), "ok");
  const many = compareReports(
    report([1, 2, 3, 4, 5, 6, 7].map((n) => benchCase("k", { n }, 1))),
    report([1, 2, 3, 4, 5, 6, 7].map((n) => benchCase("k", { n }, 1 + n))),
    10,
    "b.json",
  );
  assert.equal(
    comparisonVerdict(many),
    "7 of 7 matched cases slower than b.json by more than 10%: k (n=7) +700.0%, k (n=6) +600.0%, " +
      "k (n=5) +500.0%, k (n=4) +400.0%, k (n=3) +300.0%, and 2 more",
  );
  assert.equal(judge(2, 2.000001, 0), "slower");
  assert.equal(judge(0, 0, 10), "ok");
  assert.equal(judge(0, 1, 10), "slower");
  assert.throws(() => judge(1, 1, -1), (e) => e instanceof TnlError && e.kind === "usage");
});

Deno.test("compare notes a different adapter, timing method or --quick setting", () => {
  const base = report([benchCase("k", { n: 1 }, 1)], { timing: "wall-clock", quick: false });
  const other = report([benchCase("k", { n: 1 }, 1)], {
    adapter: { ...base.adapter, description: "Other GPU" },
  });
  const notes = compareReports(base, other, 10).notes.join("\n");
  assert.match(notes, /'Test Adapter \| rev 1', this run on 'Other GPU'/);
  assert.match(notes, /wall-clock, this run by gpu-timestamps/);
  assert.match(notes, /without --quick, this run with/);
});

Deno.test("a base that is not a report is an input error naming the file and the key", async () => {
  const ok = JSON.stringify(kernelsReport());
  assert.deepEqual(parseReport(ok, "b.json"), kernelsReport());
  const bad = (text: string, pattern: RegExp) =>
    assert.throws(
      () => parseReport(text, "base.json"),
      (e) =>
        e instanceof TnlError && e.kind === "input" && pattern.test(e.message) && !e.message.includes("\n"),
    );
  bad("{", /^base\.json: not a tnl bench report: not JSON/);
  bad("[1, 2]", /^base\.json: not a tnl bench report \(schema tnl-bench\/1\): top level/);
  bad(
    JSON.stringify({ ...kernelsReport(), schema: "tnl-bench/2" }),
    /schema 'tnl-bench\/2' is not supported/,
  );
  const broken = kernelsReport() as unknown as { cases: { median_ms: unknown }[] };
  broken.cases[3].median_ms = "fast";
  bad(JSON.stringify(broken), /: cases\.3\.median_ms: /);
  await assert.rejects(
    () => readReport(`${REPO_ROOT}/no-such-base.json`),
    (e) => e instanceof TnlError && e.kind === "io" && e.message.includes("no-such-base.json"),
  );
});

// ---------------------------------------------------------------- Markdown

Deno.test("markdown: a header line and one table with the same columns in every row; compare columns", () => {
  const r = kernelsReport();
  const base = report(r.cases.slice(1).map((c) => ({ ...c, median_ms: c.median_ms / 2 })));
  const md = formatMarkdown(r, compareReports(base, r, 10, "main.json"));
  const lines = md.trimEnd().split("\n");
  assert.match(lines[0], /^\*\*tnl bench\*\* \(kernels, quick\): adapter Test Adapter \\\| rev 1 · /);
  assert.match(
    lines[0],
    /GPU time from timestamp queries · commit `0123456789ab` · 2026-01-02T03:04:05\.000Z/,
  );
  const table = lines.filter((l) => l.startsWith("|"));
  assert.equal(table.length, 2 + r.cases.length);
  const cells = (l: string) => l.split(/(?<!\\)\|/).length;
  for (const l of table) assert.equal(cells(l), cells(table[0]), l);
  assert.match(
    table[0],
    /\| case \| shape \| median ms \| min ms \| max ms \| throughput \| vs ceiling \| µs\/token \| GPU MiB \| vs base \| verdict \|/,
  );
  assert.match(table[1], /^\| --- \| --- \| ---: \|/);
  assert.match(table[2], /\| matmul \| op=nn m=256 n=256 k=256 \| 2\.000 \| .* \| - \| new \|$/);
  assert.match(table[3], /\| 2\.000× \| \*\*slower\*\* \|$/);
  assert.match(md, /^- verdict: \d+ of \d+ matched cases slower than main\.json by more than 10%: /m);
  assert.doesNotMatch(formatMarkdown(r), /vs base|verdict/);
});

// ---------------------------------------------------------------- SVG

function seriesOfChart(svg: XmlElement, index: number): XmlElement[] {
  const charts = allElements(svg).filter((e) => e.attrs.class === "chart");
  return allElements(charts[index]).filter((e) => e.attrs.class === "series");
}

Deno.test("svg: well-formed XML, time vs T with one series per attention kernel, axes, ticks, legend", () => {
  const svg = parseXml(renderSvg(kernelsReport()));
  assert.equal(svg.name, "svg");
  assert.equal(svg.attrs.xmlns, "http://www.w3.org/2000/svg");
  const series = seriesOfChart(svg, 0);
  assert.deepEqual(series.map((s) => s.attrs["data-case"]), attention);
  for (const s of series) {
    assert.equal(s.children.filter((e) => e.name === "circle").length, 3, "one point per T");
    assert.equal(s.children.filter((e) => e.name === "polyline").length, 1);
  }
  const all = allElements(svg);
  const texts = all.filter((e) => e.name === "text").map((e) => e.text);
  assert.ok(
    texts.includes("sequence length T (tokens)") && texts.includes("median time (ms)"),
    "axis labels",
  );
  for (const t of ["128", "300", "768"]) assert.ok(texts.includes(t), `x tick ${t}`);
  const legend = all.filter((e) => e.attrs.class === "legend-label").map((e) => e.text);
  assert.deepEqual(legend, attention);
  assert.equal(all.filter((e) => e.attrs.class === "chart").length, 1, "no decode cases, no position chart");
  // Both axes are logarithmic: a time proportional to T lies on a straight line.
  const [c128, c300, c768] = series[0].children.filter((e) => e.name === "circle").map((e) => ({
    x: Number(e.attrs.cx),
    y: Number(e.attrs.cy),
  }));
  const slope = (b: { x: number; y: number }, a: { x: number; y: number }) => (a.y - b.y) / (a.x - b.x);
  assert.ok(Math.abs(slope(c128, c300) - slope(c300, c768)) < 0.01, "a power law is a straight line");
});

Deno.test("svg: tokens/s vs position from decode cases; escaped names; an empty report is still valid", () => {
  const cases: CaseResult[] = [
    benchCase("train-step", { preset: "tnl-tiny", B: 1, T: 64 }, 10),
    ...[0, 128, 1024, 4096].flatMap((position) => [
      benchCase("decode", { preset: "tnl-tiny", B: 1, position }, 1, {
        group: "model",
        throughput: [{ value: 1000 - position / 100, unit: "tokens/s" }],
      }),
      benchCase('decode <b&w> "x"', { B: 4, position }, 1, {
        group: "model",
        throughput: [{ value: 3000, unit: "tokens/s" }],
      }),
    ]),
  ];
  const r = report(cases);
  const svg = parseXml(renderSvg(r));
  // train-step ran at one T only: no time-vs-T chart
  assert.deepEqual(chartsOf(r).map((c) => c.title), ["Decode speed vs position"]);
  const decode = seriesOfChart(svg, 0);
  assert.deepEqual(decode.map((s) => s.attrs["data-case"]), ["decode", 'decode <b&w> "x"']);
  assert.equal(decode[0].children.filter((e) => e.name === "circle").length, 4);
  const tips = allElements(decode[0]).filter((e) => e.name === "title").map((e) => e.text);
  assert.match(tips[0], /^decode preset=tnl-tiny B=1 position=0: 1000\.0 tokens\/s$/);
  const positions = allElements(svg).filter((e) => e.attrs.class === "tick-label").map((e) => e.text);
  for (const p of ["0", "128", "1024", "4096"]) assert.ok(positions.includes(p), `x tick ${p}`);
  const empty = parseXml(renderSvg(report([])));
  assert.equal(allElements(empty).filter((e) => e.attrs.class === "series").length, 0);
  assert.ok(allElements(empty).some((e) => /nothing to chart/.test(e.text)));
  assert.throws(() => parseXml("<svg><g></svg>"), /closes <g>/);
  assert.throws(() => parseXml('<svg a="1 & 2"/>'), /bare '&'/);
  assert.throws(() => parseXml('<svg a="1" a="2"/>'), /duplicate attribute/);
  assert.throws(() => parseXml("<svg/><svg/>"), /second root/);
});

// ---------------------------------------------------------------- CLI

/** tnl in the folder `cwd`. */
const tnl = (args: string[], cwd: string) => runTnl(args, { cwd });

Deno.test("tnl bench --compare: bad base, bad flags, a regression exits 9 after writing every report", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${tmp}/notes.json`, JSON.stringify({ hello: "world" }));
    let r = await tnl(["bench", "kernels", "--quick", "--compare", "notes.json"], tmp);
    assert.equal(r.code, EXIT_CODES.input, r.stderr);
    assert.match(r.stderr, /^error: notes\.json: not a tnl bench report \(schema tnl-bench\/1\): schema: /m);
    assert.doesNotMatch(r.stderr, /bench matmul/, "the base is checked before anything runs");
    r = await tnl(["bench", "kernels", "--quick", "--threshold", "5"], tmp);
    assert.equal(r.code, EXIT_CODES.usage);
    assert.match(r.stderr, /--threshold needs --compare/);
    r = await tnl(["bench", "kernels", "--compare", "x.json", "--threshold", "-3"], tmp);
    assert.equal(r.code, EXIT_CODES.usage);
    r = await tnl(["bench", "kernels", "--quick", "--json", "-", "--svg", "-"], tmp);
    assert.equal(r.code, EXIT_CODES.usage);
    assert.match(r.stderr, /--json and --svg both write to stdout/);

    // A base whose only case ran impossibly fast: this run is slower; every report is written first.
    const shape = { rows: 256, d: 256 };
    const base = report([benchCase("srmsnorm-fwd", shape, 1e-9), benchCase("retired", { n: 1 }, 1)]);
    await Deno.writeTextFile(`${tmp}/base.json`, JSON.stringify(base));
    const outs = ["--json", "out/r.json", "--markdown", "out/r.md", "--svg", "out/r.svg"];
    const run = ["bench", "kernels", "--quick", "--filter", "srmsnorm", "--repeats", "2", ...outs];
    r = await tnl([...run, "--compare", "base.json"], tmp);
    assert.equal(r.code, EXIT_CODES.regression, r.stderr);
    assert.match(
      r.stderr,
      /error: 1 of 1 matched case slower than base\.json by more than 10%: srmsnorm-fwd/,
    );
    assert.match(r.stdout, /not in this run \(not judged\): retired \(n=1\)/);
    assert.match(r.stdout, /new in this run \(not judged\): srmsnorm-bwd \(rows=256 d=256\)/);
    const written = BenchReportSchema.parse(JSON.parse(await Deno.readTextFile(`${tmp}/out/r.json`)));
    assert.ok(written.ceilings?.copy && written.ceilings.copy.gbs > 0, "the copy probe ran");
    assert.equal(written.ceilings?.matmul, null, "no matmul case ran");
    assert.deepEqual(written.cases.map((c) => c.name), ["srmsnorm-fwd", "srmsnorm-bwd"]);
    assert.ok(written.cases.every((c) => c.copy_fraction !== undefined), "memory-bound cases vs copy");
    assert.match(await Deno.readTextFile(`${tmp}/out/r.md`), /\*\*slower\*\*/);
    parseXml(await Deno.readTextFile(`${tmp}/out/r.svg`));

    // Slower than the base only within a generous threshold: passes.
    await Deno.writeTextFile(
      `${tmp}/base.json`,
      JSON.stringify(report([benchCase("srmsnorm-fwd", shape, written.cases[0].median_ms)])),
    );
    r = await tnl([...run, "--compare", "base.json", "--threshold", "100000"], tmp);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /verdict: no case of 1 matched case is slower than base\.json by more than 100000%/,
    );

    r = await tnl([...run, "--compare", "missing.json", "--allow-missing-base"], tmp);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no base report at missing\.json: nothing to compare with/);
    r = await tnl([...run, "--compare", "missing.json"], tmp);
    assert.equal(r.code, EXIT_CODES.io);
    assert.match(r.stderr, /cannot read missing\.json: no such file or directory/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
