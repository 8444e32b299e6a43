// Float64 CPU references of decayed causal linear attention (kernels/lightning.ts), per (batch, head):
//   O = [(Q Kᵀ) ⊙ M] V,  M_ts = λ^(t−s) for t ≥ s, else 0,  λ = e^(−s_h)
// in two independent forms that must agree: the quadratic formula and the recurrence
//   kv_t = λ·kv_{t−1} + k_tᵀ v_t,  o_t = q_t·kv_t  (kv_{−1} = 0).
// Layout: q, k [B, H, T, d]; v, o [B, H, T, e]; slopes [H] (the rate s_h, not λ); state [B, H, d, e].
// Decay factors are exp(−s·n) in float64 with s the given (fp32) rate.

type Num = ArrayLike<number>;

export interface AttnDims {
  B: number;
  H: number;
  T: number;
  d: number;
  e: number;
}

export interface Grads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/** Quadratic form: o_t = Σ_{s≤t} λ^(t−s) (q_t·k_s) v_s. O(T²·(d+e)) per head. */
export function lightningRef(q: Num, k: Num, v: Num, slopes: Num, dims: AttnDims): Float64Array {
  const { B, H, T, d, e } = dims;
  const o = new Float64Array(B * H * T * e);
  for (let bh = 0; bh < B * H; bh++) {
    const s = slopes[bh % H];
    const qo = bh * T * d, vo = bh * T * e;
    for (let t = 0; t < T; t++) {
      for (let u = 0; u <= t; u++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + t * d + i] * k[qo + u * d + i];
        const w = dot * Math.exp(-s * (t - u));
        for (let j = 0; j < e; j++) o[vo + t * e + j] += w * v[vo + u * e + j];
      }
    }
  }
  return o;
}

/**
 * Recurrence form; also returns the state decayed to the last token, kv_{T−1} [B, H, d, e]. With `init`
 * ([B, H, d, e]) the recurrence continues from kv_{−1} = init (a sequence cut into parts).
 */
export function lightningRecurrenceRef(
  q: Num,
  k: Num,
  v: Num,
  slopes: Num,
  dims: AttnDims,
  init?: Num,
): { o: Float64Array; state: Float64Array } {
  const { B, H, T, d, e } = dims;
  const o = new Float64Array(B * H * T * e);
  const state = init ? Float64Array.from(init) : new Float64Array(B * H * d * e);
  for (let bh = 0; bh < B * H; bh++) {
    const lambda = Math.exp(-slopes[bh % H]);
    const qo = bh * T * d, vo = bh * T * e;
    const kv = state.subarray(bh * d * e, (bh + 1) * d * e);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < d; i++) {
        const ki = k[qo + t * d + i];
        for (let j = 0; j < e; j++) kv[i * e + j] = lambda * kv[i * e + j] + ki * v[vo + t * e + j];
      }
      for (let i = 0; i < d; i++) {
        const qi = q[qo + t * d + i];
        for (let j = 0; j < e; j++) o[vo + t * e + j] += qi * kv[i * e + j];
      }
    }
  }
  return { o, state };
}

/**
 * Gradients of the quadratic form for the output gradient dO:
 *   dq_t = Σ_{s≤t} λ^(t−s) (do_t·v_s) k_s,  dk_s = Σ_{t≥s} λ^(t−s) (do_t·v_s) q_t,
 *   dv_s = Σ_{t≥s} λ^(t−s) (q_t·k_s) do_t.
 */
export function lightningBackwardRef(
  q: Num,
  k: Num,
  v: Num,
  dO: Num,
  slopes: Num,
  dims: AttnDims,
): Grads {
  const { B, H, T, d, e } = dims;
  const dq = new Float64Array(B * H * T * d);
  const dk = new Float64Array(B * H * T * d);
  const dv = new Float64Array(B * H * T * e);
  for (let bh = 0; bh < B * H; bh++) {
    const s = slopes[bh % H];
    const qo = bh * T * d, vo = bh * T * e;
    for (let t = 0; t < T; t++) {
      for (let u = 0; u <= t; u++) {
        const decay = Math.exp(-s * (t - u));
        let qk = 0, dov = 0;
        for (let i = 0; i < d; i++) qk += q[qo + t * d + i] * k[qo + u * d + i];
        for (let j = 0; j < e; j++) dov += dO[vo + t * e + j] * v[vo + u * e + j];
        const a = dov * decay, b = qk * decay;
        for (let i = 0; i < d; i++) {
          dq[qo + t * d + i] += a * k[qo + u * d + i];
          dk[qo + u * d + i] += a * q[qo + t * d + i];
        }
        for (let j = 0; j < e; j++) dv[vo + u * e + j] += b * dO[vo + t * e + j];
      }
    }
  }
  return { dq, dk, dv };
}

/**
 * Gradients through the recurrence: dq_t = kv_t·do_t; with dkv_t = λ·dkv_{t+1} + q_tᵀ do_t (reverse),
 * dk_t = dkv_t·v_t and dv_t = k_t·dkv_t.
 */
export function lightningRecurrenceBackwardRef(
  q: Num,
  k: Num,
  v: Num,
  dO: Num,
  slopes: Num,
  dims: AttnDims,
): Grads {
  const { B, H, T, d, e } = dims;
  const dq = new Float64Array(B * H * T * d);
  const dk = new Float64Array(B * H * T * d);
  const dv = new Float64Array(B * H * T * e);
  const kv = new Float64Array(d * e);
  for (let bh = 0; bh < B * H; bh++) {
    const lambda = Math.exp(-slopes[bh % H]);
    const qo = bh * T * d, vo = bh * T * e;
    kv.fill(0);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < d; i++) {
        const ki = k[qo + t * d + i];
        let acc = 0;
        for (let j = 0; j < e; j++) {
          kv[i * e + j] = lambda * kv[i * e + j] + ki * v[vo + t * e + j];
          acc += kv[i * e + j] * dO[vo + t * e + j];
        }
        dq[qo + t * d + i] = acc;
      }
    }
    kv.fill(0); // dkv
    for (let t = T - 1; t >= 0; t--) {
      for (let i = 0; i < d; i++) {
        const qi = q[qo + t * d + i];
        let acc = 0;
        for (let j = 0; j < e; j++) {
          kv[i * e + j] = lambda * kv[i * e + j] + qi * dO[vo + t * e + j];
          acc += kv[i * e + j] * v[vo + t * e + j];
        }
        dk[qo + t * d + i] = acc;
      }
      for (let j = 0; j < e; j++) {
        let acc = 0;
        for (let i = 0; i < d; i++) acc += k[qo + t * d + i] * kv[i * e + j];
        dv[vo + t * e + j] = acc;
      }
    }
  }
  return { dq, dk, dv };
}
