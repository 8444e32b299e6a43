// Deterministic two-stage reductions (reduce.wgsl): sums and sums of squares of long vectors (the loss
// mean, the global gradient norm with its non-finite flag), and column sums of [rows, cols] matrices
// (parameter gradients summed over tokens). Fixed chunking and summation order: the same bits every run.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { cachedDef, forChunks, grid1d, packParams, withReduceLib } from "./wgsl.ts";
import source from "./reduce.wgsl" with { type: "text" };

/** Elements summed by one workgroup in the first stage (256 invocations × 16). */
export const REDUCE_CHUNK = 4096;
/** Rows summed by one workgroup row in the first stage of a column sum. */
export const COLSUM_ROWS = 64;
/** The flag value meaning "every gradient norm so far was finite". */
export const FLAG_CLEAR = 0xffffffff;

type Mode = "PARTIAL" | "PARTIAL_SQ" | "FINAL" | "NORM" | "COLSUM";

function def(mode: Mode, subgroups: boolean) {
  return cachedDef(`reduce/${mode}/${subgroups}`, () => ({
    name: `reduce-${mode.toLowerCase()}`,
    code: withReduceLib("reduce", source, {
      PARTIAL: mode === "PARTIAL" || mode === "PARTIAL_SQ",
      SQUARE: mode === "PARTIAL_SQ",
      NORM: mode === "NORM",
      COLSUM: mode === "COLSUM",
      SUBGROUPS: subgroups,
    }),
    bindings: mode === "NORM" ? ["read", "rw", "rw"] : ["read", "rw"],
    paramBytes: 9 * 4,
  }));
}

/** Size of the scratch `partials` tensor for a reduction of n elements. */
export function partialsFor(n: number): number {
  return Math.max(1, Math.ceil(n / REDUCE_CHUNK));
}

interface P {
  n: number;
  cols?: number;
  rowsPer?: number;
  baseIn: number;
  baseOut: number;
  first?: number;
  step?: number;
  alpha?: number;
  beta?: number;
}
function params(p: P): Uint8Array {
  return packParams([
    [p.n, "u32"],
    [p.cols ?? 0, "u32"],
    [p.rowsPer ?? 0, "u32"],
    [p.baseIn, "u32"],
    [p.baseOut, "u32"],
    [p.first ?? 0, "u32"],
    [p.step ?? 0, "u32"],
    [p.alpha ?? 1, "f32"],
    [p.beta ?? 0, "f32"],
  ]);
}

function stageOne(step: Step, x: Tensor, partials: Tensor, square: boolean): number {
  const need = partialsFor(x.size);
  if (partials.size < need) {
    throw new TnlError("internal", `reduce: partials holds ${partials.size}, needs ${need}`);
  }
  const kernel = step.gpu.kernel(def(square ? "PARTIAL_SQ" : "PARTIAL", step.gpu.features.subgroups));
  // Pieces start at multiples of the chunk, so the partials are the same however the input is split.
  const piece = Math.max(REDUCE_CHUNK, Math.floor(x.maxViewElements() / REDUCE_CHUNK) * REDUCE_CHUNK);
  forChunks(x.size, piece, (start, count) => {
    const vx = x.view(start, count), vp = partials.view(0, need);
    const groups = Math.ceil(count / REDUCE_CHUNK);
    step.dispatch(
      kernel,
      [vx, vp],
      params({ n: count, baseIn: vx.base, baseOut: vp.base, first: start / REDUCE_CHUNK }),
      grid1d(groups),
    );
  });
  return need;
}

/** out[0] = beta·out[0] + alpha·Σx (or Σx² with square), deterministic. */
export function sum(
  step: Step,
  x: Tensor,
  out: Tensor,
  partials: Tensor,
  opts: { square?: boolean; alpha?: number; beta?: number } = {},
): void {
  const n = stageOne(step, x, partials, opts.square ?? false);
  const vp = partials.view(0, n), vo = out.view(0, 1);
  step.dispatch(
    step.gpu.kernel(def("FINAL", step.gpu.features.subgroups)),
    [vp, vo],
    params({ n, baseIn: vp.base, baseOut: vo.base, alpha: opts.alpha, beta: opts.beta }),
    [1],
  );
}

/**
 * norm[0] = ‖grads‖₂; if it is not finite and flag[0] is clear, flag[0] = stepIndex. The optimizer then
 * skips the update on the GPU; the host reads the flag with the losses.
 */
export function gradNorm(
  step: Step,
  grads: Tensor,
  norm: Tensor,
  flag: Tensor,
  stepIndex: number,
  partials: Tensor,
): void {
  if (flag.dtype !== "u32") throw new TnlError("internal", "gradNorm: the flag must be a u32 tensor");
  const n = stageOne(step, grads, partials, true);
  const vp = partials.view(0, n), vn = norm.view(0, 1), vf = flag.view(0, 1);
  if (vf.base !== 0) throw new TnlError("internal", "gradNorm: the flag must start at a binding boundary");
  step.dispatch(
    step.gpu.kernel(def("NORM", step.gpu.features.subgroups)),
    [vp, vn, vf],
    params({ n, baseIn: vp.base, baseOut: vn.base, step: stepIndex }),
    [1],
  );
}

/** Rows of partials a column sum over `rows` rows needs (0 when one stage suffices). */
export function colsumPartialRows(rows: number): number {
  return rows <= COLSUM_ROWS ? 0 : Math.ceil(rows / COLSUM_ROWS);
}

/** out[c] = beta·out[c] + alpha·Σ_r x[r, c] for x: [rows, cols]; partials: [colsumPartialRows(rows), cols]. */
export function colsum(
  step: Step,
  x: Tensor,
  out: Tensor,
  rows: number,
  cols: number,
  opts: { alpha?: number; beta?: number; partials?: Tensor } = {},
): void {
  if (x.size < rows * cols || out.size < cols) {
    throw new TnlError("internal", `colsum: sizes for ${rows}×${cols}`);
  }
  const kernel = step.gpu.kernel(def("COLSUM", false));
  const chunks = colsumPartialRows(rows);
  const gx = Math.ceil(cols / 256);
  if (chunks === 0) {
    const vx = x.view(0, rows * cols), vo = out.view(0, cols);
    step.dispatch(
      kernel,
      [vx, vo],
      params({ n: rows, cols, rowsPer: Math.max(rows, 1), baseIn: vx.base, baseOut: vo.base, ...opts }),
      [gx, 1],
    );
    return;
  }
  const partials = opts.partials;
  if (!partials || partials.size < chunks * cols) {
    throw new TnlError("internal", `colsum: needs partials of ${chunks}×${cols}`);
  }
  const vx = x.view(0, rows * cols), vp = partials.view(0, chunks * cols), vo = out.view(0, cols);
  step.dispatch(
    kernel,
    [vx, vp],
    params({ n: rows, cols, rowsPer: COLSUM_ROWS, baseIn: vx.base, baseOut: vp.base }),
    [gx, chunks],
  );
  step.dispatch(
    kernel,
    [vp, vo],
    params({
      n: chunks,
      cols,
      rowsPer: chunks,
      baseIn: vp.base,
      baseOut: vo.base,
      alpha: opts.alpha,
      beta: opts.beta,
    }),
    [gx, 1],
  );
}
