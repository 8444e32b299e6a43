import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import {
  axpy,
  fill,
  fillRandom,
  gluBackward,
  gluForward,
  mulBackward,
  mulForward,
  siluBackward,
  siluForward,
} from "../kernels/elementwise.ts";
import {
  axpyRef,
  gluBackwardRef,
  gluRef,
  mulRef,
  siluBackwardRef,
  siluRef,
} from "../kernels/elementwise_ref.ts";
import { openGpu } from "../core/gpu.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";
import { assertGradient, dot } from "./_fd.ts";

// Elementwise fp32 vs float64: ‖Δ‖/‖ref‖ ≤ 1e-6 and max|Δ| ≤ 1e-6·max|ref| (DEVELOPERS.md).
function assertElementwise(ours: ArrayLike<number>, ref: ArrayLike<number>, what: string) {
  assertClose(ours, ref, 1e-6, what);
  let maxRef = 0, maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
    maxAbs = Math.max(maxAbs, Math.abs(ours[i] - ref[i]));
  }
  assert.ok(maxAbs <= 1e-6 * maxRef, `${what}: max|Δ| ${maxAbs} > 1e-6·${maxRef}`);
}

const SIZES = [1, 7, 255, 256, 257, 5000];

Deno.test("silu forward and backward match float64 (inputs over [-12, 12])", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(10);
  for (const n of SIZES) {
    const hx = rng.uniformArray(n, -12, 12), hdy = rng.uniformArray(n), hdx0 = rng.uniformArray(n);
    const x = Tensor.from(gpu, hx, [n], "f32", "x"), y = Tensor.empty(gpu, [n], "f32", "y");
    const dy = Tensor.from(gpu, hdy, [n], "f32", "dy"), dx = Tensor.from(gpu, hdx0, [n], "f32", "dx");
    const dx2 = Tensor.from(gpu, hdx0, [n], "f32", "dx2");
    const step = gpu.step("silu");
    siluForward(step, x, y);
    siluBackward(step, x, dy, dx);
    siluBackward(step, x, dy, dx2, 1);
    step.submit();
    assertElementwise(await y.readF32(), siluRef(hx), `silu n=${n}`);
    const g = siluBackwardRef(hx, hdy);
    assertElementwise(await dx.readF32(), g, `silu backward n=${n}`);
    assertElementwise(await dx2.readF32(), g.map((v, i) => v + hdx0[i]), `silu backward accumulate n=${n}`);
    [x, y, dy, dx, dx2].forEach((t) => t.destroy());
  }
});

Deno.test("silu reference backward equals finite differences", () => {
  const rng = new Rng(11);
  const x = Float64Array.from(rng.uniformArray(20, -6, 6)), w = Float64Array.from(rng.uniformArray(20));
  assertGradient((v) => dot(w, siluRef(v)), x, siluBackwardRef(x, w), "silu");
});

Deno.test("axpy, fill and the gate (mul) forward and backward", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(12);
  for (const n of SIZES) {
    const ha = rng.uniformArray(n), hb = rng.uniformArray(n), hdy = rng.uniformArray(n);
    const a = Tensor.from(gpu, ha, [n], "f32", "a"), b = Tensor.from(gpu, hb, [n], "f32", "b");
    const y = Tensor.from(gpu, hb, [n], "f32", "y"),
      y2 = Tensor.from(gpu, rng.uniformArray(n), [n], "f32", "y2");
    const dy = Tensor.from(gpu, hdy, [n], "f32", "dy");
    const da = Tensor.empty(gpu, [n], "f32", "da"), db = Tensor.empty(gpu, [n], "f32", "db");
    const f = Tensor.empty(gpu, [n + 3], "f32", "f");
    const step = gpu.step("ew");
    axpy(step, a, y, 0.5, 2); // y = 0.5a + 2b
    mulForward(step, a, b, y2);
    mulBackward(step, a, b, dy, da, db);
    fill(step, f, 3.5, 1, n);
    step.submit();
    assertElementwise(await y.readF32(), axpyRef(ha, hb, 0.5, 2), `axpy n=${n}`);
    assertElementwise(await y2.readF32(), mulRef(ha, hb), `mul n=${n}`);
    assertElementwise(await da.readF32(), mulRef(hdy, hb), `mul backward da n=${n}`);
    assertElementwise(await db.readF32(), mulRef(hdy, ha), `mul backward db n=${n}`);
    const hf = await f.readF32();
    assert.equal(hf[0], 0);
    assert.equal(hf[n + 1], 0);
    assert.ok(hf.subarray(1, n + 1).every((v) => v === 3.5));
    [a, b, y, y2, dy, da, db, f].forEach((t) => t.destroy());
  }
});

Deno.test("SGLU product (glu) forward and backward", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(13);
  for (const [rows, f] of [[1, 1], [3, 5], [17, 128], [9, 301]]) {
    const hh = rng.uniformArray(rows * 2 * f), hdg = rng.uniformArray(rows * f);
    const h = Tensor.from(gpu, hh, [rows, 2 * f], "f32", "h"), g = Tensor.empty(gpu, [rows, f], "f32", "g");
    const dg = Tensor.from(gpu, hdg, [rows, f], "f32", "dg"),
      dh = Tensor.empty(gpu, [rows, 2 * f], "f32", "dh");
    const step = gpu.step("glu");
    gluForward(step, h, g, rows, f);
    gluBackward(step, h, dg, dh, rows, f);
    step.submit();
    assertElementwise(await g.readF32(), gluRef(hh, rows, f), `glu ${rows}x${f}`);
    assertElementwise(await dh.readF32(), gluBackwardRef(hh, hdg, rows, f), `glu backward ${rows}x${f}`);
    [h, g, dg, dh].forEach((t) => t.destroy());
  }
  const hh = Float64Array.from(rng.uniformArray(2 * 2 * 3)), w = Float64Array.from(rng.uniformArray(2 * 3));
  assertGradient((v) => dot(w, gluRef(v, 2, 3)), hh, gluBackwardRef(hh, w, 2, 3), "glu");
});

Deno.test("elementwise kernels process tensors over one binding in pieces", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 4096 });
  try {
    const rng = new Rng(14);
    const n = 5000;
    const hx = rng.uniformArray(n, -5, 5), hy = rng.uniformArray(n);
    const x = Tensor.from(gpu, hx, [n], "f32", "x"), y = Tensor.from(gpu, hy, [n], "f32", "y");
    const s = Tensor.empty(gpu, [n], "f32", "s");
    const step = gpu.step("pieces");
    axpy(step, x, y, 1, 1);
    siluForward(step, x, s);
    step.submit();
    assertElementwise(await y.readF32(), axpyRef(hx, hy, 1, 1), "axpy in pieces");
    assertElementwise(await s.readF32(), siluRef(hx), "silu in pieces");
  } finally {
    gpu.close();
  }
});

Deno.test(
  "fillRandom gives seeded uniform values in range, the same however the tensor is split",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const n = 10000;
    const a = Tensor.empty(gpu, [n], "f32", "a"), b = Tensor.empty(gpu, [n], "f32", "b");
    const step = gpu.step("rand");
    fillRandom(step, a, 7, -2, 3);
    fillRandom(step, b, 8, -2, 3);
    step.submit();
    const ha = await a.readF32(), hb = await b.readF32();
    assert.ok(ha.every((v) => v >= -2 && v < 3));
    const mean = ha.reduce((x, y) => x + y, 0) / n;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
    assert.ok(new Set(ha).size > n * 0.99, "values are not repeated");
    assert.notDeepEqual(ha, hb, "another seed, other values");
    const small = await openGpu({ maxBindingBytes: 4096 });
    try {
      const c = Tensor.empty(small, [n], "f32", "c");
      const s2 = small.step("rand pieces");
      fillRandom(s2, c, 7, -2, 3);
      s2.submit();
      assert.deepEqual(await c.readF32(), ha);
    } finally {
      small.close();
    }
  },
);
