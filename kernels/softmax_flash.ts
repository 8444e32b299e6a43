// Dispatcher of causal softmax attention in the FlashAttention-2 style (kernels/softmax_flash.wgsl), the
// baseline Lightning Attention is measured against: forward with online softmax saving the row
// logsumexp L [B, H, T]; backward recomputing P from Q, K and L: D = rowsum(dO ⊙ O), then one kernel for
// dQ (over key blocks) and one for dK, dV (over query blocks), with no atomics. scale = 1/√d.
// Head dims d and e: multiples of 4, at most 128. Tensors over the binding limit are processed in groups
// of heads.

import { randomTensor } from "./elementwise.ts";
import type { BenchCase } from "../core/bench.ts";
import { TnlError } from "../core/errors.ts";
import type { Gpu, KernelDef, Step } from "../core/gpu.ts";
import { Tensor, type TensorView } from "../core/tensor.ts";
import { ATTENTION_BENCH_T, ATTENTION_QUICK_SHAPES } from "./lightning.ts";
import { packParams, preprocess } from "./wgsl.ts";
import source from "./softmax_flash.wgsl" with { type: "text" };

export const SOFTMAX_FLASH_MAX_HEAD_DIM = 128;
const BLOCK = 32;

export interface SoftmaxShape {
  B: number;
  H: number;
  T: number;
  d: number;
  e: number;
}

export interface SoftmaxForwardArgs extends SoftmaxShape {
  q: Tensor; // [B, H, T, d] f32
  k: Tensor; // [B, H, T, d] f32
  v: Tensor; // [B, H, T, e] f32
  o: Tensor; // [B, H, T, e] f32 (written)
  lse: Tensor; // [B, H, T] f32 (written): log Σ_s exp(scale·q_t·k_s)
}

export interface SoftmaxBackwardArgs extends SoftmaxShape {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor; // the forward's output
  lse: Tensor; // the forward's logsumexp
  do: Tensor; // [B, H, T, e] f32
  dq: Tensor; // [B, H, T, d] f32 (written)
  dk: Tensor; // [B, H, T, d] f32 (written)
  dv: Tensor; // [B, H, T, e] f32 (written)
  /** [B, H, T] f32 for D = rowsum(dO ⊙ O); default: cached per device. */
  delta?: Tensor;
}

type Variant = "FWD" | "DQ" | "DKDV" | "DELTA";
const BINDINGS: Record<Variant, ("read" | "rw")[]> = {
  FWD: ["read", "read", "read", "rw", "rw"],
  DQ: ["read", "read", "read", "read", "read", "read", "rw"],
  DKDV: ["read", "read", "read", "read", "read", "read", "rw", "rw"],
  DELTA: ["read", "read", "rw"],
};

const defs = new Map<string, KernelDef>();
function def(variant: Variant, ep: number): KernelDef {
  const key = `softmax_flash_${variant.toLowerCase()}_e${ep}`;
  let d = defs.get(key);
  if (!d) {
    const code = preprocess("softmax_flash", source, {
      FWD: variant === "FWD",
      DQ: variant === "DQ",
      DKDV: variant === "DKDV",
      DELTA: variant === "DELTA",
      E128: ep === 128,
      EP4: ep / 4,
    });
    d = { name: key, code, bindings: BINDINGS[variant], paramBytes: 14 * 4 };
    defs.set(key, d);
  }
  return d;
}

function checkShape(s: SoftmaxShape): void {
  for (const [n, v] of [["B", s.B], ["H", s.H], ["T", s.T], ["d", s.d], ["e", s.e]] as const) {
    if (!Number.isSafeInteger(v) || v < (n === "T" ? 0 : 1)) {
      throw new TnlError("internal", `softmax attention: ${n} = ${v}`);
    }
  }
  for (const [n, v] of [["d", s.d], ["e", s.e]] as const) {
    if (v % 4 !== 0 || v > SOFTMAX_FLASH_MAX_HEAD_DIM) {
      throw new TnlError(
        "input",
        `softmax attention: head dim ${n} = ${v}; this kernel takes multiples of 4 up to ${SOFTMAX_FLASH_MAX_HEAD_DIM}`,
      );
    }
  }
}

function check(t: Tensor, what: string, elems: number): void {
  if (t.dtype !== "f32" || t.size !== elems) {
    throw new TnlError(
      "internal",
      `softmax attention: ${what} '${t.label}' [${t.shape}] ${t.dtype}: expected ${elems} f32`,
    );
  }
}

/** Heads per dispatch so that every per-head range fits one binding. */
function headGroup(gpu: Gpu, s: SoftmaxShape): number {
  const fit = Math.floor((gpu.maxBindingBytes - gpu.limits.minStorageBufferOffsetAlignment) / 4);
  const per = s.T * Math.max(s.d, s.e);
  if (per > fit) {
    throw new TnlError(
      "gpu",
      `softmax attention: one head (T = ${s.T}, ${per} f32) exceeds one storage binding of ${gpu.maxBindingBytes} bytes`,
    );
  }
  return Math.min(s.B * s.H, Math.floor(fit / per), gpu.limits.maxComputeWorkgroupsPerDimension);
}

interface Views {
  q?: TensorView;
  k?: TensorView;
  v?: TensorView;
  o?: TensorView;
  do?: TensorView;
  l?: TensorView;
  dl?: TensorView;
  x?: TensorView;
  y?: TensorView;
}

function params(s: SoftmaxShape, v: Views): Uint8Array {
  return packParams([
    [s.T, "u32"],
    [s.d, "u32"],
    [s.e, "u32"],
    [Math.ceil(s.T / BLOCK), "u32"],
    [1 / Math.sqrt(s.d), "f32"],
    [v.q?.base ?? 0, "u32"],
    [v.k?.base ?? 0, "u32"],
    [v.v?.base ?? 0, "u32"],
    [v.o?.base ?? 0, "u32"],
    [v.do?.base ?? 0, "u32"],
    [v.l?.base ?? 0, "u32"],
    [v.dl?.base ?? 0, "u32"],
    [v.x?.base ?? 0, "u32"],
    [v.y?.base ?? 0, "u32"],
  ]);
}

/** Columns of register accumulator: 64 or 128 (covers d and e). */
function accWidth(s: SoftmaxShape): number {
  return Math.max(s.d, s.e) > 64 ? 128 : 64;
}

/** Encodes O and L of causal softmax attention into `step`. */
export function softmaxFlashForward(step: Step, a: SoftmaxForwardArgs): void {
  checkShape(a);
  const { B, H, T, d, e } = a;
  check(a.q, "q", B * H * T * d);
  check(a.k, "k", B * H * T * d);
  check(a.v, "v", B * H * T * e);
  check(a.o, "o", B * H * T * e);
  check(a.lse, "lse", B * H * T);
  if (T === 0) return;
  const gpu = step.gpu;
  const kernel = gpu.kernel(def("FWD", accWidth(a)));
  const group = headGroup(gpu, a);
  for (let h0 = 0; h0 < B * H; h0 += group) {
    const g = Math.min(group, B * H - h0);
    const v: Views = {
      q: a.q.view(h0 * T * d, g * T * d),
      k: a.k.view(h0 * T * d, g * T * d),
      v: a.v.view(h0 * T * e, g * T * e),
      o: a.o.view(h0 * T * e, g * T * e),
      l: a.lse.view(h0 * T, g * T),
    };
    step.dispatch(kernel, [v.q!, v.k!, v.v!, v.o!, v.l!], params(a, v), [Math.ceil(T / BLOCK), g]);
  }
}

const deltaCache = new WeakMap<Gpu, Tensor[]>();
function deltaBuffer(gpu: Gpu, elems: number): Tensor {
  const list = deltaCache.get(gpu) ?? [];
  deltaCache.set(gpu, list);
  const fit = list.find((t) => t.size >= elems);
  if (fit) return fit;
  const t = Tensor.empty(gpu, [elems], "f32", "softmax attention D");
  list.push(t);
  return t;
}

/** Frees the cached D buffers (after the steps that used them were submitted). */
export function softmaxFlashReleaseScratch(gpu: Gpu): void {
  for (const t of deltaCache.get(gpu) ?? []) t.destroy();
  deltaCache.delete(gpu);
}

/** Encodes dQ, dK, dV of softmaxFlashForward, recomputing P from Q, K and the saved L. */
export function softmaxFlashBackward(step: Step, a: SoftmaxBackwardArgs): void {
  checkShape(a);
  const { B, H, T, d, e } = a;
  const n = B * H * T;
  check(a.q, "q", n * d);
  check(a.k, "k", n * d);
  check(a.v, "v", n * e);
  check(a.o, "o", n * e);
  check(a.do, "do", n * e);
  check(a.lse, "lse", n);
  check(a.dq, "dq", n * d);
  check(a.dk, "dk", n * d);
  check(a.dv, "dv", n * e);
  if (T === 0) return;
  const gpu = step.gpu;
  const delta = a.delta ?? deltaBuffer(gpu, n);
  if (delta.dtype !== "f32" || delta.size < n) {
    throw new TnlError(
      "internal",
      `softmax attention: delta '${delta.label}' holds ${delta.size}, needs ${n} f32`,
    );
  }
  const ep = accWidth(a);
  const kDelta = gpu.kernel(def("DELTA", ep));
  const kDq = gpu.kernel(def("DQ", ep));
  const kDkdv = gpu.kernel(def("DKDV", ep));
  const group = headGroup(gpu, a);
  const nblk = Math.ceil(T / BLOCK);
  for (let h0 = 0; h0 < B * H; h0 += group) {
    const g = Math.min(group, B * H - h0);
    const rd = (t: Tensor) => t.view(h0 * T * d, g * T * d);
    const re = (t: Tensor) => t.view(h0 * T * e, g * T * e);
    const v: Views = {
      q: rd(a.q),
      k: rd(a.k),
      v: re(a.v),
      o: re(a.o),
      do: re(a.do),
      l: a.lse.view(h0 * T, g * T),
      dl: delta.view(h0 * T, g * T),
    };
    step.dispatch(kDelta, [v.o!, v.do!, v.dl!], params(a, v), [Math.ceil(T / 64), g]);
    const vq = { ...v, x: rd(a.dq) };
    step.dispatch(kDq, [v.q!, v.k!, v.v!, v.do!, v.l!, v.dl!, vq.x], params(a, vq), [nblk, g]);
    const vk = { ...v, x: rd(a.dk), y: re(a.dv) };
    step.dispatch(kDkdv, [v.q!, v.k!, v.v!, v.do!, v.l!, v.dl!, vk.x, vk.y], params(a, vk), [nblk, g]);
  }
}

// ---------------------------------------------------------------- benchmarks

/**
 * FLOPs of causal attention per (batch, head): 2 per MAC over the T(T+1)/2 live (query, key) pairs, i.e.
 * forward 2·T²/2·(d + e) (= 4·T²·d/2 for d = e); backward as executed: Sᵀ, dPᵀ, dV, dK in the dK/dV kernel
 * and S, dP, dQ in the dQ kernel, (4d + 3e) MACs per pair.
 */
export function softmaxFlops(T: number, d: number, e: number) {
  const pairs = (T * (T + 1)) / 2;
  return { forward: 2 * pairs * (d + e), backward: 2 * pairs * (4 * d + 3 * e) };
}

function shapes(quick: boolean) {
  return quick ? ATTENTION_QUICK_SHAPES : ATTENTION_BENCH_T.map((T) => ({ b: 4, h: 16, T, d: 128, e: 128 }));
}

function inputs(gpu: Gpu, shape: Record<string, number | string>, seed: number) {
  const B = Number(shape.b),
    H = Number(shape.h),
    T = Number(shape.T),
    d = Number(shape.d),
    e = Number(shape.e);
  let i = 0;
  const t = (_n: number, dims: number[], label: string) => randomTensor(gpu, dims, label, seed + i++);
  return {
    B,
    H,
    T,
    d,
    e,
    q: t(B * H * T * d, [B, H, T, d], "bench q"),
    k: t(B * H * T * d, [B, H, T, d], "bench k"),
    v: t(B * H * T * e, [B, H, T, e], "bench v"),
    o: Tensor.empty(gpu, [B, H, T, e], "f32", "bench o"),
    lse: Tensor.empty(gpu, [B, H, T], "f32", "bench lse"),
  };
}

export const softmaxFlashBenchCases: BenchCase[] = [{
  name: "softmax-flash-fwd",
  group: "kernels",
  shapes,
  setup(gpu, shape) {
    const x = inputs(gpu, shape, 31);
    return {
      encode: (step) => softmaxFlashForward(step, x),
      flops: x.B * x.H * softmaxFlops(x.T, x.d, x.e).forward,
      tokens: x.B * x.T,
      dispose: () => [x.q, x.k, x.v, x.o, x.lse].forEach((t) => t.destroy()),
    };
  },
}, {
  name: "softmax-flash-fwdbwd",
  group: "kernels",
  shapes,
  setup(gpu, shape) {
    const x = inputs(gpu, shape, 32);
    const dO = randomTensor(gpu, [x.B, x.H, x.T, x.e], "bench do", 33);
    const dq = Tensor.empty(gpu, [x.B, x.H, x.T, x.d], "f32", "bench dq");
    const dk = Tensor.empty(gpu, [x.B, x.H, x.T, x.d], "f32", "bench dk");
    const dv = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench dv");
    const f = softmaxFlops(x.T, x.d, x.e);
    return {
      encode: (step) => {
        softmaxFlashForward(step, x);
        softmaxFlashBackward(step, { ...x, do: dO, dq, dk, dv });
      },
      flops: x.B * x.H * (f.forward + f.backward),
      tokens: x.B * x.T,
      dispose: () => {
        [x.q, x.k, x.v, x.o, x.lse, dO, dq, dk, dv].forEach((t) => t.destroy());
        softmaxFlashReleaseScratch(gpu);
      },
    };
  },
}];
