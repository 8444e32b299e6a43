// Error measures (ours vs a float64 reference) and order statistics.

export interface ErrorStats {
  /** max |ours − ref| */
  maxAbs: number;
  /** max |ref| */
  maxRef: number;
  /** ‖ours − ref‖₂ / ‖ref‖₂ (‖ours − ref‖₂ when ref is all zero) */
  rel: number;
  /** count of non-finite values in ours where ref is finite */
  nonFinite: number;
}

export function errorStats(ours: ArrayLike<number>, ref: ArrayLike<number>): ErrorStats {
  if (ours.length !== ref.length) throw new Error(`length ${ours.length} vs reference ${ref.length}`);
  let maxAbs = 0, maxRef = 0, diff2 = 0, ref2 = 0, nonFinite = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i], o = ours[i];
    if (!Number.isFinite(o) && Number.isFinite(r)) nonFinite++;
    const d = Math.abs(o - r);
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
    maxRef = Math.max(maxRef, Math.abs(r));
    diff2 += d * d;
    ref2 += r * r;
  }
  const rel = ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2);
  return { maxAbs, maxRef, rel: Number.isNaN(rel) ? Infinity : rel, nonFinite };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}
