// Float64 CPU references of kernels/token_mixer.ts, written from spec §2.3–2.4. The LRPE angle is the fp32
// product fl(θ·pos), as the official code computes it in fp32; everything after it is float64.

import { sigmoidRef } from "./elementwise_ref.ts";
import type { MixerShape } from "./token_mixer.ts";

type Num = ArrayLike<number>;

const fp32Angle = (theta: number, pos: number) => Math.fround(Math.fround(theta) * pos);
const exactAngle = (theta: number, pos: number) => theta * pos;

export function qkvPrepRef(
  s: MixerShape,
  qkvu: Num,
  theta: Num | null,
  offset = 0,
  /** false: angles in float64 too (for finite-difference checks of dθ) */
  fp32Angles = true,
): { q: Float64Array; k: Float64Array; v: Float64Array } {
  const angle = fp32Angles ? fp32Angle : exactAngle;
  const e = s.h * s.d, dq = theta ? 2 * s.d : s.d;
  const q = new Float64Array(s.b * s.h * s.t * dq),
    k = new Float64Array(q.length),
    v = new Float64Array(s.b * s.t * e);
  for (let b = 0; b < s.b; b++) {
    for (let t = 0; t < s.t; t++) {
      const n = b * s.t + t;
      for (let c = 0; c < e; c++) {
        const h = Math.floor(c / s.d), j = c % s.d;
        const qr = qkvu[n * 4 * e + c], kr = qkvu[n * 4 * e + e + c];
        const sq = qr * sigmoidRef(qr), sk = kr * sigmoidRef(kr);
        const row = (b * s.h + h) * s.t + t;
        if (theta) {
          const a = angle(theta[c], t + offset);
          q[row * dq + j] = sq * Math.cos(a);
          q[row * dq + s.d + j] = sq * Math.sin(a);
          k[row * dq + j] = sk * Math.cos(a);
          k[row * dq + s.d + j] = sk * Math.sin(a);
        } else {
          q[row * dq + j] = sq;
          k[row * dq + j] = sk;
        }
        v[row * s.d + j] = qkvu[n * 4 * e + 2 * e + c];
      }
    }
  }
  return { q, k, v };
}

/** d(qkvu)[:, 0..3E) (u columns left 0) and dθ [E] from dq, dk, dv. */
export function qkvPrepBackwardRef(
  s: MixerShape,
  qkvu: Num,
  theta: Num | null,
  dq: Num,
  dk: Num,
  dv: Num,
  offset = 0,
  fp32Angles = true,
): { dqkvu: Float64Array; dtheta: Float64Array } {
  const angle = fp32Angles ? fp32Angle : exactAngle;
  const e = s.h * s.d, dqw = theta ? 2 * s.d : s.d;
  const dqkvu = new Float64Array(s.b * s.t * 4 * e), dtheta = new Float64Array(e);
  const dsilu = (x: number) => {
    const g = sigmoidRef(x);
    return g * (1 + x * (1 - g));
  };
  for (let b = 0; b < s.b; b++) {
    for (let t = 0; t < s.t; t++) {
      const n = b * s.t + t;
      for (let c = 0; c < e; c++) {
        const h = Math.floor(c / s.d), j = c % s.d;
        const qr = qkvu[n * 4 * e + c], kr = qkvu[n * 4 * e + e + c];
        const row = (b * s.h + h) * s.t + t;
        let gq: number, gk: number;
        if (theta) {
          const pos = t + offset, a = angle(theta[c], pos), co = Math.cos(a), si = Math.sin(a);
          const aq = dq[row * dqw + j], bq = dq[row * dqw + s.d + j];
          const ak = dk[row * dqw + j], bk = dk[row * dqw + s.d + j];
          gq = aq * co + bq * si;
          gk = ak * co + bk * si;
          const sq = qr * sigmoidRef(qr), sk = kr * sigmoidRef(kr);
          dtheta[c] += pos * (sq * (bq * co - aq * si) + sk * (bk * co - ak * si));
        } else {
          gq = dq[row * dqw + j];
          gk = dk[row * dqw + j];
        }
        dqkvu[n * 4 * e + c] = gq * dsilu(qr);
        dqkvu[n * 4 * e + e + c] = gk * dsilu(kr);
        dqkvu[n * 4 * e + 2 * e + c] = dv[row * s.d + j];
      }
    }
  }
  return { dqkvu, dtheta };
}

/** og = u ⊙ SRMSNorm(merge(o)) over E (and the normalized on, rstd). */
export function normGateRef(
  s: MixerShape,
  o: Num,
  qkvu: Num,
  eps = 1e-6,
): { on: Float64Array; rstd: Float64Array; og: Float64Array } {
  const e = s.h * s.d, n = s.b * s.t;
  const on = new Float64Array(n * e), og = new Float64Array(n * e), rstd = new Float64Array(n);
  for (let b = 0; b < s.b; b++) {
    for (let t = 0; t < s.t; t++) {
      const r = b * s.t + t;
      const merged = new Float64Array(e);
      for (let c = 0; c < e; c++) {
        merged[c] = o[((b * s.h + Math.floor(c / s.d)) * s.t + t) * s.d + (c % s.d)];
      }
      let ss = 0;
      for (const x of merged) ss += x * x;
      rstd[r] = 1 / Math.sqrt(ss / e + eps);
      for (let c = 0; c < e; c++) {
        on[r * e + c] = merged[c] * rstd[r];
        og[r * e + c] = qkvu[r * 4 * e + 3 * e + c] * on[r * e + c];
      }
    }
  }
  return { on, rstd, og };
}

/** du (as [N, E]) and do (as [B, H, T, d]) from dog, recomputing the forward from o. */
export function normGateBackwardRef(
  s: MixerShape,
  o: Num,
  qkvu: Num,
  dog: Num,
  eps = 1e-6,
): { du: Float64Array; dO: Float64Array } {
  const e = s.h * s.d, n = s.b * s.t;
  const { on, rstd } = normGateRef(s, o, qkvu, eps);
  const du = new Float64Array(n * e), dO = new Float64Array(n * e);
  for (let b = 0; b < s.b; b++) {
    for (let t = 0; t < s.t; t++) {
      const r = b * s.t + t;
      let dot = 0;
      for (let c = 0; c < e; c++) dot += dog[r * e + c] * qkvu[r * 4 * e + 3 * e + c] * on[r * e + c];
      const m = dot / e;
      for (let c = 0; c < e; c++) {
        const g = dog[r * e + c], u = qkvu[r * 4 * e + 3 * e + c];
        du[r * e + c] = g * on[r * e + c];
        dO[((b * s.h + Math.floor(c / s.d)) * s.t + t) * s.d + (c % s.d)] = rstd[r] *
          (g * u - on[r * e + c] * m);
      }
    }
  }
  return { du, dO };
}
