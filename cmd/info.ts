// `tnl info`: the adapter, the optional features the device got, the limits requested, and a self-test of
// the tiled matmul against its float64 CPU reference (error and GFLOP/s).

import { Command } from "@commander-js/extra-typings";
import { runCase } from "../core/bench.ts";
import { TnlError } from "../core/errors.ts";
import { formatBytes, type Gpu, OPTIONAL_FEATURES } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { errorStats } from "../core/stats.ts";
import { Tensor } from "../core/tensor.ts";
import { runtimeVersions, VERSION } from "../core/version.ts";
import { matmul, matmulBenchCases } from "../kernels/matmul.ts";
import { matmulRef } from "../kernels/matmul_ref.ts";
import { type GlobalOptions, gpuFromOptions, writeOutput } from "./common.ts";

/** fp32 matmul vs float64 at K ≤ 4096: ‖Δ‖/‖ref‖ ≤ 1e-5 (DEVELOPERS.md tolerance for matmuls). */
export const MATMUL_REL_TOLERANCE = 1e-5;

export interface SelfTest {
  matmul: {
    /** [m, n, k, op] of every accuracy check (odd sizes, all four transposes) */
    checks: { m: number; n: number; k: number; op: string; maxAbsError: number; relError: number }[];
    maxAbsError: number;
    relError: number;
    tolerance: number;
    pass: boolean;
    speed: { m: number; n: number; k: number; medianMs: number; gflops: number; timing: string };
  };
}

export async function selfTest(gpu: Gpu): Promise<SelfTest> {
  const rng = new Rng(20261129);
  const checks: SelfTest["matmul"]["checks"] = [];
  const shapes: [number, number, number, string][] = [
    [97, 61, 45, "nn"],
    [33, 130, 67, "nt"],
    [129, 5, 200, "tn"],
    [1, 131, 9, "tt"],
  ];
  for (const [m, n, k, op] of shapes) {
    const transA = op[0] === "t", transB = op[1] === "t";
    const ha = rng.uniformArray(m * k), hb = rng.uniformArray(k * n);
    const a = Tensor.from(gpu, ha, transA ? [k, m] : [m, k], "f32", "self-test A");
    const b = Tensor.from(gpu, hb, transB ? [n, k] : [k, n], "f32", "self-test B");
    const c = Tensor.empty(gpu, [m, n], "f32", "self-test C");
    const step = gpu.step("self-test");
    matmul(step, { a, b, c, m, n, k, transA, transB });
    step.submit();
    const out = await c.readF32();
    const e = errorStats(out, matmulRef(ha, hb, null, { m, n, k, transA, transB }));
    checks.push({ m, n, k, op, maxAbsError: e.maxAbs, relError: e.rel });
    [a, b, c].forEach((t) => t.destroy());
  }
  const maxAbsError = Math.max(...checks.map((c) => c.maxAbsError));
  const relError = Math.max(...checks.map((c) => c.relError));
  const size = gpu.adapter.fallback ? 512 : 2048;
  const timing = gpu.features["timestamp-query"] ? "gpu-timestamps" : "wall-clock";
  const r = await runCase(gpu, matmulBenchCases[0], { op: "nn", m: size, n: size, k: size }, timing, {
    quick: true,
    warmup: 2,
    repeats: 5,
  });
  return {
    matmul: {
      checks,
      maxAbsError,
      relError,
      tolerance: MATMUL_REL_TOLERANCE,
      pass: relError <= MATMUL_REL_TOLERANCE,
      speed: {
        m: size,
        n: size,
        k: size,
        medianMs: r.median_ms,
        gflops: r.throughput.find((t) => t.unit === "GFLOP/s")?.value ?? 0,
        timing,
      },
    },
  };
}

export function infoCommand(): Command {
  return new Command("info")
    .description("show the WebGPU adapter, device features and limits, and run a matmul self-test")
    .option("--json", "print one JSON document (keys: tnl, runtime, adapter, features, limits, selfTest)")
    .action(async function (this: Command, opts: { json?: true }) {
      const globals = this.optsWithGlobals() as GlobalOptions;
      const gpu = await gpuFromOptions(globals);
      try {
        const test = await selfTest(gpu);
        await gpu.sync();
        const report = {
          tnl: VERSION,
          runtime: runtimeVersions(),
          adapter: gpu.adapter,
          features: gpu.features,
          featureNotes: gpu.featureNotes,
          limits: gpu.limits,
          selfTest: test,
        };
        if (opts.json) await writeOutput("-", JSON.stringify(report, null, 2));
        else await writeOutput("-", formatInfo(gpu, test));
        if (!test.matmul.pass) {
          throw new TnlError(
            "gpu",
            `self-test failed: matmul relative error ${test.matmul.relError.toExponential(2)} is over ` +
              `${MATMUL_REL_TOLERANCE}: this adapter computes wrong results`,
          );
        }
      } finally {
        gpu.close();
      }
    });
}

function formatInfo(gpu: Gpu, t: SelfTest): string {
  const a = gpu.adapter;
  const lines = [
    `tnl ${VERSION} (deno ${Deno.version.deno})`,
    `adapter:  ${a.description}`,
    `          vendor ${a.vendor}${a.architecture ? `, architecture ${a.architecture}` : ""}, device ${
      a.device || "-"
    }, software fallback: ${a.fallback ? "yes" : "no"}${a.backend ? `, backend ${a.backend}` : ""}`,
    "features:",
  ];
  for (const f of OPTIONAL_FEATURES) {
    const extra = f === "subgroups" && gpu.features[f] && a.subgroupMinSize !== null
      ? ` (subgroup size ${a.subgroupMinSize}${
        a.subgroupMaxSize !== a.subgroupMinSize ? `..${a.subgroupMaxSize}` : ""
      })`
      : "";
    lines.push(
      `  ${f.padEnd(16)} ${gpu.features[f] ? "on" : `off (${gpu.featureNotes[f] ?? "not granted"})`}${extra}`,
    );
  }
  lines.push("limits (requested: the adapter's own):");
  for (const [k, v] of Object.entries(gpu.limits)) {
    const shown = /Size$/.test(k) && v >= 1024 ? formatBytes(v) : String(v);
    lines.push(`  ${k.padEnd(34)} ${shown}`);
  }
  const m = t.matmul;
  lines.push(
    `self-test: matmul vs float64 CPU reference (${m.checks.length} odd shapes, all transposes): max |Δ| ${
      m.maxAbsError.toExponential(2)
    }, ‖Δ‖/‖ref‖ ${m.relError.toExponential(2)} (tolerance ${m.tolerance}) ${m.pass ? "PASS" : "FAIL"}`,
    `           matmul ${m.speed.m}×${m.speed.n}×${m.speed.k}: ${m.speed.medianMs.toFixed(3)} ms, ${
      m.speed.gflops.toFixed(1)
    } GFLOP/s (${m.speed.timing === "gpu-timestamps" ? "GPU timestamps" : "wall clock"}, median of 5)`,
  );
  return lines.join("\n");
}
