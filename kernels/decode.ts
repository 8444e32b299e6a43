// Dispatchers of the decode-step kernels (decode.wgsl): a GEMV for a small batch of tokens that reads
// each weight once, with the token's input stage fused in (SRMSNorm, the gate u ⊙ SRMSNorm(o), SGLU's
// product), and the recurrent attention step with SiLU and LRPE fused in.

import { TnlError } from "../core/errors.ts";
import type { Gpu, Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { SRMS_EPS } from "./srmsnorm.ts";
import { cachedDef, grid1d, packParams, preprocess, withReduceLib } from "./wgsl.ts";
import source from "./decode.wgsl" with { type: "text" };
import lrpeLib from "./lrpe_lib.wgsl" with { type: "text" };

/** Most sequences one GEMV dispatch takes. */
export const GEMV_MAX_BATCH = 8;
/** Output rows from which `auto` sums each row in one subgroup. */
export const GEMV_SUBGROUP_MIN_ROWS = 2048;

interface GemvVariant {
  nb: number;
  rows: number; // output rows per workgroup (R)
  /** subgroup size S of the one-subgroup-per-row form (R = 256 / S); 0: the workgroup-tree form */
  sgRows: number;
  norm: boolean;
  prod: boolean;
  vec: boolean;
  /** W stored as f16 (needs vec) */
  f16: boolean;
  subgroups: boolean;
}

/** How a GEMV sums a row: one subgroup per row (where the subgroup size is fixed), or a workgroup tree. */
export type GemvForm = "auto" | "subgroup" | "tree";

const gemvDef = (v: GemvVariant) =>
  cachedDef(
    `decode/gemv/${v.nb}/${v.rows}/${v.sgRows}/${v.norm}/${v.prod}/${v.vec}/${v.f16}/${v.subgroups}`,
    () => {
      const defines = {
        GEMV: true,
        RECUR: false,
        LRPE: false,
        NB: v.nb,
        R: v.rows,
        LANES: 256 / v.rows,
        PART: 256 * v.nb,
        SGROWS: v.sgRows > 0,
        S: v.sgRows,
        NORM: v.norm,
        PROD: v.prod,
        VEC: v.vec,
        F16W: v.f16,
        SUBGROUPS: v.subgroups,
      };
      return {
        name: `gemv-b${v.nb}-r${v.rows}${v.sgRows ? "-sg" : ""}${v.norm ? "-norm" : ""}${
          v.prod ? "-prod" : ""
        }${v.vec ? "-vec4" : ""}${v.f16 ? "-f16w" : ""}`,
        // The subgroup form needs no workgroup reduction (nor its scratch memory).
        code: v.sgRows ? preprocess("decode", source, defines) : withReduceLib("decode", source, defines),
        bindings: ["read", "read", "read", "rw"] as const,
        paramBytes: 11 * 4,
      };
    },
  );

/** `rpt`: rows per invocation of the vec4 form (0: the scalar form). */
const recurDef = (lrpe: boolean, w: number, rpt: number) =>
  cachedDef(`decode/recur/${lrpe}/${w}/${rpt}`, () => ({
    name: `recurrent-step${lrpe ? "-lrpe" : ""}-w${w}${rpt ? `-vec4-r${rpt}` : ""}`,
    code: lrpeLib + "\n" + preprocess("decode", source, {
      GEMV: false,
      RECUR: true,
      LRPE: lrpe,
      W: w,
      RPT: rpt,
      LOG_P4: rpt ? Math.log2(1024 / w) : 0,
      SGROWS: false,
      NORM: false,
      PROD: false,
      VEC: rpt > 0,
      F16W: false,
      SUBGROUPS: false,
    }),
    bindings: ["read", "read", "read", "read", "rw", "rw"],
    paramBytes: 12 * 4,
  }));

export interface GemvArgs {
  /** input rows: a[b, 0..in) at aOffset + b·aStride */
  a: Tensor;
  /** second input for `prod` (x = a ⊙ b), at bOffset + b·bStride */
  b?: Tensor;
  /** [out, in] row-major, f32 or f16 (f16 needs in and the row offsets to be multiples of 4) */
  w: Tensor;
  /** output rows: y[b, 0..out) at yOffset + b·yStride */
  y: Tensor;
  nb: number;
  out: number;
  in: number;
  /** multiply by 1/sqrt(mean(a²) + eps) per sequence: SRMSNorm of a fused in */
  norm?: boolean;
  /** y = … + beta·y (1 adds a residual in place) */
  beta?: number;
  /** how rows are summed (tests and benchmarks compare the forms; default auto: subgroup where it can) */
  form?: GemvForm;
  aOffset?: number;
  aStride?: number;
  bOffset?: number;
  bStride?: number;
  yOffset?: number;
  yStride?: number;
}

function pow2floor(n: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, n)));
}

/**
 * The subgroup size where the adapter has one fixed size (min = max; e.g. 32 on NVIDIA, 8 on llvmpipe) and
 * subgroups are on (the device check at open time makes them consecutive runs of local invocations); else 0.
 */
export function fixedSubgroupSize(gpu: Gpu): number {
  const { subgroupMinSize: min, subgroupMaxSize: max } = gpu.adapter;
  if (!gpu.features.subgroups || min === null || min !== max) return 0;
  return [4, 8, 16, 32, 64, 128].includes(min) ? min : 0;
}

/** Output rows per workgroup: 256 / R invocations per row, each taking about four loads or more. */
function rowsPerWorkgroup(units: number): number {
  const lanes = Math.min(256, Math.max(8, pow2floor(units / 4)));
  return 256 / lanes;
}

/**
 * y[b, o] = s_b · Σ_c w[o, c]·x_b[c] + beta·y[b, o] for nb ≤ GEMV_MAX_BATCH sequences, with x_b = a_b (or
 * a_b ⊙ b_b) and s_b = 1 (or, with `norm`, the SRMSNorm scale of a_b). Output rows are cut into pieces
 * whose weights fit one storage binding.
 */
export function gemv(step: Step, g: GemvArgs): void {
  const { a, w, y, nb, out } = g;
  const inF = g.in;
  const prod = g.b !== undefined;
  const aOff = g.aOffset ?? 0, aStride = g.aStride ?? inF;
  const bOff = g.bOffset ?? 0, bStride = g.bStride ?? inF;
  const yOff = g.yOffset ?? 0, yStride = g.yStride ?? out;
  if (!Number.isInteger(nb) || nb < 1 || nb > GEMV_MAX_BATCH) {
    throw new TnlError("internal", `gemv: batch ${nb} (1..${GEMV_MAX_BATCH})`);
  }
  if (!(inF >= 1 && out >= 1)) throw new TnlError("internal", `gemv: in = ${inF}, out = ${out}`);
  const span = (off: number, stride: number, width: number) => off + (nb - 1) * stride + width;
  const need = (t: Tensor, n: number, what: string, dtype: "f32" | "f16" = "f32") => {
    if (t.dtype !== dtype || t.size < n) {
      throw new TnlError(
        "internal",
        `gemv: ${what} '${t.label}' holds ${t.size} ${t.dtype}, needs ${n} ${dtype}`,
      );
    }
  };
  need(a, span(aOff, aStride, inF), "a");
  if (g.b) need(g.b, span(bOff, bStride, inF), "b");
  need(w, out * inF, "w", w.dtype === "f16" ? "f16" : "f32");
  need(y, span(yOff, yStride, out), "y");
  const va = a.view(aOff, span(0, aStride, inF));
  const vb = g.b ? g.b.view(bOff, span(0, bStride, inF)) : va;
  const gpu = step.gpu;
  const vecIn = inF % 4 === 0 && va.base % 4 === 0 && aStride % 4 === 0 &&
    (!g.b || (vb.base % 4 === 0 && bStride % 4 === 0));
  const rowsPer = Math.max(1, Math.floor(w.maxViewElements() / inF));
  const units = vecIn ? inF / 4 : inF;
  const form = g.form ?? "auto";
  const fixed = fixedSubgroupSize(gpu);
  if (form === "subgroup" && !fixed) {
    throw new TnlError(
      "internal",
      "gemv: the subgroup form needs subgroups of one fixed size on this adapter",
    );
  }
  // auto: one subgroup per row only where there are enough rows to keep the GPU's memory system busy; a
  // short output takes several subgroups per row (H200, in = 1024: out = 4096 and 64000 run 27% and 33%
  // faster one subgroup per row; out = 1024 runs 10–15% slower: docs/performance.md).
  const sg = form === "tree" ? 0 : form === "subgroup" || out >= GEMV_SUBGROUP_MIN_ROWS ? fixed : 0;
  const r = sg ? 256 / sg : rowsPerWorkgroup(units);
  const lanes = 256 / r;
  // Iterations of the longest invocation, all loops counted (llvmpipe leaves loops after Gpu.loopLimit).
  const sgIters = gpu.features.subgroups ? 256 : 9;
  const iterations = sg
    ? Math.ceil(units / sg) * (nb + 1) + 3 * nb
    : (g.norm ? nb * (Math.ceil(units / 256) + sgIters) : 0) +
      Math.ceil(units / lanes) * (nb + 1) + (Math.log2(lanes) + 1) * (nb + 1) + 4 * nb;
  if (iterations > gpu.loopLimit) {
    throw new TnlError(
      "gpu",
      `gemv: rows of ${inF} inputs need ${iterations} loop iterations per invocation; this adapter stops ` +
        `loops after ${gpu.loopLimit}`,
    );
  }
  for (let o0 = 0; o0 < out; o0 += rowsPer) {
    const n = Math.min(rowsPer, out - o0);
    const vw = w.view(o0 * inF, n * inF);
    const vy = y.view(yOff + o0, span(0, yStride, n));
    const vec = vecIn && vw.base % 4 === 0;
    const f16 = w.dtype === "f16";
    if (f16 && !vec) {
      throw new TnlError(
        "internal",
        `gemv: f16 weights '${w.label}' need rows of a multiple of 4 inputs at offsets of multiples of 4 (in = ${inF})`,
      );
    }
    const kernel = gpu.kernel(
      gemvDef({
        nb,
        rows: r,
        sgRows: sg,
        norm: g.norm === true,
        prod,
        vec,
        f16,
        subgroups: gpu.features.subgroups,
      }),
    );
    step.dispatch(
      kernel,
      [va, vb, vw, vy],
      packParams([
        [n, "u32"],
        [inF, "u32"],
        [yStride, "u32"],
        [aStride, "u32"],
        [bStride, "u32"],
        [va.base, "u32"],
        [vb.base, "u32"],
        [vw.base, "u32"],
        [vy.base, "u32"],
        [g.beta ?? 0, "f32"],
        [SRMS_EPS, "f32"],
      ]),
      grid1d(Math.ceil(n / r)),
    );
  }
}

export interface RecurrentStepArgs {
  /** [B, 4E]: this token's fused projection (q | k | v | u) per sequence */
  qkvu: Tensor;
  /** [H, d] LRPE θ (the [H, 1, d] parameter), or null for a layer without LRPE */
  theta: Tensor | null;
  /** [B, 4] u32 per-sequence counters; seq[b, 0] = len, and the token's position is len − 1 */
  seq: Tensor;
  /** λ = fl(e^−s) per head, [H] */
  decay: Tensor;
  /** state [B, H, dk, d] (dk = 2d with LRPE), updated in place */
  kv: Tensor;
  /** [B, H, d] attention output of the token */
  o: Tensor;
  B: number;
  H: number;
  d: number;
  /** columns per workgroup (tests and benchmarks compare them; default recurrentColumns) */
  columns?: number;
}

/**
 * Columns per workgroup of the recurrent step: 16 where d is a multiple of 4 (the vec4 form: 64 row groups
 * of 4 columns, so a B 1, H 8 step still spreads over 64 workgroups), else up to 32 single columns.
 */
export function recurrentColumns(d: number): number {
  return d % 4 === 0
    ? Math.min(16, 2 ** Math.ceil(Math.log2(d)))
    : Math.min(32, 2 ** Math.ceil(Math.log2(d)));
}

/**
 * One token of the robust recurrence (spec §5.1) with the token mixer's input stage: q, k = SiLU (then LRPE
 * at position seq.len − 1), kv ← λ·kv + kᵀv, o = q·kv, per (sequence, head).
 */
export function recurrentStep(step: Step, a: RecurrentStepArgs): void {
  const { B, H, d } = a;
  const lrpe = a.theta !== null, dk = lrpe ? 2 * d : d, e = H * d;
  if (d > 256) throw new TnlError("internal", `recurrent step: head dim ${d} > 256`);
  const checks: [Tensor, number, string][] = [
    [a.qkvu, B * 4 * e, "qkvu"],
    [a.seq, B * 4, "seq"],
    [a.decay, H, "decay"],
    [a.kv, B * H * dk * d, "kv"],
    [a.o, B * e, "o"],
  ];
  if (a.theta) checks.push([a.theta, e, "theta"]);
  for (const [t, n, what] of checks) {
    if (t.size < n) {
      throw new TnlError("internal", `recurrent step: ${what} '${t.label}' holds ${t.size} < ${n}`);
    }
  }
  if (a.seq.dtype !== "u32") throw new TnlError("internal", "recurrent step: seq must be u32");
  const w = a.columns ?? recurrentColumns(d);
  const kvView = a.kv.view(0, B * H * dk * d), oView = a.o.view(0, B * e);
  const vec = d % 4 === 0 && kvView.base % 4 === 0 && oView.base % 4 === 0;
  if (!(Number.isInteger(Math.log2(w)) && w <= 256 && (!vec || w >= 4))) {
    throw new TnlError("internal", `recurrent step: ${w} columns per workgroup`);
  }
  // vec4 form: 256 / (w / 4) row groups, each taking ⌈dk / row groups⌉ rows.
  const rpt = vec ? Math.ceil(dk / (1024 / w)) : 0;
  const slices = Math.ceil(d / w);
  const vq = a.qkvu.view(0, B * 4 * e);
  const views = [
    vq,
    a.theta ? a.theta.view(0, e) : vq,
    a.seq.view(0, B * 4),
    a.decay.view(0, H),
    kvView,
    oView,
  ];
  const rows = B * H * slices;
  step.dispatch(
    step.gpu.kernel(recurDef(lrpe, w, rpt)),
    views,
    packParams([
      [rows, "u32"],
      [H, "u32"],
      [d, "u32"],
      [dk, "u32"],
      [slices, "u32"],
      [4 * e, "u32"],
      ...views.map((v) => [v.base, "u32"] as const),
    ]),
    grid1d(rows),
  );
}
