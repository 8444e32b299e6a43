// Float64 CPU references of kernels/elementwise.ts.

type Num = ArrayLike<number>;

export const sigmoidRef = (x: number): number => 1 / (1 + Math.exp(-x));

export function siluRef(x: Num): Float64Array {
  return Float64Array.from(x, (v) => v * sigmoidRef(v));
}

/** d silu(x) / dx · dy */
export function siluBackwardRef(x: Num, dy: Num): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const s = sigmoidRef(v);
    return dy[i] * s * (1 + v * (1 - s));
  });
}

export function axpyRef(x: Num, y: Num, alpha: number, beta: number): Float64Array {
  return Float64Array.from(x, (v, i) => alpha * v + (beta !== 0 ? beta * y[i] : 0));
}

export function mulRef(a: Num, b: Num): Float64Array {
  return Float64Array.from(a, (v, i) => v * b[i]);
}

/** g = h1 ⊙ h2 for rows of h = [h1 | h2] */
export function gluRef(h: Num, rows: number, f: number): Float64Array {
  const g = new Float64Array(rows * f);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < f; c++) g[r * f + c] = h[r * 2 * f + c] * h[r * 2 * f + f + c];
  }
  return g;
}

export function gluBackwardRef(h: Num, dg: Num, rows: number, f: number): Float64Array {
  const dh = new Float64Array(rows * 2 * f);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < f; c++) {
      dh[r * 2 * f + c] = dg[r * f + c] * h[r * 2 * f + f + c];
      dh[r * 2 * f + f + c] = dg[r * f + c] * h[r * 2 * f + c];
    }
  }
  return dh;
}
