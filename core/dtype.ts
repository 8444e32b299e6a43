// Element types of weight files (safetensors names) and the exact conversions of their little-endian bytes
// to the two host types tnl computes with: f32 for floats, i32 for integers.

import { bf16ArrayToF32, f16ArrayToF32 } from "./half.ts";
import { TnlError } from "./errors.ts";

/** Element types a weight file may declare (every one has a whole number of bytes). */
export type DType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export function isDType(s: string): s is DType {
  return Object.hasOwn(DTYPE_SIZE, s);
}

/** The types `toF32` converts exactly. */
export const FLOAT_DTYPES: readonly DType[] = ["F32", "F16", "BF16"];
/** The types `toI32` converts (exactly, or with an error for a value outside i32). */
export const INT_DTYPES: readonly DType[] = ["I32", "I64", "I16", "I8", "U32", "U64", "U16", "U8", "BOOL"];

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // Weight files are little-endian and the conversions below view bytes as host typed arrays.
  throw new TnlError("unavailable", "tnl needs a little-endian machine");
}

/** Number of elements of `shape` (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Converts the little-endian bytes of a tensor to f32. `bytes` must start on a 4-byte boundary of its buffer
 * when `dtype` is F32 (the readers always hand over fresh buffers); F32 data is then viewed, not copied.
 * `what` names the tensor and file in errors.
 */
export function toF32(dtype: DType, bytes: Uint8Array, what: string): Float32Array {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  switch (dtype) {
    case "F32":
      return bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, n)
        : new Float32Array(bytes.slice().buffer);
    case "BF16":
      return bf16ArrayToF32(halfWords(bytes));
    case "F16":
      return f16ArrayToF32(halfWords(bytes));
    default:
      throw new TnlError(
        "input",
        `${what} has dtype ${dtype}, which is not read as f32 (only ${FLOAT_DTYPES.join(", ")})`,
      );
  }
}

/** Converts the little-endian bytes of an integer tensor to i32; a value outside i32 is an error. */
export function toI32(dtype: DType, bytes: Uint8Array, what: string): Int32Array {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  const b = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case "I32":
      return new Int32Array(b.buffer, b.byteOffset, n);
    case "I16":
      return Int32Array.from(new Int16Array(b.buffer, b.byteOffset, n));
    case "I8":
      return Int32Array.from(new Int8Array(b.buffer, b.byteOffset, n));
    case "U16":
      return Int32Array.from(new Uint16Array(b.buffer, b.byteOffset, n));
    case "U8":
      return Int32Array.from(new Uint8Array(b.buffer, b.byteOffset, n));
    case "BOOL": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        if (b[i] > 1) throw new TnlError("input", `${what} has BOOL byte ${b[i]} at index ${i}`);
        out[i] = b[i];
      }
      return out;
    }
    case "U32": {
      const src = new Uint32Array(b.buffer, b.byteOffset, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        if (src[i] > 0x7fffffff) throw outOfI32(what, src[i], i);
        out[i] = src[i];
      }
      return out;
    }
    case "I64":
    case "U64": {
      // Each value is two u32 words: it fits i32 when the high word is the sign extension of the low one.
      const w = new Uint32Array(b.buffer, b.byteOffset, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = w[2 * i], hi = w[2 * i + 1];
        const fits = dtype === "I64"
          ? (hi === 0 && lo <= 0x7fffffff) || (hi === 0xffffffff && lo >= 0x80000000)
          : hi === 0 && lo <= 0x7fffffff;
        if (!fits) {
          const v = dtype === "I64"
            ? new BigInt64Array(w.buffer, w.byteOffset + 8 * i, 1)[0]
            : BigInt(hi) * 2n ** 32n + BigInt(lo);
          throw outOfI32(what, v, i);
        }
        out[i] = lo | 0;
      }
      return out;
    }
    default:
      throw new TnlError(
        "input",
        `${what} has dtype ${dtype}, which is not read as integers (only ${INT_DTYPES.join(", ")})`,
      );
  }
}

function outOfI32(what: string, v: number | bigint, i: number): TnlError {
  return new TnlError("input", `${what} has value ${v} at index ${i}, outside the 32-bit integer range`);
}

function halfWords(bytes: Uint8Array): Uint16Array {
  const b = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
}
