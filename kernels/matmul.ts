// Dispatcher of the tiled fp32 matmul (matmul.wgsl): C = alpha·op(A)·op(B) + beta·C for any M, N, K,
// the four transposes, batches, and matrices larger than one storage binding (sliced along their
// leading dimension; slices of K accumulate into C).

import type { BenchCase, BenchShape } from "../core/bench.ts";
import { TnlError } from "../core/errors.ts";
import type { Kernel, KernelDef, Step } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { sumParts } from "./elementwise.ts";
import { packParams, preprocess } from "./wgsl.ts";
import source from "./matmul.wgsl" with { type: "text" };

export const MATMUL_TILE = 128;
/** Steps of K per staged tile (matmul.wgsl). */
export const MATMUL_K_TILE = 16;

export interface MatmulOp {
  /** [batch, M, K], or [batch, K, M] with transA (element offset aOffset). */
  a: Tensor;
  /** [batch, K, N], or [batch, N, K] with transB. */
  b: Tensor;
  /** [batch, M, N]. */
  c: Tensor;
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  batch?: number;
  alpha?: number;
  /** 0 overwrites C (never reads it), 1 accumulates into C. */
  beta?: number;
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  /** split K over this many partial products (default: chosen to fill the GPU; 1 = never) */
  splitK?: number;
}

interface Variant {
  transA: boolean;
  transB: boolean;
  vecA: boolean;
  vecB: boolean;
  vecC: boolean;
}

const defs = new Map<string, KernelDef>();
function kernelDef(v: Variant): KernelDef {
  const key = `matmul${v.transA ? "_ta" : ""}${v.transB ? "_tb" : ""}${v.vecA ? "_va" : ""}${
    v.vecB ? "_vb" : ""
  }${v.vecC ? "_vc" : ""}`;
  let def = defs.get(key);
  if (!def) {
    const code = preprocess("matmul", source, {
      TRANS_A: v.transA,
      TRANS_B: v.transB,
      VEC_A: v.vecA,
      VEC_B: v.vecB,
      VEC_C: v.vecC,
    });
    def = { name: key, code, bindings: ["read", "read", "rw"], paramBytes: 14 * 4 };
    defs.set(key, def);
  }
  return def;
}

/** Encodes C = alpha·op(A)·op(B) + beta·C into `step`. */
export function matmul(step: Step, op: MatmulOp): void {
  const { a, b, c, m, n, k } = op;
  const transA = op.transA ?? false, transB = op.transB ?? false;
  const batch = op.batch ?? 1, alpha = op.alpha ?? 1, beta = op.beta ?? 0;
  const aOff = op.aOffset ?? 0, bOff = op.bOffset ?? 0, cOff = op.cOffset ?? 0;
  for (const [name, v] of [["m", m], ["n", n], ["k", k], ["batch", batch]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new TnlError("internal", `matmul: ${name} = ${v}`);
  }
  for (const t of [a, b, c]) {
    if (t.dtype !== "f32") {
      throw new TnlError("internal", `matmul: tensor '${t.label}' is ${t.dtype}, expected f32`);
    }
  }
  const need = (t: Tensor, off: number, elems: number, what: string) => {
    if (off + elems > t.size) {
      throw new TnlError(
        "internal",
        `matmul: ${what} '${t.label}' [${t.shape}] holds ${t.size} elements, needs ${off + elems}`,
      );
    }
  };
  need(a, aOff, batch * m * k, "A");
  need(b, bOff, batch * k * n, "B");
  need(c, cOff, batch * m * n, "C");
  if (m === 0 || n === 0 || batch === 0) return;

  // Contiguous row-major: the leading dimension is the length of a stored row.
  const lda = transA ? m : k, ldb = transB ? k : n, ldc = n;
  const sa = m * k, sb = k * n, sc = m * n; // batch strides
  // Software adapters cap loop iterations per invocation (Gpu.loopLimit): a K tile of 16 costs one
  // iteration (its steps are unrolled), the stores up to 64 more; longer K accumulates over dispatches.
  const kMax = Number.isFinite(step.gpu.loopLimit)
    ? MATMUL_K_TILE * Math.floor((step.gpu.loopLimit - 256) / 2)
    : Infinity;
  // Element offset of column/row k0 of op(A) and op(B) inside a stored matrix.
  const aK = (k0: number) => (transA ? k0 * lda : k0), bK = (k0: number) => (transB ? k0 : k0 * ldb);
  const base = { m, n, k, lda, ldb, ldc, alpha, transA, transB };

  const fitA = a.maxViewElements(), fitB = b.maxViewElements(), fitC = c.maxViewElements();
  const maxZ = step.gpu.limits.maxComputeWorkgroupsPerDimension;
  // Whole batches per dispatch while the three ranges fit in one binding each.
  const perDispatch = Math.min(
    maxZ,
    Math.floor(fitA / Math.max(sa, 1)),
    Math.floor(fitB / Math.max(sb, 1)),
    Math.floor(fitC / Math.max(sc, 1)),
  );
  const splits = op.splitK ?? autoSplit(step.gpu, m, n, k, batch);
  if (perDispatch >= 1 && batch === 1 && splits > 1 && k <= kMax && k >= 2 * splits) {
    splitK(step, op, splits, { ...base, aOff, bOff, cOff, aK, bK });
    return;
  }
  if (perDispatch >= 1) {
    const kStep = Math.max(1, Math.min(k, kMax));
    for (let z0 = 0; z0 < batch; z0 += perDispatch) {
      const nz = Math.min(perDispatch, batch - z0);
      for (let k0 = 0; k0 === 0 || k0 < k; k0 += kStep) {
        encode(step, op, {
          ...base,
          k: Math.min(kStep, k - k0),
          batch: nz,
          aStart: aOff + z0 * sa + aK(k0),
          aCount: nz * sa,
          bStart: bOff + z0 * sb + bK(k0),
          bCount: nz * sb,
          cStart: cOff + z0 * sc,
          cCount: nz * sc,
          sa,
          sb,
          sc,
          beta: k0 === 0 ? beta : 1,
        });
      }
    }
    return;
  }

  // One matrix is over the binding limit: slice each batch by rows of the stored matrices.
  const rowsFit = (fit: number, ld: number, what: string, t: Tensor) => {
    const r = Math.floor(fit / Math.max(ld, 1));
    if (r < 1) {
      throw new TnlError(
        "gpu",
        `matmul: one row of ${what} '${t.label}' (${ld} floats) does not fit in one storage binding ` +
          `(${step.gpu.maxBindingBytes} bytes)`,
      );
    }
    return r;
  };
  // mc: rows of C (and of A when A is [M, K]); kc: rows of A^T or B (K); nc: rows of B^T (N).
  let mc = rowsFit(fitC, ldc, "C", c);
  if (!transA) mc = Math.min(mc, rowsFit(fitA, lda, "A", a));
  let kc = Math.min(k, kMax);
  if (transA) kc = Math.min(kc, rowsFit(fitA, lda, "A", a));
  if (!transB) kc = Math.min(kc, rowsFit(fitB, ldb, "B", b));
  let nc = n;
  if (transB) nc = Math.min(nc, rowsFit(fitB, ldb, "B", b));
  // Whole tiles per slice where possible.
  const tiled = (
    x: number,
    total: number,
  ) => (x >= total ? total : Math.max(MATMUL_TILE, x - (x % MATMUL_TILE)));
  mc = Math.min(tiled(mc, m), mc);
  nc = Math.min(tiled(nc, n), nc);
  kc = Math.max(1, kc >= k ? k : kc - (kc % MATMUL_K_TILE) || kc);
  for (let z = 0; z < batch; z++) {
    for (let m0 = 0; m0 < m; m0 += mc) {
      const mm = Math.min(mc, m - m0);
      for (let n0 = 0; n0 < n; n0 += nc) {
        const nn = Math.min(nc, n - n0);
        for (let k0 = 0; k0 === 0 || k0 < k; k0 += kc) {
          const kk = Math.min(kc, k - k0);
          // Element (0, 0) of the sub-problem and the stored rows its binding spans.
          const aFirst = aOff + z * sa + aK(k0) + (transA ? m0 : m0 * lda);
          const aSpan = transA ? (kk - 1) * lda + mm : (mm - 1) * lda + kk;
          const bFirst = bOff + z * sb + bK(k0) + (transB ? n0 * ldb : n0);
          const bSpan = transB ? (nn - 1) * ldb + kk : (kk - 1) * ldb + nn;
          const cFirst = cOff + z * sc + m0 * ldc + n0;
          const cSpan = (mm - 1) * ldc + nn;
          encode(step, op, {
            ...base,
            m: mm,
            n: nn,
            k: kk,
            batch: 1,
            aStart: aFirst,
            aCount: Math.max(aSpan, 1),
            bStart: bFirst,
            bCount: Math.max(bSpan, 1),
            cStart: cFirst,
            cCount: cSpan,
            sa: 0,
            sb: 0,
            sc: 0,
            beta: k0 === 0 ? beta : 1,
          });
        }
      }
    }
  }
}

/**
 * Workgroups the GPU runs at once, by which split-K judges how full the last wave is: 132 SMs × 2 of these
 * 256-invocation workgroups on the H200 (WebGPU does not tell the SM count; other GPUs are served well enough).
 */
export const MATMUL_WAVE = 264;

/** Splits of K that fill the waves best (small grids with long K: the weight gradients); 1 = none. */
export function autoSplit(
  gpu: { adapter: { fallback: boolean } },
  m: number,
  n: number,
  k: number,
  batch: number,
): number {
  if (batch !== 1 || gpu.adapter.fallback) return 1;
  const grid = Math.ceil(m / MATMUL_TILE) * Math.ceil(n / MATMUL_TILE);
  let best = 1, bestScore = 0;
  for (let s = 1; s <= 16 && k / s >= 256; s++) {
    const w = grid * s;
    // The fraction of busy slots in the last wave, less 2% per extra split for the partials' traffic.
    const score = (w / (Math.ceil(w / MATMUL_WAVE) * MATMUL_WAVE)) * (1 - 0.02 * (s - 1));
    if (score > bestScore + 1e-9) {
      best = s;
      bestScore = score;
    }
  }
  return best;
}

const splitScratch = new WeakMap<object, Tensor>();

/**
 * C = alpha·Σ_s op(A)[:, K_s]·op(B)[K_s, :] + beta·C: the K range in `splits` parts computed as one batched
 * dispatch into a scratch buffer of partial products, then summed in a fixed order.
 */
function splitK(
  step: Step,
  op: MatmulOp,
  splits: number,
  p: {
    m: number;
    n: number;
    k: number;
    lda: number;
    ldb: number;
    ldc: number;
    alpha: number;
    transA: boolean;
    transB: boolean;
    aOff: number;
    bOff: number;
    cOff: number;
    aK: (k0: number) => number;
    bK: (k0: number) => number;
  },
): void {
  const { m, n, k } = p;
  const kc = Math.ceil(k / splits / MATMUL_K_TILE) * MATMUL_K_TILE;
  const full = Math.floor(k / kc), rem = k - full * kc, parts = full + (rem > 0 ? 1 : 0);
  const gpu = step.gpu;
  let scratch = splitScratch.get(gpu);
  if (!scratch || scratch.size < parts * m * n) {
    // Older, smaller scratch buffers stay alive: dispatches already encoded may still use them.
    scratch = Tensor.empty(gpu, [parts * m * n], "f32", "matmul split-K partials");
    splitScratch.set(gpu, scratch);
  }
  const common = { ...p, ldc: n, alpha: 1, beta: 0 };
  encode(step, { ...op, c: scratch }, {
    ...common,
    k: kc,
    batch: full,
    aStart: p.aOff,
    aCount: m * k,
    bStart: p.bOff,
    bCount: k * n,
    cStart: 0,
    cCount: full * m * n,
    sa: p.aK(kc),
    sb: p.bK(kc),
    sc: m * n,
  });
  if (rem > 0) {
    encode(step, { ...op, c: scratch }, {
      ...common,
      k: rem,
      batch: 1,
      aStart: p.aOff + p.aK(full * kc),
      aCount: m * k - p.aK(full * kc),
      bStart: p.bOff + p.bK(full * kc),
      bCount: k * n - p.bK(full * kc),
      cStart: full * m * n,
      cCount: m * n,
      sa: 0,
      sb: 0,
      sc: 0,
    });
  }
  sumParts(step, scratch, Tensor.part(op.c, p.cOff, [m * n], "C"), m * n, parts, p.alpha, op.beta ?? 0);
}

interface SubProblem {
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  batch: number;
  aStart: number;
  aCount: number;
  bStart: number;
  bCount: number;
  cStart: number;
  cCount: number;
  sa: number;
  sb: number;
  sc: number;
  alpha: number;
  beta: number;
  transA: boolean;
  transB: boolean;
}

function encode(step: Step, op: MatmulOp, s: SubProblem): void {
  const va = op.a.view(s.aStart, Math.min(s.aCount, op.a.size - s.aStart));
  const vb = op.b.view(s.bStart, Math.min(s.bCount, op.b.size - s.bStart));
  const vc = op.c.view(s.cStart, s.cCount);
  const v4 = (x: number) => x % 4 === 0;
  const vecA = v4(s.lda) && v4(va.base) && v4(s.sa) && (s.transA || v4(s.k));
  const vecB = v4(s.ldb) && v4(vb.base) && v4(s.sb) && (!s.transB || v4(s.k));
  const vecC = v4(s.ldc) && v4(vc.base) && v4(s.sc);
  const kernel: Kernel = step.gpu.kernel(
    kernelDef({ transA: s.transA, transB: s.transB, vecA, vecB, vecC }),
  );
  const params = packParams([
    [s.m, "u32"],
    [s.n, "u32"],
    [s.k, "u32"],
    [s.lda, "u32"],
    [s.ldb, "u32"],
    [s.ldc, "u32"],
    [va.base, "u32"],
    [vb.base, "u32"],
    [vc.base, "u32"],
    [s.sa, "u32"],
    [s.sb, "u32"],
    [s.sc, "u32"],
    [s.alpha, "f32"],
    [s.beta, "f32"],
  ]);
  step.dispatch(kernel, [va, vb, vc], params, [
    Math.ceil(s.n / MATMUL_TILE),
    Math.ceil(s.m / MATMUL_TILE),
    s.batch,
  ]);
}

/** Floating-point operations of one matmul (2·M·N·K per batch). */
export function matmulFlops(m: number, n: number, k: number, batch = 1): number {
  return 2 * m * n * k * batch;
}

/** Benchmark cases: square sizes and the linear-layer shapes of tnl-385m (B·T = 8192, D = 1024, F = 2816). */
export const matmulBenchCases: BenchCase[] = [{
  name: "matmul",
  group: "kernels",
  shapes: (quick): BenchShape[] =>
    quick ? [{ op: "nn", m: 256, n: 256, k: 256 }, { op: "nt", m: 255, n: 257, k: 129 }] : [
      { op: "nn", m: 1024, n: 1024, k: 1024 },
      { op: "nn", m: 4096, n: 4096, k: 4096 },
      { op: "nt", m: 8192, n: 4096, k: 1024 }, // x·Wᵀ, qkvu projection
      { op: "nn", m: 8192, n: 1024, k: 2816 }, // dX = dY·W, SGLU l3
      { op: "tn", m: 2816, n: 1024, k: 8192 }, // dW = dYᵀ·X
    ],
  setup(gpu, shape) {
    const m = Number(shape.m), n = Number(shape.n), k = Number(shape.k);
    const op = String(shape.op);
    const transA = op[0] === "t", transB = op[1] === "t";
    const rng = new Rng(m * 31 + n * 7 + k);
    const a = Tensor.from(gpu, rng.uniformArray(m * k), transA ? [k, m] : [m, k], "f32", "bench A");
    const b = Tensor.from(gpu, rng.uniformArray(k * n), transB ? [n, k] : [k, n], "f32", "bench B");
    const c = Tensor.empty(gpu, [m, n], "f32", "bench C");
    return {
      encode: (step) => matmul(step, { a, b, c, m, n, k, transA, transB }),
      flops: matmulFlops(m, n, k),
      dispose: () => [a, b, c].forEach((t) => t.destroy()),
    };
  },
}];
