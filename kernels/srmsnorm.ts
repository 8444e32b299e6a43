// SRMSNorm (srmsnorm.wgsl): y = x / sqrt(mean(x²) + eps) over the last dimension, no weight; forward saves
// rstd per row, backward needs only y and rstd. Rows beyond one storage binding are processed in pieces.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { cachedDef, forChunks, grid1d, packParams, withReduceLib } from "./wgsl.ts";
import source from "./srmsnorm.wgsl" with { type: "text" };

export const SRMS_EPS = 1e-6;

function def(fwd: boolean, subgroups: boolean) {
  return cachedDef(`srmsnorm/${fwd}/${subgroups}`, () => ({
    name: fwd ? "srmsnorm-fwd" : "srmsnorm-bwd",
    code: withReduceLib("srmsnorm", source, { FWD: fwd, SUBGROUPS: subgroups }),
    bindings: fwd ? ["read", "rw", "rw"] : ["read", "read", "read", "rw"],
    paramBytes: 11 * 4,
  }));
}

function rowsPerChunk(rows: number, d: number, ts: Tensor[]): number {
  return Math.max(1, Math.min(rows, ...ts.map((t) => Math.floor(t.maxViewElements() / Math.max(d, 1)))));
}

function check(what: string, rows: number, d: number, ts: [Tensor, number][]) {
  for (const [t, n] of ts) {
    if (t.size < n) {
      throw new TnlError(
        "internal",
        `${what}: '${t.label}' has ${t.size} elements, needs ${n} (${rows}×${d})`,
      );
    }
  }
}

/** y = SRMSNorm(x) and rstd per row, for x, y: [rows, d], rstd: [rows]. */
export function srmsnormForward(
  step: Step,
  x: Tensor,
  y: Tensor,
  rstd: Tensor,
  rows: number,
  d: number,
  eps = SRMS_EPS,
): void {
  check("srmsnorm", rows, d, [[x, rows * d], [y, rows * d], [rstd, rows]]);
  const kernel = step.gpu.kernel(def(true, step.gpu.features.subgroups));
  forChunks(rows, rowsPerChunk(rows, d, [x, y]), (r0, n) => {
    const vx = x.view(r0 * d, n * d), vy = y.view(r0 * d, n * d), vr = rstd.view(r0, n);
    const params = packParams([
      [n, "u32"],
      [d, "u32"],
      [vx.base, "u32"],
      [vy.base, "u32"],
      [vr.base, "u32"],
      [0, "u32"],
      [d, "u32"],
      [d, "u32"],
      [0, "u32"],
      [eps, "f32"],
      [0, "f32"],
    ]);
    step.dispatch(kernel, [vx, vy, vr], params, grid1d(n));
  });
}

/** dx = beta·dx + d SRMSNorm / dx · dy, from the forward's y and rstd. */
export function srmsnormBackward(
  step: Step,
  y: Tensor,
  rstd: Tensor,
  dy: Tensor,
  dx: Tensor,
  rows: number,
  d: number,
  beta = 0,
): void {
  check("srmsnorm backward", rows, d, [[y, rows * d], [rstd, rows], [dy, rows * d], [dx, rows * d]]);
  const kernel = step.gpu.kernel(def(false, step.gpu.features.subgroups));
  forChunks(rows, rowsPerChunk(rows, d, [y, dy, dx]), (r0, n) => {
    const vy = y.view(r0 * d, n * d), vr = rstd.view(r0, n);
    const vdy = dy.view(r0 * d, n * d), vdx = dx.view(r0 * d, n * d);
    const params = packParams([
      [n, "u32"],
      [d, "u32"],
      [vy.base, "u32"],
      [vr.base, "u32"],
      [vdy.base, "u32"],
      [vdx.base, "u32"],
      [d, "u32"],
      [d, "u32"],
      [d, "u32"],
      [0, "f32"],
      [beta, "f32"],
    ]);
    step.dispatch(kernel, [vy, vr, vdy, vdx], params, grid1d(n));
  });
}
