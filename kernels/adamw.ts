// The optimizer step (adamw.wgsl): gradient clipping by the global norm and AdamW, as PyTorch computes them,
// over flat parameter/gradient/moment vectors, skipping the update when the norm is not finite.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { cachedDef, forChunks, grid1d, packParams, withReduceLib } from "./wgsl.ts";
import source from "./adamw.wgsl" with { type: "text" };

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Max gradient norm; 0 = no clipping. */
  clip: number;
  /** 1-based step number (bias correction). */
  step: number;
}

const def = () =>
  cachedDef("adamw", () => ({
    name: "adamw",
    code: withReduceLib("adamw", source, { SUBGROUPS: false }),
    bindings: ["rw", "read", "rw", "rw", "read"],
    paramBytes: 14 * 4,
  }));

/**
 * One AdamW update of params (elements [0, decayEnd) get weight decay) from grads clipped by `norm` (the
 * GPU-computed global norm, [1]).
 */
export function adamw(
  step: Step,
  params: Tensor,
  grads: Tensor,
  m: Tensor,
  v: Tensor,
  norm: Tensor,
  h: AdamWHyper,
  decayEnd = params.size,
): void {
  for (const t of [grads, m, v]) {
    if (t.size !== params.size) {
      throw new TnlError("internal", `adamw: '${t.label}' size ${t.size} ≠ ${params.size}`);
    }
  }
  if (!(h.step >= 1)) throw new TnlError("internal", `adamw: step ${h.step}`);
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  const kernel = step.gpu.kernel(def());
  const chunk = Math.min(
    params.maxViewElements(),
    grads.maxViewElements(),
    m.maxViewElements(),
    v.maxViewElements(),
  );
  forChunks(params.size, chunk, (s, n) => {
    const vp = params.view(s, n),
      vg = grads.view(s, n),
      vm = m.view(s, n),
      vv = v.view(s, n),
      vn = norm.view(0, 1);
    const p = packParams([
      [n, "u32"],
      [Math.max(0, Math.min(n, decayEnd - s)), "u32"],
      [vp.base, "u32"],
      [vg.base, "u32"],
      [vm.base, "u32"],
      [vv.base, "u32"],
      [h.lr, "f32"],
      [h.beta1, "f32"],
      [h.beta2, "f32"],
      [h.eps, "f32"],
      [h.weightDecay, "f32"],
      [bc1, "f32"],
      [Math.sqrt(bc2), "f32"],
      [h.clip, "f32"],
    ]);
    if (vn.base !== 0) throw new TnlError("internal", "adamw: the norm must start at a binding boundary");
    step.dispatch(kernel, [vp, vg, vm, vv, vn], p, grid1d(Math.ceil(n / 256)));
  });
}
