// Float64 CPU reference of kernels/cross_entropy.ts.

type Num = ArrayLike<number>;

export function crossEntropyRef(
  logits: Num,
  targets: Num,
  rows: number,
  vocab: number,
  gradScale: number,
  ignoreIndex = -100,
): { loss: Float64Array; dlogits: Float64Array } {
  const loss = new Float64Array(rows), dlogits = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    let m = -Infinity;
    for (let c = 0; c < vocab; c++) m = Math.max(m, logits[r * vocab + c]);
    let s = 0;
    for (let c = 0; c < vocab; c++) s += Math.exp(logits[r * vocab + c] - m);
    const lse = m + Math.log(s);
    loss[r] = lse - logits[r * vocab + t];
    for (let c = 0; c < vocab; c++) {
      dlogits[r * vocab + c] = gradScale * (Math.exp(logits[r * vocab + c] - lse) - (c === t ? 1 : 0));
    }
  }
  return { loss, dlogits };
}

/** 1 where the target's logit is larger than every other logit of its row (0 on ties and ignored rows). */
export function crossEntropyHitsRef(
  logits: Num,
  targets: Num,
  rows: number,
  vocab: number,
  ignoreIndex = -100,
): Float64Array {
  const hits = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    let unique = true;
    for (let c = 0; c < vocab; c++) {
      if (c !== t && logits[r * vocab + c] >= logits[r * vocab + t]) unique = false;
    }
    hits[r] = unique ? 1 : 0;
  }
  return hits;
}
