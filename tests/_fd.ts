// Central finite differences in float64, for checking the CPU references' backward passes.

import assert from "node:assert/strict";

/**
 * Checks `grad` = ∂loss/∂x at x by central differences on `samples` coordinates (all when fewer):
 * |fd − grad| ≤ tol·(1 + |grad|).
 */
export function assertGradient(
  loss: (x: Float64Array) => number,
  x: ArrayLike<number>,
  grad: ArrayLike<number>,
  what: string,
  opts: { h?: number; tol?: number; samples?: number } = {},
): void {
  const h = opts.h ?? 1e-6, tol = opts.tol ?? 1e-6, samples = opts.samples ?? 64;
  const xs = Float64Array.from(x);
  const n = xs.length;
  const idx = n <= samples
    ? [...Array(n).keys()]
    : [...Array(samples).keys()].map((i) => Math.floor((i * n) / samples));
  for (const i of idx) {
    const keep = xs[i];
    xs[i] = keep + h;
    const up = loss(xs);
    xs[i] = keep - h;
    const down = loss(xs);
    xs[i] = keep;
    const fd = (up - down) / (2 * h);
    assert.ok(
      Math.abs(fd - grad[i]) <= tol * (1 + Math.abs(grad[i])),
      `${what}[${i}]: finite difference ${fd} vs analytic ${grad[i]}`,
    );
  }
}

/** Σ w_i·y_i: a random projection turns a vector function into a scalar loss. */
export function dot(w: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += w[i] * y[i];
  return s;
}
