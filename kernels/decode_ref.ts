// Float64 CPU references of the decode-step kernels (kernels/decode.ts), from spec §2.3, §2.7 and §5.1.

import { qkvPrepRef } from "./token_mixer_ref.ts";

type Num = ArrayLike<number>;

export interface GemvRefArgs {
  nb: number;
  out: number;
  in: number;
  norm?: boolean;
  beta?: number;
  eps?: number;
  aOffset?: number;
  aStride?: number;
  bOffset?: number;
  bStride?: number;
  yOffset?: number;
  yStride?: number;
}

/** y[b, o] = s_b · Σ_c w[o, c]·x_b[c] + beta·y0[b, o], x_b = a_b (⊙ b_b), s_b = SRMSNorm scale of a_b or 1. */
export function gemvRef(a: Num, b: Num | null, w: Num, y0: Num | null, g: GemvRefArgs): Float64Array {
  const inF = g.in, eps = g.eps ?? 1e-6;
  const aOff = g.aOffset ?? 0, aStride = g.aStride ?? inF;
  const bOff = g.bOffset ?? 0, bStride = g.bStride ?? inF;
  const yOff = g.yOffset ?? 0, yStride = g.yStride ?? g.out;
  const y = y0 ? Float64Array.from(y0) : new Float64Array(yOff + (g.nb - 1) * yStride + g.out);
  for (let s = 0; s < g.nb; s++) {
    const x = new Float64Array(inF);
    let ss = 0;
    for (let c = 0; c < inF; c++) {
      const av = a[aOff + s * aStride + c];
      ss += av * av;
      x[c] = b ? av * b[bOff + s * bStride + c] : av;
    }
    const scale = g.norm ? 1 / Math.sqrt(ss / inF + eps) : 1;
    for (let o = 0; o < g.out; o++) {
      let dot = 0;
      for (let c = 0; c < inF; c++) dot += w[o * inF + c] * x[c];
      const yi = yOff + s * yStride + o;
      y[yi] = scale * dot + (g.beta ?? 0) * (y0 ? y0[yi] : 0);
    }
  }
  return y;
}

/**
 * One token of the recurrence with the input stage (SiLU, LRPE at positions[b]) for every sequence: returns
 * the new state kv [B, H, dk, d] and o [B, H, d]. `decay` holds λ per head.
 */
export function recurrentStepRef(
  qkvu: Num,
  theta: Num | null,
  positions: readonly number[],
  decay: Num,
  kv0: Num,
  dims: { B: number; H: number; d: number },
): { kv: Float64Array; o: Float64Array } {
  const { B, H, d } = dims, e = H * d, dk = theta ? 2 * d : d;
  const kv = Float64Array.from(kv0);
  const o = new Float64Array(B * e);
  for (let b = 0; b < B; b++) {
    const row = Array.from({ length: 4 * e }, (_, i) => qkvu[b * 4 * e + i]);
    const { q, k, v } = qkvPrepRef({ b: 1, t: 1, h: H, d }, row, theta, positions[b]);
    for (let h = 0; h < H; h++) {
      const state = kv.subarray((b * H + h) * dk * d, (b * H + h + 1) * dk * d);
      for (let i = 0; i < dk; i++) {
        for (let j = 0; j < d; j++) {
          state[i * d + j] = decay[h] * state[i * d + j] + k[h * dk + i] * v[h * d + j];
        }
      }
      for (let j = 0; j < d; j++) {
        let s = 0;
        for (let i = 0; i < dk; i++) s += q[h * dk + i] * state[i * d + j];
        o[(b * H + h) * d + j] = s;
      }
    }
  }
  return { kv, o };
}
