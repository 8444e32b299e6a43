// Float64 CPU reference of kernels/copy.ts.

/** dst = src */
export function copyRef(src: ArrayLike<number>): Float64Array {
  return Float64Array.from(src);
}
