import assert from "node:assert/strict";
import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { copyTensor, deviceCopyProbe } from "../kernels/copy.ts";
import { copyRef } from "../kernels/copy_ref.ts";
import { gpuTest, testGpu } from "./_gpu.ts";

// A copy is exact: the GPU result must equal the float64 reference bit for bit (fp32 values round-trip).
function assertExact(ours: Float32Array, ref: Float64Array, what: string) {
  assert.equal(ours.length, ref.length, `${what}: length`);
  for (let i = 0; i < ref.length; i++) assert.equal(ours[i], ref[i], `${what}: element ${i}`);
}

Deno.test("copy matches its reference at sizes 1 to 5003 (partial last vec4 included)", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(40);
  for (const n of [1, 2, 3, 4, 5, 7, 255, 1024, 5003]) {
    const hx = rng.uniformArray(n, -3, 3);
    const src = Tensor.from(gpu, hx, [n], "f32", "src"), dst = Tensor.empty(gpu, [n], "f32", "dst");
    gpu.run("copy", (step) => copyTensor(step, src, dst));
    assertExact(await dst.readF32(), copyRef(hx), `copy n=${n}`);
    [src, dst].forEach((t) => t.destroy());
  }
});

Deno.test("copy into a part of a tensor leaves the elements around it untouched", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(41);
  const total = 64, offset = 8, n = 13; // 13 = 3 whole vec4 and one partial
  const outer = Tensor.from(gpu, new Float32Array(total).fill(-7), [total], "f32", "outer");
  const hx = rng.uniformArray(n);
  const src = Tensor.from(gpu, hx, [n], "f32", "src");
  const part = Tensor.part(outer, offset, [n], "part");
  gpu.run("copy part", (step) => copyTensor(step, src, part));
  const got = await outer.readF32();
  const want = new Float64Array(total).fill(-7);
  want.set(copyRef(hx), offset);
  assertExact(got, want, "copy into a part");
  assert.throws(
    () => gpu.run("bad", (step) => copyTensor(step, src, Tensor.part(outer, 1, [n], "odd part"))),
    /multiples of 4/,
  );
  [outer, src].forEach((t) => t.destroy());
});

Deno.test("copy processes tensors over one binding in pieces", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 4096 });
  try {
    const n = 5001;
    const hx = new Rng(42).uniformArray(n);
    const src = Tensor.from(gpu, hx, [n], "f32", "src"), dst = Tensor.empty(gpu, [n], "f32", "dst");
    gpu.run("copy pieces", (step) => copyTensor(step, src, dst));
    assertExact(await dst.readF32(), copyRef(hx), "copy in pieces");
  } finally {
    gpu.close();
  }
});

Deno.test("the device-copy probe copies its buffer and counts bytes read and written", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 8 * 2 ** 20 });
  try {
    const probe = deviceCopyProbe(gpu);
    const [shape] = probe.shapes(true);
    assert.deepEqual(shape, { bytes: 8 * 2 ** 20 }, "capped at the binding limit");
    const run = await probe.setup(gpu, { bytes: 2 ** 20 });
    assert.equal(run.bytes, 2 * 2 ** 20);
    gpu.run("probe", (step) => run.encode(step));
    run.dispose();
    await gpu.sync();
  } finally {
    gpu.close();
  }
});
