// Float64 CPU reference of kernels/srmsnorm.ts.

type Num = ArrayLike<number>;

export function srmsnormRef(
  x: Num,
  rows: number,
  d: number,
  eps = 1e-6,
): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * d), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x[r * d + c] ** 2;
    const rs = 1 / Math.sqrt(ss / d + eps);
    rstd[r] = rs;
    for (let c = 0; c < d; c++) y[r * d + c] = x[r * d + c] * rs;
  }
  return { y, rstd };
}

/** dx from x (recomputing y, rstd) and dy: dx = rstd·(dy − y·mean(dy·y)). */
export function srmsnormBackwardRef(x: Num, dy: Num, rows: number, d: number, eps = 1e-6): Float64Array {
  const { y, rstd } = srmsnormRef(x, rows, d, eps);
  const dx = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let c = 0; c < d; c++) dot += dy[r * d + c] * y[r * d + c];
    const m = dot / d;
    for (let c = 0; c < d; c++) dx[r * d + c] = rstd[r] * (dy[r * d + c] - y[r * d + c] * m);
  }
  return dx;
}
