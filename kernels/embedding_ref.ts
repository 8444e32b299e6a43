// Float64 CPU reference of kernels/embedding.ts.

type Num = ArrayLike<number>;

export function embeddingRef(ids: Num, emb: Num, d: number, scale: number): Float64Array {
  const x = new Float64Array(ids.length * d);
  for (let n = 0; n < ids.length; n++) for (let c = 0; c < d; c++) x[n * d + c] = scale * emb[ids[n] * d + c];
  return x;
}

/** d(loss)/d(emb) given d(loss)/d(x); the pad row gets nothing (padding_idx). */
export function embeddingBackwardRef(
  ids: Num,
  dx: Num,
  vocab: number,
  d: number,
  scale: number,
  padId: number | null,
): Float64Array {
  const demb = new Float64Array(vocab * d);
  for (let n = 0; n < ids.length; n++) {
    if (ids[n] === padId) continue;
    for (let c = 0; c < d; c++) demb[ids[n] * d + c] += scale * dx[n * d + c];
  }
  return demb;
}
