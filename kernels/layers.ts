// Layers composed of the matmul and the row/elementwise kernels: linear (y = x·Wᵀ, no bias, as every
// TNL release), SGLU ((x·W1ᵀ) ⊙ (x·W2ᵀ))·W3ᵀ, and the LM head with a fused cross-entropy that never holds
// more than one row chunk of logits. All encode into the caller's step; scratch comes from the caller.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { crossEntropy, IGNORE_INDEX } from "./cross_entropy.ts";
import { gluBackward, gluForward } from "./elementwise.ts";
import { matmul } from "./matmul.ts";

/** y[n, out] = x[n, in]·Wᵀ + beta·y, W: [out, in]. */
export function linearForward(
  step: Step,
  x: Tensor,
  w: Tensor,
  y: Tensor,
  n: number,
  inF: number,
  outF: number,
  beta = 0,
): void {
  matmul(step, { a: x, b: w, c: y, m: n, n: outF, k: inF, transB: true, beta });
}

/** dx = dy·W + betaX·dx (when dx is given); dW = dyᵀ·x + betaW·dW (when dw is given). */
export function linearBackward(
  step: Step,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  dx: Tensor | null,
  dw: Tensor | null,
  n: number,
  inF: number,
  outF: number,
  betas: { x?: number; w?: number } = {},
): void {
  if (dx) matmul(step, { a: dy, b: w, c: dx, m: n, n: inF, k: outF, beta: betas.x ?? 0 });
  if (dw) matmul(step, { a: dy, b: x, c: dw, m: outF, n: inF, k: n, transA: true, beta: betas.w ?? 0 });
}

export interface SgluShape {
  n: number;
  /** model width D */
  d: number;
  /** glu width F */
  f: number;
}

/**
 * SGLU forward: h = x·W12ᵀ = [x·W1ᵀ | x·W2ᵀ] ([n, 2F], saved), g = h1 ⊙ h2 ([n, F], saved),
 * y = g·W3ᵀ + beta·y (beta = 1 adds the residual in place). W12 = [W1; W2]: [2F, D], W3: [D, F].
 */
export function sgluForward(
  step: Step,
  s: SgluShape,
  x: Tensor,
  w12: Tensor,
  w3: Tensor,
  h: Tensor,
  g: Tensor,
  y: Tensor,
  beta = 0,
): void {
  linearForward(step, x, w12, h, s.n, s.d, 2 * s.f);
  gluForward(step, h, g, s.n, s.f);
  linearForward(step, g, w3, y, s.n, s.f, s.d, beta);
}

/**
 * SGLU backward from the saved h, g: dW3 (+)= dyᵀ·g, dg = dy·W3, dh = [dg ⊙ h2, dg ⊙ h1], dW12 (+)= dhᵀ·x,
 * dx = dh·W12 + betaX·dx. dg: [n, F] and dh: [n, 2F] are scratch.
 */
export function sgluBackward(
  step: Step,
  s: SgluShape,
  x: Tensor,
  w12: Tensor,
  w3: Tensor,
  h: Tensor,
  g: Tensor,
  dy: Tensor,
  dx: Tensor,
  dw12: Tensor,
  dw3: Tensor,
  scratch: { dg: Tensor; dh: Tensor },
  betas: { x?: number; w?: number } = {},
): void {
  linearBackward(step, g, w3, dy, scratch.dg, dw3, s.n, s.f, s.d, { w: betas.w });
  gluBackward(step, h, scratch.dg, scratch.dh, s.n, s.f);
  linearBackward(step, x, w12, scratch.dh, dx, dw12, s.n, s.d, 2 * s.f, betas);
}

export interface LmHeadArgs {
  /** final normalized hidden states [n, D] */
  x: Tensor;
  /** [V, D] (the embedding when tied) */
  w: Tensor;
  /** [n] i32 next-token targets (ignoreIndex = no prediction) */
  targets: Tensor;
  /** [n] f32 per-row NLL (out) */
  loss: Tensor;
  /** [chunkRows, V] scratch for one chunk of logits */
  logits: Tensor;
  n: number;
  d: number;
  vocab: number;
  /** d(loss)/d(logits) scale, e.g. 1 / predicted tokens; absent = no backward */
  gradScale?: number;
  /** [n, D] gradient of x (overwritten) */
  dx?: Tensor;
  /** [V, D] gradient of W: dW = betaW·dW + Σ chunks */
  dw?: Tensor;
  betaW?: number;
  ignoreIndex?: number;
  /** [n] f32 (out, evaluation only): 1 where the target is the row's unique largest logit, else 0 */
  hits?: Tensor;
}

/** Rows of logits the scratch holds. */
export function lmHeadChunkRows(logits: Tensor, vocab: number): number {
  return Math.floor(logits.size / vocab);
}

/**
 * The LM head and its loss, one row chunk at a time: logits = x_c·Wᵀ, then cross-entropy writing d(logits)
 * in place, then dx_c = dlogits·W and dW += dlogitsᵀ·x_c. The [n, V] logits never exist at once.
 */
export function lmHeadLoss(step: Step, a: LmHeadArgs): void {
  const rows = lmHeadChunkRows(a.logits, a.vocab);
  if (rows < 1) {
    throw new TnlError("internal", `lm head: logits scratch holds ${a.logits.size} < one row of ${a.vocab}`);
  }
  const train = a.gradScale !== undefined;
  if (!train && (a.dx || a.dw)) throw new TnlError("internal", "lm head: gradients need gradScale");
  for (let r0 = 0, first = true; r0 < a.n; r0 += rows, first = false) {
    const c = Math.min(rows, a.n - r0);
    matmul(step, { a: a.x, b: a.w, c: a.logits, m: c, n: a.vocab, k: a.d, transB: true, aOffset: r0 * a.d });
    crossEntropy(step, a.logits, a.targets, a.loss, c, a.vocab, {
      gradScale: a.gradScale,
      ignoreIndex: a.ignoreIndex ?? IGNORE_INDEX,
      targetOffset: r0,
      lossOffset: r0,
      hits: a.hits,
    });
    if (a.dx) matmul(step, { a: a.logits, b: a.w, c: a.dx, m: c, n: a.d, k: a.vocab, cOffset: r0 * a.d });
    if (a.dw) {
      matmul(step, {
        a: a.logits,
        b: a.x,
        c: a.dw,
        m: a.vocab,
        n: a.d,
        k: c,
        transA: true,
        bOffset: r0 * a.d,
        beta: first ? (a.betaW ?? 0) : 1,
      });
    }
  }
}
