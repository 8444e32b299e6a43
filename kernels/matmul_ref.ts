// Float64 CPU reference of kernels/matmul.ts: C = alpha·op(A)·op(B) + beta·C, row-major, per batch.

export interface MatmulRefArgs {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  batch?: number;
  alpha?: number;
  beta?: number;
}

type Num = ArrayLike<number>;

export function matmulRef(a: Num, b: Num, c: Num | null, args: MatmulRefArgs): Float64Array {
  const { m, n, k, transA = false, transB = false, batch = 1, alpha = 1, beta = 0 } = args;
  const out = new Float64Array(batch * m * n);
  const row = new Float64Array(n);
  for (let z = 0; z < batch; z++) {
    const ao = z * m * k, bo = z * k * n, co = z * m * n;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const av = transA ? a[ao + p * m + i] : a[ao + i * k + p];
        if (transB) {
          for (let j = 0; j < n; j++) row[j] += av * b[bo + j * k + p];
        } else {
          const bRow = bo + p * n;
          for (let j = 0; j < n; j++) row[j] += av * b[bRow + j];
        }
      }
      for (let j = 0; j < n; j++) {
        const prev = beta !== 0 && c ? beta * c[co + i * n + j] : 0;
        out[co + i * n + j] = alpha * row[j] + prev;
      }
    }
  }
  return out;
}
