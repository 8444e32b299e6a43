// Row-wise cross-entropy (cross_entropy.wgsl): loss per row and, for training, d(logits) written over the
// logits in place, scaled (e.g. by 1 / number of predicted tokens for a mean loss); for evaluation, whether
// the greedy prediction of each row is its target.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { cachedDef, forChunks, grid1d, packParams, withReduceLib } from "./wgsl.ts";
import source from "./cross_entropy.wgsl" with { type: "text" };

/** PyTorch's default ignore_index. */
export const IGNORE_INDEX = -100;

const def = (grad: boolean, hits: boolean, subgroups: boolean) =>
  cachedDef(`cross_entropy/${grad}/${hits}/${subgroups}`, () => ({
    name: grad ? "cross-entropy-grad" : hits ? "cross-entropy-hits" : "cross-entropy",
    code: withReduceLib("cross_entropy", source, { GRAD: grad, HITS: hits, SUBGROUPS: subgroups }),
    bindings: hits ? ["read", "read", "rw", "rw"] : [grad ? "rw" : "read", "read", "rw"],
    paramBytes: 8 * 4,
  }));

/**
 * loss[r] = NLL of targets[r] under softmax(logits[r]) for rows r < rows (0 where the target is ignoreIndex);
 * with `gradScale` given, logits become gradScale · (softmax − onehot) (0 on ignored rows). With `hits`
 * (not with gradScale; rows at lossOffset like the loss), hits[r] = 1 where the target's logit is larger
 * than every other logit of the row, else 0.
 */
export function crossEntropy(
  step: Step,
  logits: Tensor,
  targets: Tensor,
  loss: Tensor,
  rows: number,
  vocab: number,
  opts: {
    gradScale?: number;
    ignoreIndex?: number;
    targetOffset?: number;
    lossOffset?: number;
    hits?: Tensor;
  } = {},
): void {
  const grad = opts.gradScale !== undefined;
  const tOff = opts.targetOffset ?? 0, lOff = opts.lossOffset ?? 0;
  if (logits.size < rows * vocab || targets.size < tOff + rows || loss.size < lOff + rows) {
    throw new TnlError("internal", `cross-entropy: sizes for ${rows} rows of ${vocab}`);
  }
  if (opts.hits && (grad || opts.hits.size < lOff + rows || opts.hits.dtype !== "f32")) {
    throw new TnlError("internal", `cross-entropy: hits '${opts.hits.label}' for ${rows} rows (no gradient)`);
  }
  if (targets.dtype !== "i32") throw new TnlError("internal", "cross-entropy: targets must be i32");
  const kernel = step.gpu.kernel(def(grad, opts.hits !== undefined, step.gpu.features.subgroups));
  const rowsPer = Math.max(1, Math.floor(logits.maxViewElements() / vocab));
  forChunks(rows, rowsPer, (r0, n) => {
    const vl = logits.view(r0 * vocab, n * vocab),
      vt = targets.view(tOff + r0, n),
      vs = loss.view(lOff + r0, n);
    const vh = opts.hits?.view(lOff + r0, n);
    step.dispatch(
      kernel,
      vh ? [vl, vt, vs, vh] : [vl, vt, vs],
      packParams([
        [n, "u32"],
        [vocab, "u32"],
        [vl.base, "u32"],
        [vt.base, "u32"],
        [vs.base, "u32"],
        [opts.ignoreIndex ?? IGNORE_INDEX, "i32"],
        [opts.gradScale ?? 0, "f32"],
        [vh?.base ?? 0, "u32"],
      ]),
      grid1d(n),
    );
  });
}
