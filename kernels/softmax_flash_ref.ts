// Float64 CPU reference of causal softmax attention (kernels/softmax_flash.ts), per (batch, head):
//   O = softmax(scale·Q Kᵀ + causal mask) V,  scale = 1/√d,  L_t = log Σ_{s≤t} exp(scale·q_t·k_s)
// and its gradients. Layout: q, k [B, H, T, d]; v, o [B, H, T, e]; L [B, H, T].

import type { AttnDims, Grads } from "./lightning_ref.ts";

type Num = ArrayLike<number>;

export function softmaxAttentionRef(
  q: Num,
  k: Num,
  v: Num,
  dims: AttnDims,
): { o: Float64Array; lse: Float64Array } {
  const { B, H, T, d, e } = dims;
  const scale = 1 / Math.sqrt(d);
  const o = new Float64Array(B * H * T * e);
  const lse = new Float64Array(B * H * T);
  const x = new Float64Array(T);
  for (let bh = 0; bh < B * H; bh++) {
    const qo = bh * T * d, vo = bh * T * e;
    for (let t = 0; t < T; t++) {
      let mx = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + t * d + i] * k[qo + s * d + i];
        x[s] = dot * scale;
        mx = Math.max(mx, x[s]);
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) sum += Math.exp(x[s] - mx);
      lse[bh * T + t] = mx + Math.log(sum);
      for (let s = 0; s <= t; s++) {
        const pr = Math.exp(x[s] - mx) / sum;
        for (let j = 0; j < e; j++) o[vo + t * e + j] += pr * v[vo + s * e + j];
      }
    }
  }
  return { o, lse };
}

/** dS = P ⊙ (dO Vᵀ − D), D_t = Σ_j dO_tj O_tj; dQ = scale·dS K, dK = scale·dSᵀ Q, dV = Pᵀ dO. */
export function softmaxAttentionBackwardRef(q: Num, k: Num, v: Num, dO: Num, dims: AttnDims): Grads {
  const { B, H, T, d, e } = dims;
  const scale = 1 / Math.sqrt(d);
  const { o, lse } = softmaxAttentionRef(q, k, v, dims);
  const dq = new Float64Array(B * H * T * d);
  const dk = new Float64Array(B * H * T * d);
  const dv = new Float64Array(B * H * T * e);
  for (let bh = 0; bh < B * H; bh++) {
    const qo = bh * T * d, vo = bh * T * e;
    for (let t = 0; t < T; t++) {
      let delta = 0;
      for (let j = 0; j < e; j++) delta += dO[vo + t * e + j] * o[vo + t * e + j];
      for (let s = 0; s <= t; s++) {
        let qk = 0, dov = 0;
        for (let i = 0; i < d; i++) qk += q[qo + t * d + i] * k[qo + s * d + i];
        for (let j = 0; j < e; j++) dov += dO[vo + t * e + j] * v[vo + s * e + j];
        const pr = Math.exp(qk * scale - lse[bh * T + t]);
        const ds = pr * (dov - delta) * scale;
        for (let i = 0; i < d; i++) {
          dq[qo + t * d + i] += ds * k[qo + s * d + i];
          dk[qo + s * d + i] += ds * q[qo + t * d + i];
        }
        for (let j = 0; j < e; j++) dv[vo + s * e + j] += pr * dO[vo + t * e + j];
      }
    }
  }
  return { dq, dk, dv };
}
