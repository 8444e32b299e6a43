import assert from "node:assert/strict";
import { type BenchCase, BenchReportSchema, type BenchRun, formatReport, runBench } from "../core/bench.ts";
import { EXIT_CODES, TnlError } from "../core/errors.ts";
import { Tensor } from "../core/tensor.ts";
import { kernelBenchCases } from "../kernels/cases.ts";
import { deviceCopyProbe } from "../kernels/copy.ts";
import { matmul } from "../kernels/matmul.ts";
import { gpuTest, testGpu } from "./_gpu.ts";
import { tnl } from "./_cli.ts";
import { allElements, parseXml } from "./_xml.ts";

const tinyMatmul: BenchCase = {
  name: "tiny-matmul",
  group: "kernels",
  shapes: () => [{ m: 8, n: 8, k: 8 }, { m: 3, n: 5, k: 7 }],
  setup(gpu, s) {
    const m = Number(s.m), n = Number(s.n), k = Number(s.k);
    const a = Tensor.from(gpu, new Float32Array(m * k).fill(1.5), [m, k], "f32", "a");
    const b = Tensor.from(gpu, new Float32Array(k * n).fill(-0.5), [k, n], "f32", "b");
    const c = Tensor.empty(gpu, [m, n], "f32", "c");
    return {
      encode: (step) => matmul(step, { a, b, c, m, n, k }),
      flops: 2 * m * n * k,
      bytes: 4 * (m * k + k * n + m * n),
      dispose: () => [a, b, c].forEach((t) => t.destroy()),
    };
  },
};

Deno.test("bench report matches its schema, with timestamps and with the wall clock", gpuTest, async () => {
  const gpu = await testGpu();
  for (const wallClock of [false, true]) {
    const r = await runBench(gpu, [tinyMatmul], { quick: true, repeats: 3, warmup: 1, wallClock });
    BenchReportSchema.parse(r);
    assert.equal(r.timing, wallClock || !gpu.features["timestamp-query"] ? "wall-clock" : "gpu-timestamps");
    assert.equal(r.cases.length, 2);
    for (const c of r.cases) {
      assert.ok(c.min_ms <= c.median_ms && c.median_ms <= c.max_ms, JSON.stringify(c));
      assert.ok(c.median_ms > 0);
      assert.deepEqual(c.throughput.map((t) => t.unit), ["GFLOP/s", "GB/s"]);
      assert.ok(c.peak_bytes > 0);
    }
    assert.match(formatReport(r), /tiny-matmul/);
  }
});

Deno.test(
  "with the copy probe the report has the ceilings and each case its fraction of them",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const r = await runBench(gpu, [{ ...tinyMatmul, name: "matmul" }], {
      quick: true,
      repeats: 2,
      warmup: 1,
      copyProbe: deviceCopyProbe(gpu),
    });
    BenchReportSchema.parse(r);
    assert.ok(r.ceilings?.copy && r.ceilings.copy.gbs > 0 && r.ceilings.copy.bytes === 16 * 2 ** 20);
    const best = Math.max(...r.cases.map((c) => c.throughput[0].value));
    assert.equal(r.ceilings?.matmul?.gflops, best);
    for (const c of r.cases) {
      assert.equal(c.matmul_fraction, c.throughput[0].value / best);
      assert.equal(c.copy_fraction, c.throughput[1].value / r.ceilings.copy.gbs);
    }
    assert.ok(r.cases.some((c) => c.matmul_fraction === 1));
    const plain = await runBench(gpu, [tinyMatmul], { quick: true, repeats: 2, warmup: 1 });
    assert.equal(plain.ceilings, undefined, "no probe, no ceilings");
  },
);

Deno.test("--profile times every dispatch of a case by kernel; it needs timestamps", gpuTest, async () => {
  const gpu = await testGpu();
  // Two matmuls per run, one of them twice: three dispatches of two kernels (vec4 and scalar bindings).
  const twice: BenchCase = {
    ...tinyMatmul,
    shapes: () => [{ m: 8, n: 8, k: 8 }],
    setup(gpu, s) {
      const run = tinyMatmul.setup(gpu, s) as BenchRun;
      const a = Tensor.from(gpu, new Float32Array(15).fill(1), [3, 5], "f32", "a2");
      const c = Tensor.empty(gpu, [9], "f32", "c2");
      return {
        ...run,
        encode: (step) => {
          run.encode(step);
          run.encode(step);
          matmul(step, { a, b: a, c, m: 3, n: 3, k: 5, transB: true });
        },
        dispose: () => {
          run.dispose();
          [a, c].forEach((t) => t.destroy());
        },
      };
    },
  };
  if (!gpu.features["timestamp-query"]) {
    await assert.rejects(
      () => runBench(gpu, [twice], { quick: true, repeats: 1, warmup: 0, profile: true }),
      (e) => e instanceof TnlError && e.exitCode === EXIT_CODES.usage,
    );
    return;
  }
  const lines: string[] = [];
  const r = await runBench(gpu, [twice], {
    quick: true,
    repeats: 2,
    warmup: 1,
    profile: true,
    log: (l) => lines.push(l),
  });
  BenchReportSchema.parse(r);
  const prof = r.cases[0].profile!;
  assert.deepEqual(prof.map((p) => p.calls).sort(), [1, 2]);
  assert.ok(prof.every((p) => p.kernel.startsWith("matmul") && p.ms >= 0));
  assert.ok(prof.some((p) => p.kernel.includes("_tb")), JSON.stringify(prof));
  assert.ok(
    lines.some((l) => l.startsWith("profile tiny-matmul m=8 n=8 k=8: ") && l.includes("in 3 dispatches")),
  );
  await assert.rejects(
    () => runBench(gpu, [twice], { quick: true, repeats: 1, warmup: 0, profile: true, wallClock: true }),
    (e) => e instanceof TnlError && e.exitCode === EXIT_CODES.usage && e.message.includes("--profile"),
  );
  const plain = await runBench(gpu, [twice], { quick: true, repeats: 1, warmup: 0 });
  assert.equal(plain.cases[0].profile, undefined);
});

Deno.test("bench --filter that matches nothing is a usage error listing the cases", gpuTest, async () => {
  const gpu = await testGpu();
  await assert.rejects(
    () => runBench(gpu, kernelBenchCases, { quick: true, filter: ["no-such-case"] }),
    (e) => e instanceof TnlError && e.exitCode === EXIT_CODES.usage && e.message.includes("matmul"),
  );
});

Deno.test("schema rejects malformed reports", () => {
  assert.throws(() => BenchReportSchema.parse({ schema: "tnl-bench/1" }));
  const ok = {
    schema: "tnl-bench/1",
    tnl: "0",
    git_commit: null,
    date: "2026-01-01T00:00:00Z",
    runtime: { deno: "2", v8: "1", typescript: "5" },
    adapter: {
      description: "x",
      vendor: "v",
      architecture: "",
      device: "",
      fallback: false,
      subgroupMinSize: null,
      subgroupMaxSize: null,
      backend: null,
    },
    features: {},
    timing: "gpu-timestamps",
    quick: true,
    cases: [{
      name: "a",
      group: "kernels",
      shape: { m: 1 },
      repeats: 1,
      warmup: 0,
      median_ms: 1,
      min_ms: 1,
      max_ms: 1,
      throughput: [{ value: 1, unit: "GFLOP/s" }],
      peak_bytes: 0,
    }],
  };
  BenchReportSchema.parse(ok);
  assert.throws(() => BenchReportSchema.parse({ ...ok, timing: "sundial" }));
  assert.throws(() =>
    BenchReportSchema.parse({
      ...ok,
      cases: [{ ...ok.cases[0], throughput: [{ value: 1, unit: "furlongs" }] }],
    })
  );
});

Deno.test("tnl bench kernels --quick writes the JSON, Markdown and SVG reports of every registered case", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const file = `${tmp}/bench.json`;
    const reports = ["--json", file, "--markdown", `${tmp}/md/bench.md`, "--svg", `${tmp}/svg/bench.svg`];
    const { code, stdout, stderr } = await tnl(["bench", "kernels", "--quick", ...reports]);
    assert.equal(code, 0, stderr);
    const report = BenchReportSchema.parse(JSON.parse(await Deno.readTextFile(file)));
    assert.equal(report.quick, true);
    const names = new Set(report.cases.map((c) => c.name));
    for (const c of kernelBenchCases) assert.ok(names.has(c.name), `case ${c.name} ran`);
    assert.ok(report.ceilings?.copy && report.ceilings.matmul, "both ceilings measured");
    const attention = [...names].filter((n) => /lightning|naive-linear|softmax-flash/.test(n));
    assert.ok(attention.length >= 6, attention.join());
    for (const c of report.cases.filter((c) => attention.includes(c.name))) {
      assert.ok(
        c.us_per_token && c.matmul_fraction,
        `${c.name}: time per token and fraction of the matmul ceiling`,
      );
    }
    const md = await Deno.readTextFile(`${tmp}/md/bench.md`);
    assert.equal(md.split("\n").filter((l) => l.startsWith("| ")).length, 2 + report.cases.length);
    const svg = parseXml(await Deno.readTextFile(`${tmp}/svg/bench.svg`));
    const series = allElements(svg).filter((e) => e.attrs.class === "series").map((e) =>
      e.attrs["data-case"]
    );
    assert.deepEqual(series, attention, "one series per attention kernel");
    // The table goes to stdout, progress to stderr.
    assert.match(stdout, /median ms/);
    assert.match(stderr, /bench matmul/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
