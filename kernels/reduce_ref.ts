// Float64 CPU references of kernels/reduce.ts.

type Num = ArrayLike<number>;

export function sumRef(x: Num, square = false): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += square ? x[i] * x[i] : x[i];
  return s;
}

export function colsumRef(x: Num, rows: number, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c] += x[r * cols + c];
  return out;
}
