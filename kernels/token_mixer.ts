// Dispatchers of the token mixer's fused input and output stages: qkv_prep.wgsl (head split, SiLU on q and
// k, LRPE) and norm_gate.wgsl (head merge, SRMSNorm over E, gate). Batches of whole sequences are processed
// per dispatch when the tensors are larger than one storage binding.

import { TnlError } from "../core/errors.ts";
import type { Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { SRMS_EPS } from "./srmsnorm.ts";
import { cachedDef, forChunks, grid1d, packParams, preprocess, withReduceLib } from "./wgsl.ts";
import prepSource from "./qkv_prep.wgsl" with { type: "text" };
import lrpeLib from "./lrpe_lib.wgsl" with { type: "text" };
import gateSource from "./norm_gate.wgsl" with { type: "text" };

export interface MixerShape {
  /** sequences */
  b: number;
  /** tokens per sequence */
  t: number;
  /** heads */
  h: number;
  /** head dim d (E = h·d) */
  d: number;
}

const prepDef = (fwd: boolean, lrpe: boolean) =>
  cachedDef(`qkv_prep/${fwd}/${lrpe}`, () => ({
    name: `qkv-prep-${fwd ? "fwd" : "bwd"}${lrpe ? "-lrpe" : ""}`,
    code: lrpeLib + "\n" + preprocess("qkv_prep", prepSource, { FWD: fwd, LRPE: lrpe }),
    bindings: fwd
      ? ["read", "read", "rw", "rw", "rw"]
      : lrpe
      ? ["read", "read", "read", "read", "read", "rw", "rw"]
      : ["read", "read", "read", "read", "read", "rw"],
    paramBytes: 12 * 4,
  }));

const gateDef = (fwd: boolean, subgroups: boolean) =>
  cachedDef(`norm_gate/${fwd}/${subgroups}`, () => ({
    name: fwd ? "norm-gate-fwd" : "norm-gate-bwd",
    code: withReduceLib("norm_gate", gateSource, { FWD: fwd, SUBGROUPS: subgroups }),
    bindings: fwd ? ["read", "read", "rw", "rw", "rw"] : ["read", "read", "read", "read", "rw", "rw"],
    paramBytes: 11 * 4,
  }));

/** Sequences per dispatch so that every [per-sequence elements] operand fits one binding. */
function seqsPerDispatch(ops: [Tensor, number][]): number {
  const per = Math.min(...ops.map(([t, elems]) => Math.floor(t.maxViewElements() / elems)));
  if (per < 1) {
    const [t, elems] = ops.find(([t, e]) => t.maxViewElements() < e)!;
    throw new TnlError(
      "gpu",
      `one sequence of '${t.label}' (${elems * 4} bytes) is over this device's storage-binding limit ` +
        `(${t.gpu.maxBindingBytes} bytes): use shorter sequences`,
    );
  }
  return per;
}

function checkSizes(what: string, ops: [Tensor, number][]) {
  for (const [t, n] of ops) {
    if (t.size < n) {
      throw new TnlError("internal", `${what}: '${t.label}' holds ${t.size} elements, needs ${n}`);
    }
  }
}

function prepParams(s: MixerShape, rows: number, offset: number, bases: number[]): Uint8Array {
  const b = [...bases, 0, 0, 0, 0, 0, 0, 0].slice(0, 7);
  return packParams([
    [rows, "u32"],
    [s.t, "u32"],
    [s.h, "u32"],
    [s.d, "u32"],
    [offset, "u32"],
    ...b.map((x) => [x, "u32"] as const),
  ]);
}

/**
 * q, k: [B, H, T, dq] = SiLU of the q, k columns of qkvu (then LRPE when theta is given: dq = 2d), v: [B, H, T, d];
 * qkvu: [B·T, 4E]; theta: [H, d] (the [H, 1, d] parameter); positions start at `offset`.
 */
export function qkvPrepForward(
  step: Step,
  s: MixerShape,
  qkvu: Tensor,
  theta: Tensor | null,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  offset = 0,
): void {
  const e = s.h * s.d, dq = theta ? 2 * s.d : s.d, n = s.b * s.t;
  checkSizes("qkv prep", [[qkvu, n * 4 * e], [q, n * s.h * dq], [k, n * s.h * dq], [v, n * e]]);
  if (theta) checkSizes("qkv prep", [[theta, e]]);
  const kernel = step.gpu.kernel(prepDef(true, theta !== null));
  const per = seqsPerDispatch([[qkvu, s.t * 4 * e], [q, s.t * s.h * dq], [k, s.t * s.h * dq], [v, s.t * e]]);
  forChunks(s.b, per, (b0, nb) => {
    const rows = nb * s.t;
    const vu = qkvu.view(b0 * s.t * 4 * e, rows * 4 * e);
    const vth = theta ? theta.view(0, e) : vu;
    const vq = q.view(b0 * s.t * s.h * dq, rows * s.h * dq),
      vk = k.view(b0 * s.t * s.h * dq, rows * s.h * dq);
    const vv = v.view(b0 * s.t * e, rows * e);
    step.dispatch(
      kernel,
      [vu, vth, vq, vk, vv],
      prepParams(s, rows, offset, [vu.base, vth.base, vq.base, vk.base, vv.base]),
      grid1d(Math.ceil((rows * e) / 256)),
    );
  });
}

/**
 * dqkvu[:, 0..3E) from dq, dk, dv (the u columns are written by the gate's backward); with LRPE also
 * dthetaTerms: [B·T, E], the per-token terms of dθ (sum them over tokens with a column sum).
 */
export function qkvPrepBackward(
  step: Step,
  s: MixerShape,
  qkvu: Tensor,
  theta: Tensor | null,
  dq: Tensor,
  dk: Tensor,
  dv: Tensor,
  dqkvu: Tensor,
  dthetaTerms: Tensor | null,
  offset = 0,
): void {
  const e = s.h * s.d, dqw = theta ? 2 * s.d : s.d, n = s.b * s.t;
  if ((theta === null) !== (dthetaTerms === null)) {
    throw new TnlError("internal", "qkv prep backward: theta and dθ terms");
  }
  checkSizes("qkv prep backward", [[qkvu, n * 4 * e], [dq, n * s.h * dqw], [dk, n * s.h * dqw], [dv, n * e], [
    dqkvu,
    n * 4 * e,
  ]]);
  if (dthetaTerms) checkSizes("qkv prep backward", [[dthetaTerms, n * e]]);
  const kernel = step.gpu.kernel(prepDef(false, theta !== null));
  const ops: [Tensor, number][] = [[qkvu, s.t * 4 * e], [dq, s.t * s.h * dqw], [dk, s.t * s.h * dqw], [
    dv,
    s.t * e,
  ], [
    dqkvu,
    s.t * 4 * e,
  ]];
  if (dthetaTerms) ops.push([dthetaTerms, s.t * e]);
  forChunks(s.b, seqsPerDispatch(ops), (b0, nb) => {
    const rows = nb * s.t;
    const vu = qkvu.view(b0 * s.t * 4 * e, rows * 4 * e);
    const vth = theta ? theta.view(0, e) : vu;
    const vdq = dq.view(b0 * s.t * s.h * dqw, rows * s.h * dqw),
      vdk = dk.view(b0 * s.t * s.h * dqw, rows * s.h * dqw);
    const vdv = dv.view(b0 * s.t * e, rows * e), vdu = dqkvu.view(b0 * s.t * 4 * e, rows * 4 * e);
    const views = [vu, vth, vdq, vdk, vdv, vdu];
    if (dthetaTerms) views.push(dthetaTerms.view(b0 * s.t * e, rows * e));
    step.dispatch(
      kernel,
      views,
      prepParams(s, rows, offset, views.map((x) => x.base)),
      grid1d(Math.ceil((rows * e) / 256)),
    );
  });
}

function gateParams(s: MixerShape, rows: number, bases: number[]): Uint8Array {
  const b = [...bases, 0, 0, 0, 0, 0, 0].slice(0, 6);
  return packParams([
    [rows, "u32"],
    [s.t, "u32"],
    [s.h, "u32"],
    [s.d, "u32"],
    ...b.map((x) => [x, "u32"] as const),
    [SRMS_EPS, "f32"],
  ]);
}

/** on = SRMSNorm(merge(o)) over E, rstd per token, og = u ⊙ on; o: [B, H, T, d], on/og: [B·T, E]. */
export function normGateForward(
  step: Step,
  s: MixerShape,
  o: Tensor,
  qkvu: Tensor,
  on: Tensor,
  rstd: Tensor,
  og: Tensor,
): void {
  const e = s.h * s.d, n = s.b * s.t;
  checkSizes("norm gate", [[o, n * e], [qkvu, n * 4 * e], [on, n * e], [rstd, n], [og, n * e]]);
  const kernel = step.gpu.kernel(gateDef(true, step.gpu.features.subgroups));
  const per = seqsPerDispatch([[o, s.t * e], [qkvu, s.t * 4 * e], [on, s.t * e], [og, s.t * e]]);
  forChunks(s.b, per, (b0, nb) => {
    const rows = nb * s.t, r0 = b0 * s.t;
    const views = [
      o.view(r0 * e, rows * e),
      qkvu.view(r0 * 4 * e, rows * 4 * e),
      on.view(r0 * e, rows * e),
      rstd.view(r0, rows),
      og.view(r0 * e, rows * e),
    ];
    step.dispatch(kernel, views, gateParams(s, rows, views.map((x) => x.base)), grid1d(rows));
  });
}

/** du → dqkvu[:, 3E..4E), and do: [B, H, T, d] from dog: [B·T, E] and the forward's on, rstd. */
export function normGateBackward(
  step: Step,
  s: MixerShape,
  dog: Tensor,
  on: Tensor,
  rstd: Tensor,
  qkvu: Tensor,
  dqkvu: Tensor,
  dO: Tensor,
): void {
  const e = s.h * s.d, n = s.b * s.t;
  checkSizes("norm gate backward", [[dog, n * e], [on, n * e], [rstd, n], [qkvu, n * 4 * e], [
    dqkvu,
    n * 4 * e,
  ], [
    dO,
    n * e,
  ]]);
  const kernel = step.gpu.kernel(gateDef(false, step.gpu.features.subgroups));
  const per = seqsPerDispatch([[dog, s.t * e], [on, s.t * e], [qkvu, s.t * 4 * e], [dqkvu, s.t * 4 * e], [
    dO,
    s.t * e,
  ]]);
  forChunks(s.b, per, (b0, nb) => {
    const rows = nb * s.t, r0 = b0 * s.t;
    const views = [
      dog.view(r0 * e, rows * e),
      on.view(r0 * e, rows * e),
      rstd.view(r0, rows),
      qkvu.view(r0 * 4 * e, rows * 4 * e),
      dqkvu.view(r0 * 4 * e, rows * 4 * e),
      dO.view(r0 * e, rows * e),
    ];
    step.dispatch(kernel, views, gateParams(s, rows, views.map((x) => x.base)), grid1d(rows));
  });
}
