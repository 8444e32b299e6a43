// The optimizer's GPU state (flat gradients, AdamW moments, the gradient norm and its non-finite flag) and
// the encoding of one update: deterministic global norm, clipping and AdamW in the same pass as the step.

import type { Gpu, Step } from "./gpu.ts";
import { Tensor } from "./tensor.ts";
import { adamw, type AdamWHyper } from "../kernels/adamw.ts";
import { FLAG_CLEAR, gradNorm, partialsFor } from "../kernels/reduce.ts";
import type { TnlModel } from "./model.ts";

export class OptimizerState {
  readonly grads: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
  /** [1] the last step's global gradient norm (before clipping) */
  readonly norm: Tensor;
  /** [1] u32: the first step whose gradient norm was not finite, or FLAG_CLEAR */
  readonly flag: Tensor;
  readonly partials: Tensor;

  constructor(readonly gpu: Gpu, readonly model: TnlModel) {
    const n = model.layout.total;
    this.grads = Tensor.empty(gpu, [n], "f32", "gradients");
    this.m = Tensor.empty(gpu, [n], "f32", "adam m");
    this.v = Tensor.empty(gpu, [n], "f32", "adam v");
    this.norm = Tensor.empty(gpu, [1], "f32", "grad norm");
    this.flag = Tensor.from(gpu, new Uint32Array([FLAG_CLEAR]), [1], "u32", "non-finite flag");
    this.partials = Tensor.empty(gpu, [partialsFor(n)], "f32", "norm partials");
  }

  /** Global norm, clipping and AdamW over every parameter; skipped on the GPU when the norm is not finite. */
  update(step: Step, hyper: AdamWHyper): void {
    gradNorm(step, this.grads, this.norm, this.flag, hyper.step, this.partials);
    adamw(step, this.model.params, this.grads, this.m, this.v, this.norm, hyper, this.model.layout.decayEnd);
  }

  destroy(): void {
    for (const t of [this.grads, this.m, this.v, this.norm, this.flag, this.partials]) t.destroy();
  }
}
