// Dispatchers of the decode-step kernels (decode.wgsl): a GEMV for a small batch of tokens (each weight
// read once) and the recurrent attention step on the fp32 state.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { cachedDef, grid1d, packParams, preprocess } from "./wgsl.ts";
import source from "./decode.wgsl" with { type: "text" };

/** Most sequences one GEMV dispatch takes (larger batches use the tiled matmul). */
export const GEMV_MAX_BATCH = 8;

const gemvDef = (nb: number) =>
  cachedDef(`decode/gemv/${nb}`, () => ({
    name: `gemv-b${nb}`,
    code: preprocess("decode", source, { GEMV: true, RECUR: false, NB: nb }),
    bindings: ["read", "read", "rw"],
    paramBytes: 11 * 4,
  }));

const recurDef = () =>
  cachedDef("decode/recur", () => ({
    name: "recurrent-step",
    code: preprocess("decode", source, { GEMV: false, RECUR: true, NB: 1 }),
    bindings: ["read", "read", "read", "read", "rw", "rw"],
    paramBytes: 11 * 4,
  }));

function params(
  rows: number,
  cols: number,
  heads: number,
  dv: number,
  bases: number[],
  beta = 0,
): Uint8Array {
  const b = [...bases, 0, 0, 0, 0, 0, 0].slice(0, 6);
  return packParams([
    [rows, "u32"],
    [cols, "u32"],
    [heads, "u32"],
    [dv, "u32"],
    ...b.map((x) => [x, "u32"] as const),
    [beta, "f32"],
  ]);
}

/** y[b, :] = x[b, :]·Wᵀ + beta·y[b, :] for nb ≤ GEMV_MAX_BATCH rows; W: [out, in]. */
export function gemv(
  step: Step,
  x: Tensor,
  w: Tensor,
  y: Tensor,
  nb: number,
  out: number,
  inF: number,
  beta = 0,
): void {
  if (nb < 1 || nb > GEMV_MAX_BATCH) throw new TnlError("internal", `gemv: batch ${nb}`);
  if (x.size < nb * inF || w.size < out * inF || y.size < nb * out) {
    throw new TnlError("internal", "gemv: sizes");
  }
  const vx = x.view(0, nb * inF), vy = y.view(0, nb * out);
  // Output rows in pieces whose W range fits one binding (the LM head of a large vocabulary).
  const rowsPer = Math.max(8, Math.floor(w.maxViewElements() / inF / 8) * 8);
  for (let o0 = 0; o0 < out; o0 += rowsPer) {
    const n = Math.min(rowsPer, out - o0);
    const vw = w.view(o0 * inF, n * inF);
    // y is [nb, out]: this piece writes columns o0 .. o0+n of each row.
    step.dispatch(
      step.gpu.kernel(gemvDef(nb)),
      [vx, vw, vy],
      params(n, inF, out, 0, [vx.base, vw.base, vy.base + o0], beta),
      grid1d(Math.ceil(n / 8)),
    );
  }
}

export interface RecurrentStepArgs {
  q: Tensor; // [B, H, dk]
  k: Tensor; // [B, H, dk]
  v: Tensor; // [B, H, dv]
  /** λ = e^−s per head, [H] */
  decay: Tensor;
  /** state [B, H, dk, dv], updated in place */
  kv: Tensor;
  o: Tensor; // [B, H, dv]
  B: number;
  H: number;
  dk: number;
  dv: number;
}

/** One token of the robust recurrence: kv ← λ·kv + kᵀv, o = q·kv. */
export function recurrentStep(step: Step, a: RecurrentStepArgs): void {
  if (a.dv > 256) throw new TnlError("internal", `recurrent step: dv = ${a.dv} > 256`);
  const views = [
    a.q.view(0, a.B * a.H * a.dk),
    a.k.view(0, a.B * a.H * a.dk),
    a.v.view(0, a.B * a.H * a.dv),
    a.decay.view(0, a.H),
    a.kv.view(0, a.B * a.H * a.dk * a.dv),
    a.o.view(0, a.B * a.H * a.dv),
  ];
  step.dispatch(
    step.gpu.kernel(recurDef()),
    views,
    params(a.B * a.H, a.dk, a.H, a.dv, views.map((v) => v.base)),
    grid1d(a.B * a.H),
  );
}
