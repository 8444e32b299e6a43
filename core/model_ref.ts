// A float64 CPU TransNormerLLM, forward and backward, written from spec §2 without reuse of the GPU code
// path: the reference the GPU model is tested against on configurations the official fixture does not
// cover (other depths and head counts, no LRPE, tied heads, pad ids, non-power-of-two heads). The only
// fp32 steps are the ones the official code takes in fp32 and that change results beyond rounding: the
// decay rates and the LRPE angle θ·t.

import type { ModelDims } from "./config.ts";
import { tnlDecayRates } from "../kernels/lightning.ts";

export type RefParams = Map<string, Float64Array>;

const sig = (x: number) => 1 / (1 + Math.exp(-x));

export interface RefForward {
  logits: Float64Array; // [B, T, V]
  /** mean next-token cross-entropy over B·(T − 1) predictions (when targets are the shifted ids) */
  loss: number;
}

/** Names and shapes of the parameters, as HF's state dict (spec §2.10). */
export function refParamShapes(m: ModelDims): [string, number[]][] {
  const out: [string, number[]][] = [["model.embed_tokens.weight", [m.vocab, m.d]]];
  for (let l = 0; l < m.layers; l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.token_mixer.qkvu_proj.weight`, [4 * m.e, m.d]], [`${p}.token_mixer.out_proj.weight`, [
      m.d,
      m.e,
    ]]);
    if (m.lrpe[l]) out.push([`${p}.token_mixer.lrpe.theta`, [m.heads, 1, m.headDim]]);
    out.push(
      [`${p}.channel_mixer.l1.weight`, [m.glu, m.d]],
      [`${p}.channel_mixer.l2.weight`, [m.glu, m.d]],
      [`${p}.channel_mixer.l3.weight`, [m.d, m.glu]],
    );
  }
  if (!m.tied) out.push(["lm_head.weight", [m.vocab, m.d]]);
  return out;
}

// y[n, o] = Σ_i x[n, i] W[o, i]
function lin(x: Float64Array, w: Float64Array, n: number, inF: number, outF: number): Float64Array {
  const y = new Float64Array(n * outF);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

// dx = dy·W, dW += dyᵀ·x
function linBack(
  x: Float64Array,
  w: Float64Array,
  dy: Float64Array,
  n: number,
  inF: number,
  outF: number,
  dw: Float64Array,
) {
  const dx = new Float64Array(n * inF);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < outF; o++) {
      const g = dy[r * outF + o];
      if (g === 0) continue;
      for (let i = 0; i < inF; i++) {
        dx[r * inF + i] += g * w[o * inF + i];
        dw[o * inF + i] += g * x[r * inF + i];
      }
    }
  }
  return dx;
}

function norm(x: Float64Array, n: number, d: number) {
  const y = new Float64Array(n * d), r = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x[i * d + c] ** 2;
    r[i] = 1 / Math.sqrt(ss / d + 1e-6);
    for (let c = 0; c < d; c++) y[i * d + c] = x[i * d + c] * r[i];
  }
  return { y, r };
}

function normBack(y: Float64Array, r: Float64Array, dy: Float64Array, n: number, d: number): Float64Array {
  const dx = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let dot = 0;
    for (let c = 0; c < d; c++) dot += dy[i * d + c] * y[i * d + c];
    for (let c = 0; c < d; c++) dx[i * d + c] = r[i] * (dy[i * d + c] - (y[i * d + c] * dot) / d);
  }
  return dx;
}

interface LayerCache {
  xn1: Float64Array;
  r1: Float64Array;
  qkvu: Float64Array;
  q: Float64Array; // [B, H, T, dq] after SiLU (+ LRPE)
  k: Float64Array;
  v: Float64Array; // [B, H, T, d]
  on: Float64Array;
  ro: Float64Array;
  og: Float64Array;
  xn2: Float64Array;
  r2: Float64Array;
  h1: Float64Array;
  h2: Float64Array;
  g: Float64Array;
}

/**
 * Forward (and, with `wantGrads`, backward of the mean loss) of the model on ids [B, T]. The loss predicts
 * ids[b, t + 1] from position t (positions whose target equals `ignoreId` are skipped; none by default).
 */
export function modelRef(
  m: ModelDims,
  params: RefParams,
  ids: ArrayLike<number>,
  B: number,
  T: number,
  wantGrads = false,
): RefForward & { grads?: RefParams } {
  const P = (name: string) => {
    const p = params.get(name);
    if (!p) throw new Error(`reference model: missing ${name}`);
    return p;
  };
  const { d: D, e: E, heads: H, headDim: hd, glu: F, vocab: V } = m;
  const N = B * T;
  const emb = P("model.embed_tokens.weight");
  const head = m.tied ? emb : P("lm_head.weight");
  let x = new Float64Array(N * D);
  for (let n = 0; n < N; n++) for (let c = 0; c < D; c++) x[n * D + c] = m.embedScale * emb[ids[n] * D + c];
  const caches: LayerCache[] = [];
  const rates = Array.from({ length: m.layers }, (_, l) => tnlDecayRates(H, l, m.layers));
  for (let l = 0; l < m.layers; l++) {
    const pre = `model.layers.${l}`;
    const { y: xn1, r: r1 } = norm(x, N, D);
    const qkvu = lin(xn1, P(`${pre}.token_mixer.qkvu_proj.weight`), N, D, 4 * E);
    const lrpe = m.lrpe[l];
    const theta = lrpe ? P(`${pre}.token_mixer.lrpe.theta`) : null;
    const dq = lrpe ? 2 * hd : hd;
    const q = new Float64Array(B * H * T * dq), k = new Float64Array(q.length), v = new Float64Array(N * E);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const n = b * T + t;
        for (let c = 0; c < E; c++) {
          const h = Math.floor(c / hd), j = c % hd, row = (b * H + h) * T + t;
          const qr = qkvu[n * 4 * E + c], kr = qkvu[n * 4 * E + E + c];
          const sq = qr * sig(qr), sk = kr * sig(kr);
          if (theta) {
            const a = Math.fround(Math.fround(theta[c]) * t);
            q[row * dq + j] = sq * Math.cos(a);
            q[row * dq + hd + j] = sq * Math.sin(a);
            k[row * dq + j] = sk * Math.cos(a);
            k[row * dq + hd + j] = sk * Math.sin(a);
          } else {
            q[row * dq + j] = sq;
            k[row * dq + j] = sk;
          }
          v[row * hd + j] = qkvu[n * 4 * E + 2 * E + c];
        }
      }
    }
    // o_t = Σ_{s ≤ t} λ^{t−s} (q_t · k_s) v_s
    const o = new Float64Array(N * E);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const s = rates[l][h];
        for (let t = 0; t < T; t++) {
          const qi = ((b * H + h) * T + t) * dq;
          for (let u = 0; u <= t; u++) {
            const ki = ((b * H + h) * T + u) * dq;
            let a = 0;
            for (let j = 0; j < dq; j++) a += q[qi + j] * k[ki + j];
            a *= Math.exp(-s * (t - u));
            for (let j = 0; j < hd; j++) {
              o[((b * H + h) * T + t) * hd + j] += a * v[((b * H + h) * T + u) * hd + j];
            }
          }
        }
      }
    }
    // merge heads, norm over E, gate
    const merged = new Float64Array(N * E);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < E; c++) {
          merged[(b * T + t) * E + c] = o[((b * H + Math.floor(c / hd)) * T + t) * hd + (c % hd)];
        }
      }
    }
    const { y: on, r: ro } = norm(merged, N, E);
    const og = new Float64Array(N * E);
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < E; c++) og[n * E + c] = qkvu[n * 4 * E + 3 * E + c] * on[n * E + c];
    }
    const mix = lin(og, P(`${pre}.token_mixer.out_proj.weight`), N, E, D);
    x = x.map((val, i) => val + mix[i]);
    const { y: xn2, r: r2 } = norm(x, N, D);
    const h1 = lin(xn2, P(`${pre}.channel_mixer.l1.weight`), N, D, F);
    const h2 = lin(xn2, P(`${pre}.channel_mixer.l2.weight`), N, D, F);
    const g = h1.map((val, i) => val * h2[i]);
    const ch = lin(g, P(`${pre}.channel_mixer.l3.weight`), N, F, D);
    x = x.map((val, i) => val + ch[i]);
    caches.push({ xn1, r1, qkvu, q, k, v, on, ro, og, xn2, r2, h1, h2, g });
  }
  const { y: xf, r: rf } = norm(x, N, D);
  const logits = lin(xf, head, N, D, V);
  // mean NLL of ids[b, t+1] at position t
  let loss = 0, count = 0;
  const dlogits = new Float64Array(N * V);
  const rowsLse: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const n = b * T + t, target = ids[n + 1];
      let mx = -Infinity;
      for (let c = 0; c < V; c++) mx = Math.max(mx, logits[n * V + c]);
      let s = 0;
      for (let c = 0; c < V; c++) s += Math.exp(logits[n * V + c] - mx);
      const lse = mx + Math.log(s);
      rowsLse.push(lse);
      loss += lse - logits[n * V + target];
      count++;
      for (let c = 0; c < V; c++) {
        dlogits[n * V + c] = Math.exp(logits[n * V + c] - lse) - (c === target ? 1 : 0);
      }
    }
  }
  loss /= count;
  if (!wantGrads) return { logits, loss };

  // ---------------------------------------------------------------- backward
  for (let i = 0; i < dlogits.length; i++) dlogits[i] /= count;
  const grads: RefParams = new Map();
  for (const [name, shape] of refParamShapes(m)) {
    grads.set(
      name,
      new Float64Array(shape.reduce((a, c) => a * c, 1)),
    );
  }
  const G = (name: string) => grads.get(name)!;
  const dxf = linBack(
    xf,
    head,
    dlogits,
    N,
    D,
    V,
    m.tied ? G("model.embed_tokens.weight") : G("lm_head.weight"),
  );
  let dx = normBack(xf, rf, dxf, N, D);
  for (let l = m.layers - 1; l >= 0; l--) {
    const pre = `model.layers.${l}`;
    const c = caches[l];
    const lrpe = m.lrpe[l];
    const dq = lrpe ? 2 * hd : hd;
    // channel mixer
    const dg = linBack(
      c.g,
      P(`${pre}.channel_mixer.l3.weight`),
      dx,
      N,
      F,
      D,
      G(`${pre}.channel_mixer.l3.weight`),
    );
    const dh1 = dg.map((val, i) => val * c.h2[i]), dh2 = dg.map((val, i) => val * c.h1[i]);
    const dxn2a = linBack(
      c.xn2,
      P(`${pre}.channel_mixer.l1.weight`),
      dh1,
      N,
      D,
      F,
      G(`${pre}.channel_mixer.l1.weight`),
    );
    const dxn2b = linBack(
      c.xn2,
      P(`${pre}.channel_mixer.l2.weight`),
      dh2,
      N,
      D,
      F,
      G(`${pre}.channel_mixer.l2.weight`),
    );
    const dn2 = normBack(c.xn2, c.r2, dxn2a.map((val, i) => val + dxn2b[i]), N, D);
    dx = dx.map((val, i) => val + dn2[i]);
    // token mixer
    const dog = linBack(
      c.og,
      P(`${pre}.token_mixer.out_proj.weight`),
      dx,
      N,
      E,
      D,
      G(`${pre}.token_mixer.out_proj.weight`),
    );
    const dqkvu = new Float64Array(N * 4 * E);
    const don = new Float64Array(N * E);
    for (let n = 0; n < N; n++) {
      for (let ch = 0; ch < E; ch++) {
        dqkvu[n * 4 * E + 3 * E + ch] = dog[n * E + ch] * c.on[n * E + ch];
        don[n * E + ch] = dog[n * E + ch] * c.qkvu[n * 4 * E + 3 * E + ch];
      }
    }
    const dmerged = normBack(c.on, c.ro, don, N, E);
    const dO = new Float64Array(N * E);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let ch = 0; ch < E; ch++) {
          dO[((b * H + Math.floor(ch / hd)) * T + t) * hd + (ch % hd)] = dmerged[(b * T + t) * E + ch];
        }
      }
    }
    const dQ = new Float64Array(c.q.length),
      dK = new Float64Array(c.k.length),
      dV = new Float64Array(c.v.length);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const s = rates[l][h];
        const base = (b * H + h) * T;
        for (let t = 0; t < T; t++) {
          for (let u = 0; u <= t; u++) {
            const w = Math.exp(-s * (t - u));
            let qk = 0, dov = 0;
            for (let j = 0; j < dq; j++) qk += c.q[(base + t) * dq + j] * c.k[(base + u) * dq + j];
            for (let j = 0; j < hd; j++) dov += dO[(base + t) * hd + j] * c.v[(base + u) * hd + j];
            for (let j = 0; j < dq; j++) {
              dQ[(base + t) * dq + j] += w * dov * c.k[(base + u) * dq + j];
              dK[(base + u) * dq + j] += w * dov * c.q[(base + t) * dq + j];
            }
            for (let j = 0; j < hd; j++) dV[(base + u) * hd + j] += w * qk * dO[(base + t) * hd + j];
          }
        }
      }
    }
    const theta = lrpe ? P(`${pre}.token_mixer.lrpe.theta`) : null;
    const dtheta = lrpe ? G(`${pre}.token_mixer.lrpe.theta`) : null;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const n = b * T + t;
        for (let ch = 0; ch < E; ch++) {
          const h = Math.floor(ch / hd), j = ch % hd, row = (b * H + h) * T + t;
          const qr = c.qkvu[n * 4 * E + ch], kr = c.qkvu[n * 4 * E + E + ch];
          let gq: number, gk: number;
          if (theta && dtheta) {
            const a = Math.fround(Math.fround(theta[ch]) * t), co = Math.cos(a), si = Math.sin(a);
            const aq = dQ[row * dq + j],
              bq = dQ[row * dq + hd + j],
              ak = dK[row * dq + j],
              bk = dK[row * dq + hd + j];
            gq = aq * co + bq * si;
            gk = ak * co + bk * si;
            dtheta[ch] += t * (qr * sig(qr) * (bq * co - aq * si) + kr * sig(kr) * (bk * co - ak * si));
          } else {
            gq = dQ[row * dq + j];
            gk = dK[row * dq + j];
          }
          const sq = sig(qr), sk = sig(kr);
          dqkvu[n * 4 * E + ch] = gq * sq * (1 + qr * (1 - sq));
          dqkvu[n * 4 * E + E + ch] = gk * sk * (1 + kr * (1 - sk));
          dqkvu[n * 4 * E + 2 * E + ch] = dV[row * hd + j];
        }
      }
    }
    const dxn1 = linBack(
      c.xn1,
      P(`${pre}.token_mixer.qkvu_proj.weight`),
      dqkvu,
      N,
      D,
      4 * E,
      G(`${pre}.token_mixer.qkvu_proj.weight`),
    );
    const dn1 = normBack(c.xn1, c.r1, dxn1, N, D);
    dx = dx.map((val, i) => val + dn1[i]);
  }
  const demb = G("model.embed_tokens.weight");
  for (let n = 0; n < N; n++) {
    if (ids[n] === m.padId) continue;
    for (let c = 0; c < D; c++) demb[ids[n] * D + c] += m.embedScale * dx[n * D + c];
  }
  void rowsLse;
  return { logits, loss, grads };
}
