// Exact conversions between f32 and the 16-bit float formats of weight files: IEEE binary16 (f16) and
// bfloat16 (bf16, the upper half of an f32). Narrowing rounds to nearest, ties to even, like the hardware
// and PyTorch; widening is exact. Half values travel as their raw bits (a number in [0, 65535]).

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The bits of `x` rounded to f32. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** The f32 whose bits are `bits`. */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0];
}

/** bf16 bits of `x` (first rounded to f32). NaN becomes 0x7FC0, the quiet NaN PyTorch writes. */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest even; a carry into the exponent is the right
  // answer (the largest finite values round up to infinity).
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}

/** f16 bits of `x` (first rounded to f32, as a file's f32 data is). NaN keeps its sign and top payload bits
 * and is made quiet. */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  if (exp > 142) return sign | 0x7c00; // ≥ 2^16: beyond every finite half
  if (exp >= 113) {
    // A normal half (or the largest ones rounding up to infinity through the carry).
    let h = ((exp - 112) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }
  if (exp < 102) return sign; // below 2^-25, half of the smallest subnormal: rounds to zero
  // A subnormal half: the 24-bit significand shifted to units of 2^-24.
  const m = mant | 0x800000;
  const shift = 126 - exp; // 14 (exp 112) .. 24 (exp 102)
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1) !== 0)) h++;
  return sign | h;
}

export function f16BitsToF32(bits: number): number {
  return f32FromBits(f16BitsToF32Bits(bits));
}

export function f16BitsToF32Bits(bits: number): number {
  const sign = (bits & 0x8000) << 16;
  const exp = (bits >>> 10) & 0x1f;
  let mant = bits & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // A subnormal half is a normal f32: shift the leading 1 up to the implicit bit.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** Widens bf16 bits to f32 values, into `out` (new when not given). */
export function bf16ArrayToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i] << 16;
  return out;
}

/** Widens f16 bits to f32 values, into `out` (new when not given). */
export function f16ArrayToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  // Every f16 has one f32: a 64K-entry table is faster than the bit arithmetic per element.
  const table = f16Table();
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = table[src[i]];
  return out;
}

/** Rounds f32 values to bf16 bits (working on the bits, so NaN payloads never pass through a double). */
export function f32ArrayToBf16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToBf16Bits(s[i]);
  return out;
}

/** Rounds f32 values to f16 bits. */
export function f32ArrayToF16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToF16Bits(s[i]);
  return out;
}

let f16ToF32Bits: Uint32Array | null = null;

function f16Table(): Uint32Array {
  if (f16ToF32Bits === null) {
    f16ToF32Bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16ToF32Bits[h] = f16BitsToF32Bits(h);
  }
  return f16ToF32Bits;
}
