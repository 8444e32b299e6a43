// Float64 CPU references of kernels/layers.ts.

import { crossEntropyRef } from "./cross_entropy_ref.ts";
import { gluBackwardRef, gluRef } from "./elementwise_ref.ts";
import { matmulRef } from "./matmul_ref.ts";

type Num = ArrayLike<number>;

export const linearRef = (x: Num, w: Num, n: number, inF: number, outF: number): Float64Array =>
  matmulRef(x, w, null, { m: n, n: outF, k: inF, transB: true });

export function linearBackwardRef(x: Num, w: Num, dy: Num, n: number, inF: number, outF: number) {
  return {
    dx: matmulRef(dy, w, null, { m: n, n: inF, k: outF }),
    dw: matmulRef(dy, x, null, { m: outF, n: inF, k: n, transA: true }),
  };
}

export function sgluRef(x: Num, w12: Num, w3: Num, n: number, d: number, f: number) {
  const h = linearRef(x, w12, n, d, 2 * f);
  const g = gluRef(h, n, f);
  return { h, g, y: linearRef(g, w3, n, f, d) };
}

export function sgluBackwardRef(x: Num, w12: Num, w3: Num, dy: Num, n: number, d: number, f: number) {
  const { h, g } = sgluRef(x, w12, w3, n, d, f);
  const l3 = linearBackwardRef(g, w3, dy, n, f, d);
  const dh = gluBackwardRef(h, l3.dx, n, f);
  const l12 = linearBackwardRef(x, w12, dh, n, d, 2 * f);
  return { dx: l12.dx, dw12: l12.dw, dw3: l3.dw };
}

/** Per-row NLL of x·Wᵀ and the gradients of gradScale·Σ NLL. */
export function lmHeadRef(
  x: Num,
  w: Num,
  targets: Num,
  n: number,
  d: number,
  vocab: number,
  gradScale: number,
  ignoreIndex = -100,
) {
  const logits = linearRef(x, w, n, d, vocab);
  const { loss, dlogits } = crossEntropyRef(logits, targets, n, vocab, gradScale, ignoreIndex);
  const { dx, dw } = linearBackwardRef(x, w, dlogits, n, d, vocab);
  return { logits, loss, dx, dw };
}
