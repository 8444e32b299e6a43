import assert from "node:assert/strict";
import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { autoSplit, matmul, type MatmulOp } from "../kernels/matmul.ts";
import { matmulRef } from "../kernels/matmul_ref.ts";
import type { Gpu } from "../core/gpu.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";

// fp32 with fp32 accumulation vs float64, K ≤ 4096: ‖Δ‖/‖ref‖ ≤ 1e-5 (DEVELOPERS.md).
const REL = 1e-5;
const OPS = ["nn", "nt", "tn", "tt"] as const;

interface Case {
  m: number;
  n: number;
  k: number;
  op: string;
  batch?: number;
  alpha?: number;
  beta?: number;
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  splitK?: number;
}

async function check(gpu: Gpu, c: Case, rng: Rng): Promise<void> {
  const {
    m,
    n,
    k,
    op,
    batch = 1,
    alpha = 1,
    beta = 0,
    aOffset = 0,
    bOffset = 0,
    cOffset = 0,
    splitK,
  } = c;
  const transA = op[0] === "t", transB = op[1] === "t";
  const ha = rng.uniformArray(aOffset + batch * m * k);
  const hb = rng.uniformArray(bOffset + batch * k * n);
  // C starts as random values (beta ≠ 0) or NaN (beta = 0: must be overwritten without being read).
  const hc = beta !== 0
    ? rng.uniformArray(cOffset + batch * m * n)
    : new Float32Array(cOffset + batch * m * n).fill(NaN);
  const a = Tensor.from(gpu, ha, [ha.length], "f32", "A");
  const b = Tensor.from(gpu, hb, [hb.length], "f32", "B");
  const cT = Tensor.from(gpu, hc, [hc.length], "f32", "C");
  const step = gpu.step("matmul test");
  const args: MatmulOp = {
    a,
    b,
    c: cT,
    m,
    n,
    k,
    transA,
    transB,
    batch,
    alpha,
    beta,
    aOffset,
    bOffset,
    cOffset,
    splitK,
  };
  matmul(step, args);
  step.submit();
  const out = await cT.readF32();
  const ref = matmulRef(ha.subarray(aOffset), hb.subarray(bOffset), hc.subarray(cOffset), {
    m,
    n,
    k,
    transA,
    transB,
    batch,
    alpha,
    beta,
  });
  const label = JSON.stringify(c);
  assertClose(out.subarray(cOffset), ref, REL, label);
  // Elements before the offset are untouched.
  for (let i = 0; i < cOffset; i++) {
    assert.ok(Object.is(out[i], hc[i]), `${label}: C[${i}] before the offset changed`);
  }
  [a, b, cT].forEach((t) => t.destroy());
}

Deno.test(
  "matmul matches the float64 reference at odd and tile-sized shapes, all transposes",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(1);
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [2, 3, 5],
      [17, 33, 65],
      [128, 128, 128],
      [129, 127, 131],
      [1, 300, 257],
      [260, 1, 3],
      [64, 64, 4],
    ];
    for (const [m, n, k] of shapes) for (const op of OPS) await check(gpu, { m, n, k, op }, rng);
  },
);

Deno.test("matmul: K = 0 gives beta·C, and empty M or N do nothing", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(3);
  await check(gpu, { m: 5, n: 6, k: 0, op: "nn", beta: 1 }, rng);
  await check(gpu, { m: 5, n: 6, k: 0, op: "tn", beta: 0 }, rng);
  const a = Tensor.empty(gpu, [0], "f32", "A0");
  const c = Tensor.from(gpu, new Float32Array([7]), [1], "f32", "C0");
  const step = gpu.step("empty");
  matmul(step, { a, b: a, c, m: 0, n: 1, k: 0 });
  assert.equal(step.kernels.length, 0);
  step.submit();
  assert.deepEqual([...await c.readF32()], [7]);
});

Deno.test(
  "matmul slices matrices larger than one storage binding (accumulating over K)",
  gpuTest,
  async () => {
    // A device that plans with 8 KiB bindings: every operand below spans several bindings.
    const gpu = await openGpu({ maxBindingBytes: 8192 });
    try {
      const rng = new Rng(4);
      for (const op of OPS) {
        await check(gpu, { m: 150, n: 70, k: 90, op }, rng);
        await check(gpu, { m: 61, n: 133, k: 77, op, beta: 1, alpha: 2 }, rng);
        await check(gpu, { m: 40, n: 40, k: 40, op, batch: 3 }, rng);
      }
    } finally {
      gpu.close();
    }
  },
);

Deno.test(
  "matmul with long K: one dispatch within the software adapters' loop limit, K slices beyond it",
  gpuTest,
  async () => {
    // llvmpipe silently leaves a loop after 65535 iterations per invocation (Gpu.loopLimit). A 16-step K
    // tile is one iteration, so K = 60000 is one dispatch there; the dispatcher slices K (accumulating into
    // C) only past ~500K, which a lowered limit brings within reach of a test.
    const gpu = await testGpu();
    const rng = new Rng(8);
    await check(gpu, { m: 3, n: 5, k: 60000, op: "nn" }, rng);
    await check(gpu, { m: 2, n: 130, k: 50001, op: "tn", beta: 1 }, rng);
    const limited = await openGpu({ loopLimit: 600 }); // K slices of 16 · 172 = 2752
    try {
      const a = Tensor.empty(limited, [4 * 9000], "f32", "A"),
        b = Tensor.empty(limited, [9000 * 3], "f32", "B");
      const c = Tensor.empty(limited, [12], "f32", "C");
      const step = limited.step("sliced");
      matmul(step, { a, b, c, m: 4, n: 3, k: 9000, splitK: 1 });
      assert.equal(step.kernels.length, 4, "9000 = 3 slices of 2752 and one of 744");
      step.abandon();
      await check(limited, { m: 4, n: 3, k: 9000, op: "nt", beta: 1, splitK: 1 }, rng);
      await check(limited, { m: 33, n: 7, k: 6001, op: "tt", splitK: 1 }, rng);
    } finally {
      limited.close();
    }
  },
);

Deno.test(
  "matmul: many dispatches with different parameters in one step each get their own",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const rng = new Rng(5);
    const shapes = [[3, 4, 5], [40, 3, 9], [7, 70, 2], [1, 1, 300]];
    const ops = shapes.map(([m, n, k]) => {
      const ha = rng.uniformArray(m * k), hb = rng.uniformArray(k * n);
      return {
        m,
        n,
        k,
        ha,
        hb,
        a: Tensor.from(gpu, ha, [m, k], "f32", "A"),
        b: Tensor.from(gpu, hb, [k, n], "f32", "B"),
        c: Tensor.empty(gpu, [m, n], "f32", "C"),
      };
    });
    const step = gpu.step("several");
    for (const o of ops) matmul(step, { a: o.a, b: o.b, c: o.c, m: o.m, n: o.n, k: o.k, alpha: o.m });
    step.submit();
    for (const o of ops) {
      const ref = matmulRef(o.ha, o.hb, null, { m: o.m, n: o.n, k: o.k, alpha: o.m });
      assertClose(await o.c.readF32(), ref, REL, `shape ${o.m}x${o.n}x${o.k}`);
    }
  },
);

Deno.test("matmul reference agrees with a direct triple loop", () => {
  const rng = new Rng(6);
  const m = 3, n = 4, k = 5;
  const a = rng.uniformArray(m * k), b = rng.uniformArray(k * n);
  const ref = matmulRef(a, b, null, { m, n, k });
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      assert.ok(Math.abs(ref[i * n + j] - s) < 1e-12);
    }
  }
  // Transposed storage of the same matrices gives the same product.
  const at = new Float32Array(k * m), bt = new Float32Array(n * k);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) at[p * m + i] = a[i * k + p];
  for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) bt[j * k + p] = b[p * n + j];
  assert.deepEqual(matmulRef(at, bt, null, { m, n, k, transA: true, transB: true }), ref);
});

Deno.test("matmul split over K into partial products summed in a fixed order", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(9);
  for (const op of OPS) {
    await check(gpu, { m: 37, n: 45, k: 1000, op, splitK: 3 }, rng); // a remainder part
    await check(gpu, { m: 33, n: 17, k: 512, op, splitK: 4, alpha: 0.5, beta: 1 }, rng);
    await check(gpu, { m: 20, n: 36, k: 96, op, splitK: 2, aOffset: 4, bOffset: 8, cOffset: 12 }, rng);
  }
});

Deno.test("split-K fills the last wave: small grids with long K are split, big grids are not", () => {
  const gpu = { adapter: { fallback: false } };
  assert.equal(autoSplit(gpu, 4096, 1024, 8192, 1), 1); // 256 workgroups: one full wave
  assert.equal(autoSplit(gpu, 2816, 1024, 8192, 1), 3); // 176 → 528
  assert.ok(autoSplit(gpu, 1024, 1024, 8192, 1) >= 4); // 64 workgroups
  assert.equal(autoSplit(gpu, 1024, 1024, 256, 1), 1); // short K
  assert.equal(autoSplit({ adapter: { fallback: true } }, 1024, 1024, 8192, 1), 1);
  assert.equal(autoSplit(gpu, 1024, 1024, 8192, 4), 1); // batches
});
