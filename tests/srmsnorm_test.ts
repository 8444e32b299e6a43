import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { srmsnormBackward, srmsnormForward } from "../kernels/srmsnorm.ts";
import { srmsnormBackwardRef, srmsnormRef } from "../kernels/srmsnorm_ref.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";
import { assertGradient, dot } from "./_fd.ts";
import type { Gpu } from "../core/gpu.ts";

// A row reduction: ‖Δ‖/‖ref‖ ≤ 1e-5.
const REL = 1e-5;

async function check(gpu: Gpu, rows: number, d: number, rng: Rng) {
  const hx = rng.uniformArray(rows * d, -3, 3),
    hdy = rng.uniformArray(rows * d),
    hdx0 = rng.uniformArray(rows * d);
  const x = Tensor.from(gpu, hx, [rows, d], "f32", "x"), y = Tensor.empty(gpu, [rows, d], "f32", "y");
  const rstd = Tensor.empty(gpu, [rows], "f32", "rstd");
  const dy = Tensor.from(gpu, hdy, [rows, d], "f32", "dy"),
    dx = Tensor.from(gpu, hdx0, [rows, d], "f32", "dx");
  const dxAcc = Tensor.from(gpu, hdx0, [rows, d], "f32", "dxAcc");
  const step = gpu.step("srmsnorm");
  srmsnormForward(step, x, y, rstd, rows, d);
  srmsnormBackward(step, y, rstd, dy, dx, rows, d);
  srmsnormBackward(step, y, rstd, dy, dxAcc, rows, d, 1);
  step.submit();
  const ref = srmsnormRef(hx, rows, d);
  const label = `${rows}x${d} (subgroups ${gpu.features.subgroups})`;
  assertClose(await y.readF32(), ref.y, REL, `y ${label}`);
  assertClose(await rstd.readF32(), ref.rstd, REL, `rstd ${label}`);
  const g = srmsnormBackwardRef(hx, hdy, rows, d);
  if (d === 1) {
    // d = 1: y = ±1 up to eps, and dx = rstd·dy·(1 − y²) ≈ 1e-7 is pure cancellation in fp32; the error
    // is judged against the scale of the terms, rstd·dy (measured ‖Δ‖ ≈ 5e-8 at ‖rstd·dy‖ ≈ 0.5).
    const ours = await dx.readF32();
    let d2 = 0, s2 = 0;
    for (let i = 0; i < rows; i++) {
      d2 += (ours[i] - g[i]) ** 2;
      s2 += (ref.rstd[i] * hdy[i]) ** 2;
    }
    if (Math.sqrt(d2) > 1e-6 * Math.sqrt(s2)) throw new Error(`dx ${label}: ‖Δ‖ ${Math.sqrt(d2)}`);
  } else {
    assertClose(await dx.readF32(), g, REL, `dx ${label}`);
    assertClose(await dxAcc.readF32(), g.map((v, i) => v + hdx0[i]), REL, `dx accumulated ${label}`);
  }
  [x, y, rstd, dy, dx, dxAcc].forEach((t) => t.destroy());
}

const SHAPES: [number, number][] = [[1, 1], [3, 64], [5, 255], [2, 256], [7, 1000], [1, 4099]];

Deno.test("srmsnorm forward/backward vs float64 (subgroup path where available)", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(20);
  for (const [r, d] of SHAPES) await check(gpu, r, d, rng);
});

Deno.test(
  "srmsnorm forward/backward vs float64 without subgroups, in binding-sized pieces",
  gpuTest,
  async () => {
    const gpu = await openGpu({ disable: ["subgroups"], maxBindingBytes: 32768 });
    try {
      const rng = new Rng(21);
      for (const [r, d] of [...SHAPES, [40, 300] as [number, number]]) await check(gpu, r, d, rng);
    } finally {
      gpu.close();
    }
  },
);

Deno.test("srmsnorm reference backward equals finite differences", () => {
  const rng = new Rng(22);
  const rows = 3, d = 7;
  const x = Float64Array.from(rng.uniformArray(rows * d, -2, 2)),
    w = Float64Array.from(rng.uniformArray(rows * d));
  assertGradient((v) => dot(w, srmsnormRef(v, rows, d).y), x, srmsnormBackwardRef(x, w, rows, d), "srmsnorm");
});
