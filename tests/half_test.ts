import assert from "node:assert/strict";
import {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f16BitsToF32Bits,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32Bits,
  f32FromBits,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../core/half.ts";
import { Rng } from "../core/random.ts";

// The runtime's own binary16 (Math.f16round, Float16Array) is an independent reference for f16.
const f16view = new Float16Array(1);
const f16bits = new Uint16Array(f16view.buffer);
function refF16Bits(x: number): number {
  f16view[0] = x;
  return f16bits[0];
}
function refF16Value(h: number): number {
  f16bits[0] = h;
  return f16view[0];
}

const isNaNBits16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

Deno.test("f16 → f32 is exact for all 65536 bit patterns, and f32 → f16 gives every half back", () => {
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToF32(h);
    if (isNaNBits16(h)) {
      assert.ok(Number.isNaN(x), `0x${h.toString(16)} is NaN`);
      // Payload and sign kept; the quiet bit set.
      assert.equal(f16BitsToF32Bits(h), (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0);
      assert.equal(f32ToF16Bits(x) & 0x7e00, 0x7e00);
      continue;
    }
    assert.ok(Object.is(x, refF16Value(h)), `0x${h.toString(16)}: ${x} vs ${refF16Value(h)}`);
    assert.equal(f32ToF16Bits(x), h, `round trip of 0x${h.toString(16)}`);
  }
});

Deno.test("f32 → f16 rounds to nearest even: every midpoint between halves, and its neighbours", () => {
  // Midpoints of consecutive positive halves (including the one between the largest half and the
  // overflow threshold 65520, and the one between 0 and the smallest subnormal).
  for (let h = 0; h < 0x7c00; h++) {
    const lo = refF16Value(h);
    const hi = h + 1 === 0x7c00 ? 65536 : refF16Value(h + 1);
    const mid = (lo + hi) / 2;
    assert.equal(f32Bits(mid) === f32Bits(Math.fround(mid)), true);
    const even = (h & 1) === 0 ? h : h + 1;
    assert.equal(f32ToF16Bits(mid), even, `tie ${mid} between 0x${h.toString(16)} and next`);
    assert.equal(f32ToF16Bits(-mid), even | 0x8000, `tie -${mid}`);
    const below = f32FromBits(f32Bits(mid) - 1), above = f32FromBits(f32Bits(mid) + 1);
    if (below > lo) assert.equal(f32ToF16Bits(below), h, `just below ${mid}`);
    assert.equal(f32ToF16Bits(above), h + 1, `just above ${mid}`);
  }
});

Deno.test("f32 → f16 matches the runtime's binary16 on a million random f32 bit patterns", () => {
  const rng = new Rng(16);
  for (let i = 0; i < 1_000_000; i++) {
    const x = f32FromBits(rng.nextU32());
    if (Number.isNaN(x)) continue;
    const ours = f32ToF16Bits(x), ref = refF16Bits(x);
    if (ours !== ref) {
      assert.fail(`${x} (0x${f32Bits(x).toString(16)}): 0x${ours.toString(16)} vs 0x${ref.toString(16)}`);
    }
  }
});

Deno.test("f16 edge values: max, overflow, subnormals, signed zero, infinities, NaN", () => {
  const cases: [number, number][] = [
    [65504, 0x7bff],
    [65519.99609375, 0x7bff], // just below the overflow tie
    [65520, 0x7c00], // tie between 65504 (odd) and 2^16: up, to infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: to even, zero
    [Math.fround(2 ** -25 * (1 + 2 ** -23)), 0x0001],
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: to 2
    [5 * 2 ** -25, 0x0002], // tie between 2 and 3 units: to 2
    [2 ** -26, 0x0000],
    [1e-30, 0x0000],
    [-1e-30, 0x8000],
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [1 + 2 ** -11, 0x3c00], // tie: to even (1)
    [1 + 3 * 2 ** -11, 0x3c02], // tie: to even (1 + 2^-9)
  ];
  for (const [x, h] of cases) assert.equal(f32ToF16Bits(x), h, `${x}`);
  assert.equal(f32ToF16Bits(NaN) & 0x7e00, 0x7e00);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x03ff), 2 ** -14 - 2 ** -24);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
});

/** bf16 rounding computed independently: the two neighbouring bf16 values compared in float64. */
function refBf16(bits: number): number {
  const x = f32FromBits(bits);
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = bits & 0x80000000;
  const mag = bits & 0x7fffffff;
  const lo = mag & 0xffff0000; // truncated magnitude
  const hiBits = lo + 0x10000;
  const a = Math.abs(f32FromBits(lo));
  // Above the largest bf16 the next value is 2^128 (unbounded exponent), which overflows to infinity.
  const b = hiBits >= 0x7f800000 ? 2 ** 128 : f32FromBits(hiBits);
  const ax = Math.abs(x);
  let r = lo >>> 16;
  if (ax - a > b - ax || (ax - a === b - ax && (r & 1) === 1)) r++;
  if (mag >= 0x7f800000) r = mag >>> 16; // infinity stays
  return (r | (sign >>> 16)) & 0xffff;
}

Deno.test("bf16: all 65536 patterns widen exactly and round-trip; random f32 round to nearest even", () => {
  for (let h = 0; h < 65536; h++) {
    const x = bf16BitsToF32(h);
    assert.equal(f32Bits(x) >>> 16 === h || Number.isNaN(x), true, `0x${h.toString(16)}`);
    if (!Number.isNaN(x)) assert.equal(f32ToBf16Bits(x), h);
    else assert.equal(f32ToBf16Bits(x), 0x7fc0);
  }
  const rng = new Rng(7);
  for (let i = 0; i < 1_000_000; i++) {
    // Half of the samples sit exactly on a tie (low 16 bits 0x8000).
    const bits = i % 2 === 0 ? rng.nextU32() : ((rng.nextU32() & 0xffff0000) | 0x8000) >>> 0;
    const ours = f32ToBf16Bits(f32FromBits(bits)), ref = refBf16(bits);
    if (ours !== ref) assert.fail(`0x${bits.toString(16)}: 0x${ours.toString(16)} vs 0x${ref.toString(16)}`);
  }
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie, to even
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie, to even
  assert.equal(f32ToBf16Bits(f32FromBits(0x7f7fffff)), 0x7f80); // max f32 rounds to infinity
  assert.equal(f32ToBf16Bits(f32FromBits(0x00000001)), 0x0000); // f32 subnormal to zero
  assert.equal(f32ToBf16Bits(f32FromBits(0x00008000)), 0x0000); // tie at a subnormal, to even
  assert.equal(f32ToBf16Bits(f32FromBits(0x00018000)), 0x0002); // tie at a subnormal, to even
  assert.equal(f32ToBf16Bits(-0), 0x8000);
});

Deno.test("the array conversions agree with the scalar ones", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  // Compared as bits: reading a signaling NaN into a JS number may quiet it.
  const f16 = new Uint32Array(f16ArrayToF32(all).buffer), bf16 = new Uint32Array(bf16ArrayToF32(all).buffer);
  for (let h = 0; h < 65536; h++) {
    assert.equal(f16[h], f16BitsToF32Bits(h));
    assert.equal(bf16[h], h << 16 >>> 0);
  }
  const rng = new Rng(3);
  const xs = new Float32Array(10000).map(() => f32FromBits(rng.nextU32()));
  const h16 = f32ArrayToF16(xs), hb = f32ArrayToBf16(xs);
  for (let i = 0; i < xs.length; i++) {
    if (Number.isNaN(xs[i])) continue;
    assert.equal(h16[i], f32ToF16Bits(xs[i]));
    assert.equal(hb[i], f32ToBf16Bits(xs[i]));
  }
});
