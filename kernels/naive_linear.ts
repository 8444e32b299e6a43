// Naive decayed causal linear attention, the baseline Lightning Attention is measured against: it
// materialises the masked, decayed score matrix S = (Q Kᵀ) ⊙ M ([T, T] per head, fp32) and multiplies with
// the project's tiled matmul (batched over heads). O(T²) memory and 2·T²·(d+e) FLOPs per head forward;
// the backward recomputes S from Q, K (nothing saved but Q, K, V):
//   dV = Sᵀ dO,  dS = (dO Vᵀ) ⊙ M,  dQ = dS K,  dK = dSᵀ Q.
// Heads are processed in groups whose [G, T, T] buffer fits one storage binding; when one head's T×T
// does not fit, the call is refused. The float64 reference is lightningRef / lightningBackwardRef.

import { randomTensor } from "./elementwise.ts";
import type { BenchCase } from "../core/bench.ts";
import { TnlError } from "../core/errors.ts";
import { formatBytes, type Gpu, type KernelDef, type Step } from "../core/gpu.ts";
import { Tensor } from "../core/tensor.ts";
import { ATTENTION_QUICK_SHAPES, tnlDecayRates } from "./lightning.ts";
import { matmul } from "./matmul.ts";
import { packParams } from "./wgsl.ts";
import source from "./naive_linear.wgsl" with { type: "text" };

export interface NaiveLinearShape {
  B: number;
  H: number;
  T: number;
  d: number;
  e: number;
}

export interface NaiveLinearForwardArgs extends NaiveLinearShape {
  q: Tensor; // [B, H, T, d] f32
  k: Tensor; // [B, H, T, d] f32
  v: Tensor; // [B, H, T, e] f32
  o: Tensor; // [B, H, T, e] f32 (written)
  slopes: Tensor; // [H] f32
  /** [G, T, T] f32 buffer (≥ naiveLinearScratchElements); default: cached per device. */
  scratch?: Tensor;
}

export interface NaiveLinearBackwardArgs extends NaiveLinearShape {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  do: Tensor; // [B, H, T, e] f32
  dq: Tensor; // [B, H, T, d] f32 (written)
  dk: Tensor; // [B, H, T, d] f32 (written)
  dv: Tensor; // [B, H, T, e] f32 (written)
  slopes: Tensor;
  scratch?: Tensor;
}

const maskDef: KernelDef = {
  name: "naive_linear_mask",
  code: source,
  bindings: ["read", "rw"],
  paramBytes: 4 * 4,
};

/** Heads whose [T, T] score matrices fit one binding together; throws when one does not. */
export function naiveLinearGroup(gpu: Gpu, shape: NaiveLinearShape): number {
  const perHead = shape.T * shape.T * 4;
  const fit = gpu.maxBindingBytes - gpu.limits.minStorageBufferOffsetAlignment;
  if (perHead > fit) {
    throw new TnlError(
      "gpu",
      `naive linear attention needs a T×T score matrix of ${
        formatBytes(perHead)
      } per head (T = ${shape.T}); ` +
        `this device binds at most ${formatBytes(gpu.maxBindingBytes)}`,
    );
  }
  return Math.min(shape.B * shape.H, Math.floor(fit / perHead), gpu.limits.maxComputeWorkgroupsPerDimension);
}

/** f32 elements of the score buffer the calls use for this shape. */
export function naiveLinearScratchElements(gpu: Gpu, shape: NaiveLinearShape): number {
  return naiveLinearGroup(gpu, shape) * shape.T * shape.T;
}

// Per device: the score buffer in use, and smaller ones it replaced (a step being encoded may still bind
// them, so they live until naiveLinearReleaseScratch).
const cache = new WeakMap<Gpu, { current: Tensor; retired: Tensor[] }>();

function scoreBuffer(gpu: Gpu, shape: NaiveLinearShape, given?: Tensor): Tensor {
  const need = naiveLinearScratchElements(gpu, shape);
  if (given) {
    if (given.dtype !== "f32" || given.size < need) {
      throw new TnlError(
        "internal",
        `naive linear: scratch '${given.label}' holds ${given.size}, needs ${need} f32`,
      );
    }
    return given;
  }
  const have = cache.get(gpu);
  if (have && have.current.size >= need) return have.current;
  const current = Tensor.empty(gpu, [need], "f32", "naive linear scores");
  cache.set(gpu, { current, retired: have ? [...have.retired, have.current] : [] });
  return current;
}

/** Frees the cached score buffers (after the steps that used them were submitted). */
export function naiveLinearReleaseScratch(gpu: Gpu): void {
  const have = cache.get(gpu);
  if (!have) return;
  for (const t of [have.current, ...have.retired]) t.destroy();
  cache.delete(gpu);
}

function check(t: Tensor, what: string, elems: number): void {
  if (t.dtype !== "f32" || t.size !== elems) {
    throw new TnlError(
      "internal",
      `naive linear: ${what} '${t.label}' [${t.shape}] ${t.dtype}: expected ${elems} f32`,
    );
  }
}

function mask(step: Step, s: Tensor, slopes: Tensor, T: number, H: number, h0: number, g: number): void {
  const view = s.view(0, g * T * T);
  step.dispatch(
    step.gpu.kernel(maskDef),
    [slopes.view(), view],
    packParams([[T, "u32"], [H, "u32"], [h0, "u32"], [view.base, "u32"]]),
    [Math.ceil(T / 256), T, g],
  );
}

/** S ← (X Yᵀ) ⊙ M for heads [h0, h0 + g): X, Y rows of width `width`. */
function scores(step: Step, s: Tensor, x: Tensor, y: Tensor, width: number, a: Args, h0: number, g: number) {
  const { T } = a;
  matmul(step, {
    a: x,
    b: y,
    c: s,
    m: T,
    n: T,
    k: width,
    transB: true,
    batch: g,
    aOffset: h0 * T * width,
    bOffset: h0 * T * width,
  });
  mask(step, s, a.slopes, T, a.H, h0, g);
}

type Args = NaiveLinearShape & { slopes: Tensor };

/** Encodes O = [(Q Kᵀ) ⊙ M] V through a materialised [T, T] matrix per head. */
export function naiveLinearForward(step: Step, a: NaiveLinearForwardArgs): void {
  const { B, H, T, d, e } = a;
  const n = B * H * T;
  check(a.q, "q", n * d);
  check(a.k, "k", n * d);
  check(a.v, "v", n * e);
  check(a.o, "o", n * e);
  check(a.slopes, "slopes", H);
  if (T === 0) return;
  const group = naiveLinearGroup(step.gpu, a);
  const s = scoreBuffer(step.gpu, a, a.scratch);
  for (let h0 = 0; h0 < B * H; h0 += group) {
    const g = Math.min(group, B * H - h0);
    scores(step, s, a.q, a.k, d, a, h0, g);
    matmul(step, {
      a: s,
      b: a.v,
      c: a.o,
      m: T,
      n: e,
      k: T,
      batch: g,
      bOffset: h0 * T * e,
      cOffset: h0 * T * e,
    });
  }
}

/** Encodes dQ, dK, dV of naiveLinearForward, recomputing S from Q and K. */
export function naiveLinearBackward(step: Step, a: NaiveLinearBackwardArgs): void {
  const { B, H, T, d, e } = a;
  const n = B * H * T;
  check(a.q, "q", n * d);
  check(a.k, "k", n * d);
  check(a.v, "v", n * e);
  check(a.do, "do", n * e);
  check(a.dq, "dq", n * d);
  check(a.dk, "dk", n * d);
  check(a.dv, "dv", n * e);
  check(a.slopes, "slopes", H);
  if (T === 0) return;
  const group = naiveLinearGroup(step.gpu, a);
  const s = scoreBuffer(step.gpu, a, a.scratch);
  for (let h0 = 0; h0 < B * H; h0 += group) {
    const g = Math.min(group, B * H - h0);
    const od = h0 * T * d, oe = h0 * T * e;
    scores(step, s, a.q, a.k, d, a, h0, g); // S
    matmul(step, {
      a: s,
      b: a.do,
      c: a.dv,
      m: T,
      n: e,
      k: T,
      transA: true,
      batch: g,
      bOffset: oe,
      cOffset: oe,
    });
    scores(step, s, a.do, a.v, e, a, h0, g); // dS
    matmul(step, { a: s, b: a.k, c: a.dq, m: T, n: d, k: T, batch: g, bOffset: od, cOffset: od });
    matmul(step, {
      a: s,
      b: a.q,
      c: a.dk,
      m: T,
      n: d,
      k: T,
      transA: true,
      batch: g,
      bOffset: od,
      cOffset: od,
    });
  }
}

/**
 * Benchmark cases. Full shapes are b=4, h=16, d=e=128 at T = 1K, 4K, 16K; T = 64K is not registered: its
 * T×T matrix is 16 GiB per head, over any storage binding (2 GiB on the H200) and beyond the point.
 */
export const NAIVE_LINEAR_BENCH_T = [1024, 4096, 16384];

function shapes(quick: boolean) {
  return quick
    ? ATTENTION_QUICK_SHAPES
    : NAIVE_LINEAR_BENCH_T.map((T) => ({ b: 4, h: 16, T, d: 128, e: 128 }));
}

function benchInputs(gpu: Gpu, shape: Record<string, number | string>, seed: number) {
  const B = Number(shape.b),
    H = Number(shape.h),
    T = Number(shape.T),
    d = Number(shape.d),
    e = Number(shape.e);
  let i = 0;
  const t = (_n: number, dims: number[], label: string) =>
    randomTensor(gpu, dims, label, seed + i++, -0.5, 0.5);
  return {
    B,
    H,
    T,
    d,
    e,
    q: t(B * H * T * d, [B, H, T, d], "bench q"),
    k: t(B * H * T * d, [B, H, T, d], "bench k"),
    v: t(B * H * T * e, [B, H, T, e], "bench v"),
    slopes: Tensor.from(gpu, tnlDecayRates(H, 0, 2), [H], "f32", "bench slopes"),
  };
}

export const naiveLinearBenchCases: BenchCase[] = [{
  name: "naive-linear-fwd",
  group: "kernels",
  shapes,
  setup(gpu, shape) {
    const x = benchInputs(gpu, shape, 21);
    naiveLinearGroup(gpu, x);
    const o = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench o");
    return {
      encode: (step) => naiveLinearForward(step, { ...x, o }),
      // 2·T²·d for Q Kᵀ and 2·T²·e for S V per head: the full products, as executed.
      flops: 2 * x.B * x.H * x.T * x.T * (x.d + x.e),
      tokens: x.B * x.T,
      dispose: () => {
        [x.q, x.k, x.v, x.slopes, o].forEach((t) => t.destroy());
        naiveLinearReleaseScratch(gpu);
      },
    };
  },
}, {
  name: "naive-linear-fwdbwd",
  group: "kernels",
  shapes,
  setup(gpu, shape) {
    const x = benchInputs(gpu, shape, 22);
    naiveLinearGroup(gpu, x);
    const o = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench o");
    const dO = randomTensor(gpu, [x.B, x.H, x.T, x.e], "bench do", 23);
    const dq = Tensor.empty(gpu, [x.B, x.H, x.T, x.d], "f32", "bench dq");
    const dk = Tensor.empty(gpu, [x.B, x.H, x.T, x.d], "f32", "bench dk");
    const dv = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench dv");
    return {
      encode: (step) => {
        naiveLinearForward(step, { ...x, o });
        naiveLinearBackward(step, { ...x, do: dO, dq, dk, dv });
      },
      // forward 2T²(d+e); backward: S again 2T²d, dV 2T²e, dS 2T²e, dQ and dK 2·2T²d.
      flops: 2 * x.B * x.H * x.T * x.T * (4 * x.d + 3 * x.e),
      tokens: x.B * x.T,
      dispose: () => {
        [x.q, x.k, x.v, x.slopes, o, dO, dq, dk, dv].forEach((t) => t.destroy());
        naiveLinearReleaseScratch(gpu);
      },
    };
  },
}];
