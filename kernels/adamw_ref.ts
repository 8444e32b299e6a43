// Float64 CPU reference of kernels/adamw.ts: torch.nn.utils.clip_grad_norm_ then torch.optim.AdamW.

import type { AdamWHyper } from "./adamw.ts";

export interface AdamWState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** Updates the state in place; returns false (and changes nothing) when the gradient norm is not finite. */
export function adamwRef(
  s: AdamWState,
  grad: ArrayLike<number>,
  h: AdamWHyper,
  decayEnd = s.p.length,
): boolean {
  let ss = 0;
  for (let i = 0; i < grad.length; i++) ss += grad[i] * grad[i];
  const norm = Math.sqrt(ss);
  if (!Number.isFinite(norm)) return false;
  const coef = h.clip > 0 ? Math.min(1, h.clip / (norm + 1e-6)) : 1;
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < s.p.length; i++) {
    const g = grad[i] * coef;
    if (i < decayEnd) s.p[i] *= 1 - h.lr * h.weightDecay;
    s.m[i] += (1 - h.beta1) * (g - s.m[i]);
    s.v[i] = h.beta2 * s.v[i] + (1 - h.beta2) * g * g;
    s.p[i] -= (h.lr / bc1) * s.m[i] / (Math.sqrt(s.v[i]) / Math.sqrt(bc2) + h.eps);
  }
  return true;
}
