import assert from "node:assert/strict";
import { openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { convertToF16, copyTensor, deviceCopyProbe } from "../kernels/copy.ts";
import { f32BitsToF16Bits } from "../core/half.ts";
import { TnlError } from "../core/errors.ts";
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

// Values that exercise every branch of the rounding: ties both ways, the subnormal range and its edges,
// overflow to infinity, signed zeros, infinities and NaNs with payloads.
function f16EdgeBits(): Uint32Array {
  const bits: number[] = [
    0,
    0x80000000,
    0x7f800000,
    0xff800000,
    0x7fc00000,
    0xffc00001,
    0x7f800001,
    0x7fbfffff,
    0x477fe000,
    0x477fefff,
    0x477ff000,
    0x477fffff,
    0x47800000,
    0xc77ff000, // 65504, just under/at 65520, 2^16
    0x38800000,
    0x387fffff,
    0x33800000,
    0x33800001,
    0x33000000,
    0x33000001,
    0x32ffffff,
    0x00000001,
    0x00800000,
    0x3f801000,
    0x3f803000,
    0x3f800fff,
    0x3f801001,
    0x3c7ff000,
    0x387ff000,
    0x38001000,
    0x38003000,
  ];
  const rng = new Rng(44);
  for (let i = 0; i < 4000; i++) {
    // Random sign, exponents across the whole f16 range and beyond, random mantissas.
    const e = 95 + rng.int(55);
    bits.push(((rng.int(2) << 31) | (e << 23) | rng.int(1 << 23)) >>> 0);
  }
  for (let i = 0; i < 200; i++) bits.push((0x33000000 + rng.int(1 << 26)) >>> 0); // around the subnormal halves
  if (bits.length % 2) bits.push(0x3f800000);
  return Uint32Array.from(bits);
}

Deno.test(
  "f32 → f16 conversion rounds every value as the CPU conversion does, bit for bit",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const bits = f16EdgeBits();
    const n = bits.length;
    const src = Tensor.from(gpu, new Float32Array(bits.buffer), [n], "f32", "src");
    const dst = Tensor.empty(gpu, [n], "f16", "dst");
    gpu.run("convert", (step) => convertToF16(step, src, dst));
    const got = (await dst.read()) as Uint16Array;
    for (let i = 0; i < n; i++) {
      assert.equal(
        got[i],
        f32BitsToF16Bits(bits[i]),
        `f32 bits 0x${bits[i].toString(16)}: got 0x${got[i].toString(16)}`,
      );
    }
    [src, dst].forEach((t) => t.destroy());
    // Sizes that do not fit the conversion are refused naming the tensors.
    const odd = Tensor.empty(gpu, [3], "f32", "odd"), odd16 = Tensor.empty(gpu, [3], "f16", "odd16");
    assert.throws(
      () => gpu.run("convert odd", (step) => convertToF16(step, odd, odd16)),
      (e) => e instanceof TnlError && e.message.includes("'odd'") && e.message.includes("even"),
    );
    const even = Tensor.empty(gpu, [4], "f32", "even"), shifted = Tensor.empty(gpu, [6], "f16", "shifted");
    assert.throws(
      () =>
        gpu.run(
          "convert shifted",
          (step) => convertToF16(step, even, Tensor.part(shifted, 1, [4], "odd start")),
        ),
      (e) => e instanceof TnlError && e.message.includes("'odd start' starts at element 1"),
    );
    [odd, odd16, even, shifted].forEach((t) => t.destroy());
  },
);

Deno.test("f32 → f16 conversion of tensors over one binding goes in pieces", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 4096 });
  try {
    const n = 5002;
    const hx = new Rng(45).uniformArray(n, -70000, 70000);
    const src = Tensor.from(gpu, hx, [n], "f32", "src"), dst = Tensor.empty(gpu, [n], "f16", "dst");
    gpu.run("convert pieces", (step) => convertToF16(step, src, dst));
    const got = (await dst.read()) as Uint16Array;
    const hb = new Uint32Array(hx.buffer, hx.byteOffset, n);
    for (let i = 0; i < n; i++) assert.equal(got[i], f32BitsToF16Bits(hb[i]), `element ${i}`);
  } finally {
    gpu.close();
  }
});
