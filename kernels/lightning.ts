// Dispatcher of Lightning Attention (kernels/lightning.wgsl, lightning_scan.wgsl): decayed causal linear
// attention O = [(Q Kᵀ) ⊙ M] V, M_ts = λ^(t−s) (t ≥ s), λ = e^(−s_h), forward, backward and the prefill
// state, each encoded into a given Step (no readbacks; scratch preallocated or cached per device).
//
// One kernel does all of it. It computes O_t = Σ_{u≤t} λ^(t−u) (A_t·B_u) C_u for "reader" rows A, "writer"
// rows B and values C, in logical time that may run backwards; the backward is three such products
// (derivation in docs/attention.md):
//   dQ = fwd(dO, V, K),   dK = rev(V, dO, Q),   dV = rev(K, Q, dO)
// so each gradient is a sweep in which a workgroup needs only its slice of the state, and the block-
// parallel form below applies to the backward unchanged. Nothing from the forward is saved but Q, K, V.
//
// Variants, chosen by device and shape (or forced with `variant`):
// - chunked (lightning_chunk.wgsl): the sequence is cut into chunks of 64 rows and every part of the work
//   is a GEMM-shaped product over all chunks at once: each chunk's contribution to the state (a [dk, dv]
//   product with K = 64), a scan of those along the chunks (lightning_scan.wgsl), and each chunk's
//   outputs from the state at its first row plus the masked score block of the chunk. The backward shares
//   the scans: dQ reads the forward-time state transposed, dK and dV one reverse-time state (dK transposed).
// - sequential: one workgroup per (head, slice of W output channels) walks all blocks of BT rows
//   (like Triton's _fwd_kernel); used when there are enough such workgroups to fill the GPU.
// - parallel: the sequence is cut into chunks of L rows (a multiple of BT). Pass 1 computes each chunk's
//   contribution to the state (scratch [heads, chunks, dk, dv] fp32), pass 2 scans them along the chunks
//   (exclusive, decay λ^L per chunk), pass 3 runs every chunk at once from the state at its first row
//   (inter term through that state, diagonal blocks inside the chunk).
//
// The forward and the prefill state can continue a sequence from a given state (`initialState`, the state
// kv_{t0−1} after the token before this part): evaluation of long documents in chunks at constant memory,
// and prefills of prompts longer than one pass.

import { randomTensor } from "./elementwise.ts";
import type { BenchCase } from "../core/bench.ts";
import { TnlError } from "../core/errors.ts";
import type { Gpu, KernelDef, Step } from "../core/gpu.ts";
import { Tensor, type TensorView } from "../core/tensor.ts";
import { packParams, preprocess } from "./wgsl.ts";
import source from "./lightning.wgsl" with { type: "text" };
import scanSource from "./lightning_scan.wgsl" with { type: "text" };
import chunkSource from "./lightning_chunk.wgsl" with { type: "text" };
import expm1Lib from "./expm1_lib.wgsl" with { type: "text" };

/** Streaming multiprocessors of the NVIDIA H200, the GPU the thresholds below are set for. */
export const LIGHTNING_SM_COUNT = 132;
/**
 * The sequential variant is chosen when it has at least this many workgroups (B·H·⌈e/W⌉): four
 * 128-invocation workgroups per SM, 16 warps, is the least occupancy that hides the latency of its
 * block-by-block loop. Below it the block-parallel variant is used.
 */
export const LIGHTNING_SEQUENTIAL_MIN_WORKGROUPS = 4 * LIGHTNING_SM_COUNT;
/** The block-parallel variant cuts the sequence into enough chunks for about this many workgroups. */
export const LIGHTNING_PARALLEL_TARGET_WORKGROUPS = 8 * LIGHTNING_SM_COUNT;
/**
 * Chunks of the parallel variant span at least this many blocks: each chunk's workgroup loads and stores
 * a d×W state slice, which costs about one block of work.
 */
export const LIGHTNING_MIN_CHUNK_BLOCKS = 4;
/** Largest head dimension (d or e) the kernels take. */
export const LIGHTNING_MAX_HEAD_DIM = 256;
/** Rows per block unless `blockRows` says otherwise. */
export const LIGHTNING_BLOCK_ROWS = 32;

/** Rows per chunk of the chunked variant (fixed by the tiling of lightning_chunk.wgsl). */
export const LIGHTNING_CHUNK_ROWS = 64;
/**
 * The chunked variant keeps one [dk, dv] state per chunk (two sets in the backward); heads are processed in
 * groups whose state sets fit in this many bytes (b4 h16 T64K d128 would otherwise take 8 GiB).
 */
export const LIGHTNING_CHUNKED_SCRATCH_BYTES = 1 << 30;
/**
 * Chunks per state workgroup (G) go up to this, while the state products keep at least
 * LIGHTNING_CHUNKED_STATE_MIN_WORKGROUPS workgroups: the scan then reads and writes 1/G of the chunk states
 * (b4 h16 T16K on the H200: G 8 → 16 → 32 took the scan 0.29 → 0.14 → 0.07 ms, the state products unchanged).
 */
export const LIGHTNING_MAX_CHUNK_GROUP = 32;
/** About two waves of two 256-invocation workgroups per SM of the H200 (2 × 2 × 132 = 528). */
export const LIGHTNING_CHUNKED_STATE_MIN_WORKGROUPS = 512;
/** Workgroup memory of the chunked kernels: the state kernel's double-buffered tiles (the output kernel 20 KiB). */
export const LIGHTNING_CHUNKED_WORKGROUP_BYTES = 2 * 2 * 16 * 128 * 4;

export type LightningVariant = "auto" | "chunked" | "sequential" | "parallel";

export interface LightningShape {
  /** Batch, heads, sequence length, head dims of q/k (d) and v/o (e). */
  B: number;
  H: number;
  T: number;
  d: number;
  e: number;
}

export interface LightningOptions {
  /**
   * Default "auto": chunked where the device can run it (chunkedUnsupported), else sequential when
   * B·H·⌈e/W⌉ ≥ LIGHTNING_SEQUENTIAL_MIN_WORKGROUPS, else parallel.
   */
  variant?: LightningVariant;
  /** Rows per block of the sequential and parallel variants: 16, 32 (default) or 64. */
  blockRows?: 16 | 32 | 64;
  /** Rows per chunk of the parallel variant (a multiple of the block rows); default from the shape. */
  chunkRows?: number;
  /** Chunks per state workgroup of the chunked variant (G, 1 … 64); default from the shape. */
  chunkGroup?: number;
  /**
   * Scratch for the chunked and parallel variants (≥ lightningScratchElements() f32); default: cached per
   * device.
   */
  scratch?: Tensor;
}

export interface LightningForwardArgs extends LightningShape, LightningOptions {
  q: Tensor; // [B, H, T, d] f32
  k: Tensor; // [B, H, T, d] f32
  v: Tensor; // [B, H, T, e] f32
  o: Tensor; // [B, H, T, e] f32 (written)
  slopes: Tensor; // [H] f32: the decay rate s per head (λ = e^−s), e.g. from tnlDecayRates
  /**
   * [B, H, d, e] f32: the state kv_{t0−1} = Σ_{s<t0} λ^(t0−1−s) k_sᵀ v_s of the tokens before row 0 (as
   * lightningPrefillState writes it); absent = a fresh start (zero).
   */
  initialState?: Tensor;
}

export interface LightningBackwardArgs extends LightningShape, LightningOptions {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  do: Tensor; // [B, H, T, e] f32: gradient of the output
  dq: Tensor; // [B, H, T, d] f32 (written)
  dk: Tensor; // [B, H, T, d] f32 (written)
  dv: Tensor; // [B, H, T, e] f32 (written)
  slopes: Tensor;
}

export interface LightningPrefillArgs extends LightningShape, LightningOptions {
  /** Needed with `o`. */
  q?: Tensor;
  k: Tensor;
  v: Tensor;
  /** When given, the outputs are computed in the same pass. */
  o?: Tensor;
  slopes: Tensor;
  /**
   * [B, H, d, e] f32 (written): kv_{T−1} = Σ_s λ^(T−1−s) k_sᵀ v_s, row-major with d rows (with
   * `initialState`, its decayed contribution λ^T·kv_{t0−1} included). Not the same memory as initialState.
   */
  state: Tensor;
  /** [B, H, d, e] f32: the state before row 0, as in LightningForwardArgs. */
  initialState?: Tensor;
}

// ---------------------------------------------------------------- decay rates

/** ALiBi slopes as the official `_build_slope_tensor` computes them (Python floats, i.e. float64). */
export function alibiSlopes(n: number): number[] {
  const pow2 = (m: number) => {
    const start = 2 ** -(2 ** -(Math.log2(m) - 3));
    const ratio = start;
    return Array.from({ length: m }, (_, i) => start * ratio ** i);
  };
  if (Number.isInteger(Math.log2(n))) return pow2(n);
  const c = 2 ** Math.floor(Math.log2(n));
  return [...pow2(c), ...alibiSlopes(2 * c).filter((_, i) => i % 2 === 0).slice(0, n - c)];
}

/**
 * Decay rates s_{h,l} of layer `layer` of `L` (spec §2.5): ALiBi slopes × (1 − l/(L−1) + 1e−5), in fp32 as
 * the official code computes them (torch.tensor of Python floats → fp32, times a Python float, which
 * PyTorch rounds to fp32 before an fp32 multiply).
 */
export function tnlDecayRates(H: number, layer: number, L: number): Float32Array {
  if (!Number.isInteger(H) || H < 1) throw new TnlError("input", `decay rates: heads = ${H}, expected ≥ 1`);
  if (!Number.isInteger(L) || L < 2) {
    throw new TnlError("input", `decay rates: layers = ${L}; the TNL decay needs at least 2 layers`);
  }
  if (!Number.isInteger(layer) || layer < 0 || layer >= L) {
    throw new TnlError("input", `decay rates: layer ${layer} is not in [0, ${L})`);
  }
  const factor = Math.fround(1 - layer / (L - 1) + 1e-5);
  return Float32Array.from(alibiSlopes(H), (m) => Math.fround(Math.fround(m) * factor));
}

// ---------------------------------------------------------------- configuration

interface Config {
  bt: number; // rows per block
  w: number; // output columns per workgroup
  dc: number; // staged columns of A/B
  dkmax: number; // rows of KV held
  nt: number; // invocations
  kr: number; // rows per KV-update tile
}

function workgroupBytes(c: Config, out: boolean): number {
  const ab = out ? Math.max(2 * c.bt * c.dc, c.bt * c.bt) : c.bt * c.dc;
  return 4 * (ab + c.bt * c.w + c.dkmax * c.w + 2 * c.bt + 1);
}

function makeConfig(gpu: Gpu, dk: number, dv: number, bt: number): Config {
  const dc = dk <= 16 ? 16 : 32;
  const dkmax = Math.max(dc, 2 ** Math.ceil(Math.log2(dk)));
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  let w = dv <= 16 ? 16 : 32;
  const build = (w: number): Config => {
    const tiles = (bt / 4) * (bt / 8) + (bt / 4) * (w / 8); // 4×8 tiles of S and of O
    const nt = Math.ceil(tiles / 32) * 32;
    // KV-update tiles of kr rows: fewest rounds × rows per thread, ties to the larger tile.
    let kr = 4, best = Infinity;
    for (const r of [4, 2, 1]) {
      const cost = Math.ceil(((dc / r) * (w / 4)) / nt) * r;
      if (cost < best) [best, kr] = [cost, r];
    }
    return { bt, w, dc, dkmax, nt, kr };
  };
  let cfg = build(w);
  if (workgroupBytes(cfg, true) > limit && w > 16) cfg = build(w = 16);
  if (workgroupBytes(cfg, true) > limit) {
    throw new TnlError(
      "gpu",
      `lightning attention with d = ${dk} and block rows ${bt} needs ${workgroupBytes(cfg, true)} bytes of ` +
        `workgroup memory; this device allows ${limit} (maxComputeWorkgroupStorageSize)`,
    );
  }
  if (cfg.nt > gpu.limits.maxComputeInvocationsPerWorkgroup) {
    throw new TnlError(
      "gpu",
      `lightning attention with block rows ${bt} needs ${cfg.nt} invocations per workgroup; this device ` +
        `allows ${gpu.limits.maxComputeInvocationsPerWorkgroup}`,
    );
  }
  return cfg;
}

const defs = new Map<string, KernelDef>();
function coreDef(c: Config, out: boolean, vecK: boolean, vecV: boolean): KernelDef {
  const key = `lightning_${out ? "out" : "kv"}_bt${c.bt}_w${c.w}_dc${c.dc}_dk${c.dkmax}_kr${c.kr}${
    vecK ? "_vk" : ""
  }${vecV ? "_vv" : ""}`;
  let def = defs.get(key);
  if (!def) {
    const code = expm1Lib + "\n" + preprocess("lightning", source, {
      OUT: out,
      VEC_K: vecK,
      VEC_V: vecV,
      KR1: c.kr === 1,
      KR2: c.kr === 2,
      KR4: c.kr === 4,
      BT: c.bt,
      BT4: c.bt / 4,
      BT8: c.bt / 8,
      BT1: c.bt + 1,
      W: c.w,
      W4: c.w / 4,
      W8: c.w / 8,
      DC: c.dc,
      DC4: c.dc / 4,
      DKMAX: c.dkmax,
      NT: c.nt,
      ST: (c.bt / 4) * (c.bt / 8),
      OT: (c.bt / 4) * (c.w / 8),
      KR: c.kr,
      KVT: (c.dc / c.kr) * (c.w / 4),
      BS: out ? (c.bt * c.dc) / 4 : 0,
      AB_LEN: (out ? Math.max(2 * c.bt * c.dc, c.bt * c.bt) : c.bt * c.dc) / 4,
      CS_LEN: (c.bt * c.w) / 4,
      KV_LEN: (c.dkmax * c.w) / 4,
    });
    const bindings = out
      ? ["read", "read", "read", "read", "rw", "read", "rw"] as const
      : ["read", "read", "read", "read", "rw"] as const;
    def = { name: key, code, bindings, paramBytes: 17 * 4 };
    defs.set(key, def);
  }
  return def;
}

const scanDefs = new Map<string, KernelDef>();
/** The scan kernel; `vec`: 4 elements per invocation (the state's size and offset multiples of 4, no INIT). */
function scanDef(init: boolean, vec = false): KernelDef {
  if (init && vec) throw new TnlError("internal", "lightning scan: the vec4 form has no initial state");
  const name = `lightning_scan${init ? "_init" : ""}${vec ? "_vec" : ""}`;
  let def = scanDefs.get(name);
  if (!def) {
    def = {
      name,
      code: expm1Lib + "\n" + preprocess("lightning_scan", scanSource, { INIT: init, VEC: vec }),
      bindings: init ? ["read", "rw", "read"] : ["read", "rw"],
      paramBytes: 9 * 4,
    };
    scanDefs.set(name, def);
  }
  return def;
}

// ---------------------------------------------------------------- per-device scratch and placeholders

interface DeviceCache {
  scratch: Tensor[];
  read: Tensor;
  write: Tensor;
}
const caches = new WeakMap<Gpu, DeviceCache>();

function deviceCache(gpu: Gpu): DeviceCache {
  let c = caches.get(gpu);
  if (!c) {
    c = {
      scratch: [],
      read: Tensor.empty(gpu, [4], "f32", "lightning unused input"),
      write: Tensor.empty(gpu, [4], "f32", "lightning unused output"),
    };
    caches.set(gpu, c);
  }
  return c;
}

/**
 * Scratch of at least `elements` f32, cached per device. A larger request adds a buffer and keeps the old
 * ones (a step being encoded may still bind them); lightningReleaseScratch frees them all.
 */
function cachedScratch(gpu: Gpu, elements: number): Tensor {
  const c = deviceCache(gpu);
  const fit = c.scratch.find((t) => t.size >= elements);
  if (fit) return fit;
  const t = Tensor.empty(gpu, [elements], "f32", "lightning scratch");
  c.scratch.push(t);
  return t;
}

/** The caller's scratch (checked to hold `elements` f32), or the cached one. */
function scratchFor(gpu: Gpu, given: Tensor | undefined, elements: number): Tensor {
  if (!given) return cachedScratch(gpu, elements);
  if (given.dtype !== "f32" || given.size < elements) {
    throw new TnlError(
      "internal",
      `lightning: scratch '${given.label}' holds ${given.size} elements, needs ${elements} f32`,
    );
  }
  return given;
}

/** Frees the cached scratch of `gpu` (after the steps that used it were submitted). */
export function lightningReleaseScratch(gpu: Gpu): void {
  const c = caches.get(gpu);
  if (!c) return;
  for (const t of c.scratch) t.destroy();
  c.scratch = [];
}

// ---------------------------------------------------------------- planning

/** One product O_t = Σ_{u≤t} λ^(t−u) (A_t·B_u) C_u over all heads. */
interface Product {
  a: Tensor | null; // [heads, T, dk]; null: state only
  b: Tensor; // [heads, T, dk]
  c: Tensor; // [heads, T, dv]
  o: Tensor | null; // [heads, T, dv]
  state: Tensor | null; // [heads, dk, dv]
  init: Tensor | null; // [heads, dk, dv]: kv_{t0−1}, or null for zero
  dk: number;
  dv: number;
  reverse: boolean;
}

interface Plan {
  cfg: Config;
  slices: number;
  parallel: boolean;
  chunkRows: number;
  nchunks: number;
}

/**
 * Why the chunked variant cannot run on this device at this T (null: it can): its state kernel needs
 * LIGHTNING_CHUNKED_WORKGROUP_BYTES of workgroup memory and 256 invocations, and the chunks of a head go
 * along one dimension of the dispatch grid.
 */
export function chunkedUnsupported(gpu: Gpu, T: number): string | null {
  const l = gpu.limits;
  if (l.maxComputeWorkgroupStorageSize < LIGHTNING_CHUNKED_WORKGROUP_BYTES) {
    return `it needs ${LIGHTNING_CHUNKED_WORKGROUP_BYTES} bytes of workgroup memory; this device allows ` +
      `${l.maxComputeWorkgroupStorageSize} (maxComputeWorkgroupStorageSize)`;
  }
  if (l.maxComputeInvocationsPerWorkgroup < 256) {
    return `it needs 256 invocations per workgroup; this device allows ` +
      `${l.maxComputeInvocationsPerWorkgroup} (maxComputeInvocationsPerWorkgroup)`;
  }
  const chunks = Math.ceil(T / LIGHTNING_CHUNK_ROWS);
  if (chunks > l.maxComputeWorkgroupsPerDimension) {
    return `T = ${T} makes ${chunks} chunks of ${LIGHTNING_CHUNK_ROWS} rows; the dispatch grid allows ` +
      `${l.maxComputeWorkgroupsPerDimension} (maxComputeWorkgroupsPerDimension)`;
  }
  return null;
}

/** Whether a call takes the chunked variant (forced, or auto on a device that can run it). */
function useChunked(
  gpu: Gpu,
  shape: LightningShape,
  opts: LightningOptions,
  hasInitialState: boolean,
): boolean {
  const variant = opts.variant ?? "auto";
  if (variant !== "chunked" && variant !== "auto") return false;
  // The chunked variant starts every sequence from the zero state; a given state takes the block sweep.
  if (hasInitialState) {
    if (variant === "chunked") {
      throw new TnlError(
        "internal",
        "lightning attention, chunked variant: an initial state is not supported",
      );
    }
    return false;
  }
  const why = chunkedUnsupported(gpu, shape.T);
  if (why && variant === "chunked") throw new TnlError("gpu", `lightning attention, chunked variant: ${why}`);
  return !why;
}

function plan(gpu: Gpu, shape: LightningShape, dk: number, dv: number, opts: LightningOptions): Plan {
  const bt = opts.blockRows ?? LIGHTNING_BLOCK_ROWS;
  if (![16, 32, 64].includes(bt)) {
    throw new TnlError("internal", `lightning: block rows ${bt}, expected 16, 32 or 64`);
  }
  const cfg = makeConfig(gpu, dk, dv, bt);
  const heads = shape.B * shape.H, T = shape.T;
  const slices = Math.ceil(dv / cfg.w);
  const variant = opts.variant ?? "auto";
  let parallel = variant === "parallel" ||
    (variant === "auto" && slices * heads < LIGHTNING_SEQUENTIAL_MIN_WORKGROUPS &&
      T > LIGHTNING_MIN_CHUNK_BLOCKS * bt);
  let chunkRows = Math.ceil(T / bt) * bt;
  if (parallel) {
    if (opts.chunkRows !== undefined) {
      if (!Number.isInteger(opts.chunkRows) || opts.chunkRows < bt || opts.chunkRows % bt !== 0) {
        throw new TnlError("internal", `lightning: chunk rows ${opts.chunkRows} is not a multiple of ${bt}`);
      }
      chunkRows = opts.chunkRows;
    } else {
      const target = Math.ceil(LIGHTNING_PARALLEL_TARGET_WORKGROUPS / (slices * heads));
      chunkRows = Math.max(LIGHTNING_MIN_CHUNK_BLOCKS * bt, Math.ceil(Math.ceil(T / target) / bt) * bt);
    }
    const maxChunks = gpu.limits.maxComputeWorkgroupsPerDimension;
    if (Math.ceil(T / chunkRows) > maxChunks) chunkRows = Math.ceil(Math.ceil(T / maxChunks) / bt) * bt;
    if (Math.ceil(T / chunkRows) <= 1) {
      parallel = false;
      chunkRows = Math.ceil(T / bt) * bt;
    }
  }
  return { cfg, slices, parallel, chunkRows, nchunks: parallel ? Math.ceil(T / chunkRows) : 1 };
}

/** f32 elements of scratch this shape needs (0 when its variant needs none). */
export function lightningScratchElements(
  gpu: Gpu,
  shape: LightningShape,
  opts: LightningOptions = {},
): number {
  if (useChunked(gpu, shape, opts, false)) {
    // The forward keeps one state set per head of a group, the backward two (in groups of fewer heads).
    const most = Math.max(...[1, 2].map((sets) => sets * chunkedPlan(gpu, shape, opts, sets).group));
    const nchunks = Math.ceil(shape.T / LIGHTNING_CHUNK_ROWS);
    return nchunks > 1 ? most * nchunks * shape.d * shape.e : 0;
  }
  let most = 0;
  for (const [dk, dv] of [[shape.d, shape.e], [shape.e, shape.d]]) {
    const p = plan(gpu, shape, dk, dv, opts);
    if (p.parallel) most = Math.max(most, headsPerDispatch(gpu, shape, dk, dv, p) * p.nchunks * dk * dv);
  }
  return most;
}

/** Most f32 elements one binding takes (its offset rounds down to the storage alignment). */
function bindingElements(gpu: Gpu): number {
  return Math.floor((gpu.maxBindingBytes - gpu.limits.minStorageBufferOffsetAlignment) / 4);
}

/** Fewest of `n` and the heads whose `perHead` ranges each fit a binding; throws when one head does not. */
function headsFitting(gpu: Gpu, shape: LightningShape, n: number, perHead: [string, number][]): number {
  const fit = bindingElements(gpu);
  for (const [what, elems] of perHead) {
    if (elems > fit) {
      throw new TnlError(
        "gpu",
        `lightning attention: the ${what} of one head (${elems} f32, T = ${shape.T}) exceed one storage ` +
          `binding of ${gpu.maxBindingBytes} bytes`,
      );
    }
    n = Math.min(n, Math.floor(fit / elems));
  }
  return n;
}

function headsPerDispatch(gpu: Gpu, shape: LightningShape, dk: number, dv: number, p: Plan): number {
  const perHead: [string, number][] = [
    ["rows of q/k", shape.T * dk],
    ["rows of v/o", shape.T * dv],
    ["state", dk * dv],
  ];
  if (p.parallel) perHead.push(["chunk states", p.nchunks * dk * dv]);
  return headsFitting(
    gpu,
    shape,
    Math.min(shape.B * shape.H, gpu.limits.maxComputeWorkgroupsPerDimension),
    perHead,
  );
}

function checkTensor(t: Tensor, what: string, elems: number): void {
  if (t.dtype !== "f32") {
    throw new TnlError("internal", `lightning: ${what} '${t.label}' is ${t.dtype}, not f32`);
  }
  if (t.size !== elems) {
    throw new TnlError(
      "internal",
      `lightning: ${what} '${t.label}' [${t.shape}] holds ${t.size} elements, expected ${elems}`,
    );
  }
}

function checkShape(shape: LightningShape, slopes: Tensor): void {
  const { B, H, T, d, e } = shape;
  for (const [n, v] of [["B", B], ["H", H], ["T", T], ["d", d], ["e", e]] as const) {
    if (!Number.isSafeInteger(v) || v < (n === "T" ? 0 : 1)) {
      throw new TnlError("internal", `lightning: ${n} = ${v}`);
    }
  }
  for (const [n, v] of [["d", d], ["e", e]] as const) {
    if (v > LIGHTNING_MAX_HEAD_DIM) {
      throw new TnlError(
        "input",
        `lightning attention: head dim ${n} = ${v} exceeds ${LIGHTNING_MAX_HEAD_DIM}`,
      );
    }
  }
  checkTensor(slopes, "slopes", H);
}

// ---------------------------------------------------------------- encoding

function encodeProduct(
  step: Step,
  shape: LightningShape,
  slopes: Tensor,
  prod: Product,
  opts: LightningOptions,
) {
  const gpu = step.gpu;
  const { T, H } = shape;
  const heads = shape.B * shape.H;
  if (T === 0) return;
  const { dk, dv } = prod;
  const p = plan(gpu, shape, dk, dv, opts);
  const group = headsPerDispatch(gpu, shape, dk, dv, p);
  const cache = deviceCache(gpu);
  let scratch: Tensor | null = null;
  if (p.parallel) {
    scratch = scratchFor(gpu, opts.scratch, group * p.nchunks * dk * dv);
  }
  const scan = gpu.kernel(scanDef(prod.init !== null));
  const unusedRead = cache.read.view(), unusedWrite = cache.write.view();

  for (let h0 = 0; h0 < heads; h0 += group) {
    const nh = Math.min(group, heads - h0);
    const rowsK = T * dk, rowsV = T * dv;
    const vb = prod.b.view(h0 * rowsK, nh * rowsK);
    const vc = prod.c.view(h0 * rowsV, nh * rowsV);
    const va = prod.a ? prod.a.view(h0 * rowsK, nh * rowsK) : null;
    const vo = prod.o ? prod.o.view(h0 * rowsV, nh * rowsV) : null;
    const vs = prod.state ? prod.state.view(h0 * dk * dv, nh * dk * dv) : null;
    const vi = prod.init ? prod.init.view(h0 * dk * dv, nh * dk * dv) : null;
    const vk = scratch ? scratch.view(0, nh * p.nchunks * dk * dv) : null;
    const params = (
      o: { a?: TensorView | null; o?: TensorView | null; kvIn?: TensorView | null; out?: TensorView | null },
      z0: number,
      init: 0 | 1 | 2,
      store: number,
    ) =>
      packParams([
        [T, "u32"],
        [dk, "u32"],
        [dv, "u32"],
        [H, "u32"],
        [h0, "u32"],
        [o.a?.base ?? 0, "u32"],
        [vb.base, "u32"],
        [vc.base, "u32"],
        [o.o?.base ?? 0, "u32"],
        [o.kvIn?.base ?? 0, "u32"],
        [o.out?.base ?? 0, "u32"],
        [p.chunkRows, "u32"],
        [p.nchunks, "u32"],
        [z0, "u32"],
        [prod.reverse ? 1 : 0, "u32"],
        [init, "u32"],
        [store, "u32"],
      ]);
    const slopeView = slopes.view();
    // vec4 bindings where rows are multiples of 4 floats and the views start on a vec4.
    const vecK = dk % 4 === 0 && vb.base % 4 === 0 && (!va || va.base % 4 === 0);
    const vecV = dv % 4 === 0 && vc.base % 4 === 0 && (!vo || vo.base % 4 === 0);
    const outKernel = gpu.kernel(coreDef(p.cfg, true, vecK, vecV));
    const kvKernel = gpu.kernel(coreDef(p.cfg, false, vecK, vecV));
    if (p.parallel) {
      // Pass 1: each chunk's own contribution (the last chunk's is never needed).
      step.dispatch(
        kvKernel,
        [slopeView, vb, vc, unusedRead, vk!],
        params({ out: vk }, 0, 0, 1),
        [p.slices, nh, p.nchunks - 1],
      );
      // Pass 2: the state at each chunk's first row (from the initial state, when given).
      step.dispatch(
        scan,
        vi ? [slopeView, vk!, vi] : [slopeView, vk!],
        packParams([
          [dk * dv, "u32"],
          [p.nchunks, "u32"],
          [p.chunkRows, "u32"],
          [H, "u32"],
          [h0, "u32"],
          [vk!.base, "u32"],
          [1, "u32"],
          [p.nchunks, "u32"],
          [vi?.base ?? 0, "u32"],
        ]),
        [Math.ceil((dk * dv) / 64), nh],
      );
    }
    // Where the sweep starts: the scanned chunk states, the caller's state (decayed to row 0), or zero.
    const kvIn = p.parallel ? vk : vi;
    const init = p.parallel ? 1 : vi ? 2 : 0;
    if (va && vo) {
      // Pass 3 (or the whole sequential sweep): outputs, and the final state when asked for.
      step.dispatch(
        outKernel,
        [slopeView, va, vb, vc, vo, kvIn ?? unusedRead, vs ?? unusedWrite],
        params({ a: va, o: vo, kvIn, out: vs }, 0, init, vs ? 2 : 0),
        [p.slices, nh, p.nchunks],
      );
    } else if (vs) {
      // State only: the last chunk, from the state at its first row.
      step.dispatch(
        kvKernel,
        [slopeView, vb, vc, kvIn ?? unusedRead, vs],
        params({ kvIn, out: vs }, p.nchunks - 1, init, 2),
        [p.slices, nh, 1],
      );
    }
  }
}

// ---------------------------------------------------------------- chunked variant

interface ChunkedPlan {
  nchunks: number;
  /** Heads per group of dispatches (bindings and LIGHTNING_CHUNKED_SCRATCH_BYTES). */
  group: number;
  /** Chunks per state workgroup, whose totals alone are scanned (G). */
  chunkGroup: number;
}

/** The plan of a chunked call that keeps `sets` state sets (1 in the forward and prefill, 2 in the backward). */
function chunkedPlan(gpu: Gpu, shape: LightningShape, opts: LightningOptions, sets: number): ChunkedPlan {
  const { T, d, e } = shape;
  const nchunks = Math.ceil(T / LIGHTNING_CHUNK_ROWS);
  const perHead: [string, number][] = [
    ["rows of q/k", T * d],
    ["rows of v/o", T * e],
    ["state", d * e],
  ];
  let n = Math.min(shape.B * shape.H, gpu.limits.maxComputeWorkgroupsPerDimension);
  if (nchunks > 1) {
    perHead.push(["chunk states", nchunks * d * e]);
    n = Math.min(n, Math.max(1, Math.floor(LIGHTNING_CHUNKED_SCRATCH_BYTES / (sets * 4 * nchunks * d * e))));
  }
  const group = headsFitting(gpu, shape, n, perHead);
  let chunkGroup = 1;
  if (opts.chunkGroup !== undefined) {
    // ≤ 64: a state workgroup's loops then stay far below llvmpipe's 65 535 iterations (~140 per chunk).
    if (!Number.isInteger(opts.chunkGroup) || opts.chunkGroup < 1 || opts.chunkGroup > 64) {
      throw new TnlError(
        "internal",
        `lightning: chunk group ${opts.chunkGroup}, expected an integer in [1, 64]`,
      );
    }
    chunkGroup = opts.chunkGroup;
  } else {
    // The largest G ≤ LIGHTNING_MAX_CHUNK_GROUP that leaves each dispatch of state products enough
    // workgroups (tiles × heads of the dispatch × groups of chunks).
    const perChunks = group * Math.ceil(d / 128) * Math.ceil(e / 128);
    while (
      2 * chunkGroup <= LIGHTNING_MAX_CHUNK_GROUP &&
      perChunks * Math.ceil((nchunks - 1) / (2 * chunkGroup)) >= LIGHTNING_CHUNKED_STATE_MIN_WORKGROUPS
    ) chunkGroup *= 2;
  }
  return { nchunks, group, chunkGroup };
}

const chunkDefs = new Map<string, KernelDef>();
function chunkDef(
  out: boolean,
  vecK: boolean,
  vecV: boolean,
  vecS: boolean,
  transKv: boolean,
  full: boolean,
): KernelDef {
  const key = `lightning_chunk_${out ? "out" : "state"}${vecK ? "_vk" : ""}${vecV ? "_vv" : ""}${
    vecS ? "_vs" : ""
  }${transKv ? "_tkv" : ""}${full ? "_full" : ""}`;
  let def = chunkDefs.get(key);
  if (!def) {
    const code = expm1Lib + "\n" + preprocess("lightning_chunk", chunkSource, {
      OUT: out,
      VEC_K: vecK,
      VEC_V: vecV,
      VEC_S: vecS,
      TRANS_KV: transKv,
      FULL: full,
    });
    const bindings = out
      ? ["read", "read", "read", "read", "rw", "read"] as const
      : ["read", "read", "read", "read", "rw"] as const;
    def = { name: key, code, bindings, paramBytes: 16 * 4 };
    chunkDefs.set(key, def);
  }
  return def;
}

/** One group of heads of a chunked call: what every dispatch of the group shares. */
interface ChunkGroup {
  step: Step;
  shape: LightningShape;
  slopes: TensorView;
  h0: number;
  nh: number;
  nchunks: number;
  chunkGroup: number;
}

const v4 = (...xs: number[]) => xs.every((x) => x % 4 === 0);
/** Whether every column check of lightning_chunk.wgsl passes (its FULL variant): whole 128-wide tiles, vec4. */
const fullTiles = (dk: number, dv: number, ...vec: boolean[]) =>
  dk % 128 === 0 && dv % 128 === 0 && vec.every(Boolean);

function chunkParams(
  g: ChunkGroup,
  dk: number,
  dv: number,
  f: {
    a?: TensorView;
    b: TensorView;
    c: TensorView;
    out: TensorView;
    kv?: TensorView | null;
    z0?: number;
    reverse?: boolean;
    finalState?: boolean;
  },
) {
  return packParams([
    [g.shape.T, "u32"],
    [dk, "u32"],
    [dv, "u32"],
    [g.shape.H, "u32"],
    [g.h0, "u32"],
    [f.a?.base ?? 0, "u32"],
    [f.b.base, "u32"],
    [f.c.base, "u32"],
    [f.out.base, "u32"],
    [f.kv?.base ?? 0, "u32"],
    [g.nchunks, "u32"],
    [f.z0 ?? 0, "u32"],
    [f.reverse ? 1 : 0, "u32"],
    [f.kv ? 1 : 0, "u32"],
    [f.finalState ? 1 : 0, "u32"],
    [g.chunkGroup, "u32"],
  ]);
}

/**
 * Chunk states of the product with writer rows `b` [nh, T, dk] and values `c` [nh, T, dv] into `kv`
 * [nh, nchunks, dk, dv]: per group of G chunks, the sums L_z of the group's chunks up to z; then the scan
 * of the groups' totals, which leaves the state at group Z's first row in the group's last slot.
 */
function chunkStates(
  g: ChunkGroup,
  dk: number,
  dv: number,
  b: TensorView,
  c: TensorView,
  kv: TensorView,
  reverse: boolean,
) {
  const gpu = g.step.gpu;
  const unused = deviceCache(gpu).read.view();
  const vecK = v4(dk, b.base), vecV = v4(dv, c.base), vecS = v4(dk, dv, kv.base);
  const tiles = Math.ceil(dk / 128) * Math.ceil(dv / 128);
  const G = g.chunkGroup;
  g.step.dispatch(
    gpu.kernel(chunkDef(false, vecK, vecV, vecS, false, fullTiles(dk, dv, vecK, vecV, vecS))),
    [g.slopes, b, c, unused, kv],
    chunkParams(g, dk, dv, { b, c, out: kv, reverse }),
    [tiles, Math.ceil((g.nchunks - 1) / G), g.nh],
  );
  // Four elements per scan invocation where they are whole vec4: ~4× fewer invocations, each with 4 loads in
  // flight per span.
  const vec = v4(dk * dv, kv.base);
  g.step.dispatch(
    gpu.kernel(scanDef(false, vec)),
    [g.slopes, kv],
    packParams([
      [dk * dv, "u32"],
      [Math.ceil(g.nchunks / G), "u32"],
      [G * LIGHTNING_CHUNK_ROWS, "u32"],
      [g.shape.H, "u32"],
      [g.h0, "u32"],
      [kv.base, "u32"],
      [G, "u32"],
      [g.nchunks, "u32"],
      [0, "u32"],
    ]),
    [Math.ceil((dk * dv) / (vec ? 256 : 64)), g.nh],
  );
}

/**
 * Outputs o [nh, T, dv] of the product (A, B, C) from the chunk states `kv` (null: one chunk, no state),
 * stored [dk, dv] per chunk, or [dv, dk] with `transKv`.
 */
function chunkOutputs(
  g: ChunkGroup,
  dk: number,
  dv: number,
  x: { a: TensorView; b: TensorView; c: TensorView; o: TensorView; kv: TensorView | null },
  reverse: boolean,
  transKv: boolean,
) {
  const gpu = g.step.gpu;
  const kv = x.kv ?? deviceCache(gpu).read.view();
  const vecK = v4(dk, x.a.base, x.b.base), vecV = v4(dv, x.c.base, x.o.base);
  const vecS = v4(dk, dv, kv.base);
  g.step.dispatch(
    gpu.kernel(chunkDef(true, vecK, vecV, vecS, transKv, fullTiles(dk, dv, vecK, vecV, vecS))),
    [g.slopes, x.a, x.b, x.c, x.o, kv],
    chunkParams(g, dk, dv, { a: x.a, b: x.b, c: x.c, out: x.o, kv: x.kv, reverse }),
    [Math.ceil(dv / 128), g.nchunks, g.nh],
  );
}

/** The prefill state kv_{T−1} [nh, dk, dv] from the last chunk and the state at its first row. */
function chunkFinalState(
  g: ChunkGroup,
  dk: number,
  dv: number,
  b: TensorView,
  c: TensorView,
  kv: TensorView | null,
  state: TensorView,
) {
  const gpu = g.step.gpu;
  const kvIn = kv ?? deviceCache(gpu).read.view();
  const vecK = v4(dk, b.base), vecV = v4(dv, c.base), vecS = v4(dk, dv, kvIn.base, state.base);
  const tiles = Math.ceil(dk / 128) * Math.ceil(dv / 128);
  g.step.dispatch(
    gpu.kernel(chunkDef(false, vecK, vecV, vecS, false, fullTiles(dk, dv, vecK, vecV, vecS))),
    [g.slopes, b, c, kvIn, state],
    chunkParams(g, dk, dv, { b, c, out: state, kv, z0: g.nchunks - 1, finalState: true }),
    [tiles, 1, g.nh],
  );
}

/**
 * Runs `each` per group of heads with the group's views; `sets` state sets of [nh, nchunks, d, e] come from
 * the caller's scratch or the cached one (none for a single chunk).
 */
function chunkedGroups(
  step: Step,
  shape: LightningShape,
  slopes: Tensor,
  opts: LightningOptions,
  sets: number,
  each: (
    g: ChunkGroup,
    view: (t: Tensor, perHead: number) => TensorView,
    kv: (set: number) => TensorView | null,
  ) => void,
) {
  const gpu = step.gpu;
  const { nchunks, group, chunkGroup } = chunkedPlan(gpu, shape, opts, sets);
  const heads = shape.B * shape.H;
  const setSize = group * nchunks * shape.d * shape.e;
  let scratch: Tensor | null = null;
  if (nchunks > 1) {
    scratch = scratchFor(gpu, opts.scratch, sets * setSize);
  }
  const slopeView = slopes.view();
  for (let h0 = 0; h0 < heads; h0 += group) {
    const nh = Math.min(group, heads - h0);
    const g: ChunkGroup = {
      step,
      shape,
      slopes: slopeView,
      h0,
      nh,
      nchunks,
      chunkGroup,
    };
    const setElems = nh * nchunks * shape.d * shape.e;
    each(
      g,
      (t, perHead) => t.view(h0 * perHead, nh * perHead),
      (set) => (scratch ? scratch.view(set * setSize, setElems) : null),
    );
  }
}

function chunkedForward(step: Step, args: LightningForwardArgs) {
  const { T, d, e } = args;
  chunkedGroups(step, args, args.slopes, args, 1, (g, view, kv) => {
    const q = view(args.q, T * d), k = view(args.k, T * d), v = view(args.v, T * e);
    const states = kv(0);
    if (states) chunkStates(g, d, e, k, v, states, false);
    chunkOutputs(g, d, e, { a: q, b: k, c: v, o: view(args.o, T * e), kv: states }, false, false);
  });
}

function chunkedBackward(step: Step, args: LightningBackwardArgs) {
  const { T, d, e } = args;
  chunkedGroups(step, args, args.slopes, args, 2, (g, view, kv) => {
    const q = view(args.q, T * d), k = view(args.k, T * d), v = view(args.v, T * e);
    const dO = view(args.do, T * e);
    // Forward-time states Σ λ^· v_uᵀ k_u [e, d] (the forward's, transposed: built that way, dq reads them
    // untransposed, ~8% faster than through TRANS_KV on the H200), and reverse-time states Σ λ^· q_tᵀ do_t [d, e].
    const fwd = kv(0), rev = kv(1);
    if (fwd && rev) {
      chunkStates(g, e, d, v, k, fwd, false);
      chunkStates(g, d, e, q, dO, rev, true);
    }
    // dq_t = Σ_{u≤t} λ^(t−u) (do_t·v_u) k_u: state Σ v_uᵀ k_u.
    chunkOutputs(g, e, d, { a: dO, b: v, c: k, o: view(args.dq, T * d), kv: fwd }, false, false);
    // dk_u = Σ_{t≥u} λ^(t−u) (v_u·do_t) q_t: reversed, state Σ do_tᵀ q_t (the reverse one transposed).
    chunkOutputs(g, e, d, { a: v, b: dO, c: q, o: view(args.dk, T * d), kv: rev }, true, true);
    // dv_u = Σ_{t≥u} λ^(t−u) (k_u·q_t) do_t: reversed, state Σ q_tᵀ do_t.
    chunkOutputs(g, d, e, { a: k, b: q, c: dO, o: view(args.dv, T * e), kv: rev }, true, false);
  });
}

function chunkedPrefill(step: Step, args: LightningPrefillArgs) {
  const { T, d, e } = args;
  chunkedGroups(step, args, args.slopes, args, 1, (g, view, kv) => {
    const k = view(args.k, T * d), v = view(args.v, T * e);
    const states = kv(0);
    if (states) chunkStates(g, d, e, k, v, states, false);
    if (args.o) {
      const q = view(args.q!, T * d);
      chunkOutputs(g, d, e, { a: q, b: k, c: v, o: view(args.o, T * e), kv: states }, false, false);
    }
    chunkFinalState(g, d, e, k, v, states, view(args.state, d * e));
  });
}

// ---------------------------------------------------------------- entry points

/** Encodes O = [(Q Kᵀ) ⊙ M] V for all (batch, head) into `step`. */
export function lightningForward(step: Step, args: LightningForwardArgs): void {
  const { B, H, T, d, e } = args;
  checkShape(args, args.slopes);
  checkTensor(args.q, "q", B * H * T * d);
  checkTensor(args.k, "k", B * H * T * d);
  checkTensor(args.v, "v", B * H * T * e);
  checkTensor(args.o, "o", B * H * T * e);
  if (args.initialState) checkTensor(args.initialState, "initial state", B * H * d * e);
  if (T === 0) return;
  if (useChunked(step.gpu, args, args, args.initialState !== undefined)) return chunkedForward(step, args);
  encodeProduct(step, args, args.slopes, {
    a: args.q,
    b: args.k,
    c: args.v,
    o: args.o,
    state: null,
    init: args.initialState ?? null,
    dk: d,
    dv: e,
    reverse: false,
  }, args);
}

/** Encodes dQ, dK, dV of lightningForward for the output gradient dO, recomputing from Q, K, V. */
export function lightningBackward(step: Step, args: LightningBackwardArgs): void {
  const { B, H, T, d, e } = args;
  checkShape(args, args.slopes);
  checkTensor(args.q, "q", B * H * T * d);
  checkTensor(args.k, "k", B * H * T * d);
  checkTensor(args.v, "v", B * H * T * e);
  checkTensor(args.do, "do", B * H * T * e);
  checkTensor(args.dq, "dq", B * H * T * d);
  checkTensor(args.dk, "dk", B * H * T * d);
  checkTensor(args.dv, "dv", B * H * T * e);
  if (T === 0) return;
  if (useChunked(step.gpu, args, args, false)) return chunkedBackward(step, args);
  const base = { state: null, init: null };
  // dq_t = Σ_{s≤t} λ^(t−s) (do_t·v_s) k_s
  encodeProduct(step, args, args.slopes, {
    ...base,
    a: args.do,
    b: args.v,
    c: args.k,
    o: args.dq,
    dk: e,
    dv: d,
    reverse: false,
  }, args);
  // dk_s = Σ_{t≥s} λ^(t−s) (v_s·do_t) q_t
  encodeProduct(step, args, args.slopes, {
    ...base,
    a: args.v,
    b: args.do,
    c: args.q,
    o: args.dk,
    dk: e,
    dv: d,
    reverse: true,
  }, args);
  // dv_s = Σ_{t≥s} λ^(t−s) (k_s·q_t) do_t
  encodeProduct(step, args, args.slopes, {
    ...base,
    a: args.k,
    b: args.q,
    c: args.do,
    o: args.dv,
    dk: d,
    dv: e,
    reverse: true,
  }, args);
}

/**
 * Encodes the prefill state kv_{T−1} = Σ_s λ^(T−1−s) k_sᵀ v_s [B, H, d, e] (decayed to the last token, with
 * the true length of a partial last block), and the outputs too when `o` (and `q`) are given.
 */
export function lightningPrefillState(step: Step, args: LightningPrefillArgs): void {
  const { B, H, T, d, e } = args;
  checkShape(args, args.slopes);
  checkTensor(args.k, "k", B * H * T * d);
  checkTensor(args.v, "v", B * H * T * e);
  checkTensor(args.state, "state", B * H * d * e);
  if (args.o) {
    if (!args.q) throw new TnlError("internal", "lightning prefill: outputs need q");
    checkTensor(args.q, "q", B * H * T * d);
    checkTensor(args.o, "o", B * H * T * e);
  }
  if (T === 0) {
    throw new TnlError("internal", "lightning prefill: T = 0 (an empty prompt has the zero state)");
  }
  if (args.initialState) {
    checkTensor(args.initialState, "initial state", B * H * d * e);
    const a = args.initialState, s = args.state;
    if (a.buffer === s.buffer && a.offset < s.offset + s.size && s.offset < a.offset + a.size) {
      throw new TnlError(
        "internal",
        `lightning prefill: the initial state '${a.label}' and the state '${s.label}' share memory`,
      );
    }
  }
  if (useChunked(step.gpu, args, args, args.initialState !== undefined)) return chunkedPrefill(step, args);
  encodeProduct(step, args, args.slopes, {
    a: args.o ? args.q! : null,
    b: args.k,
    c: args.v,
    o: args.o ?? null,
    state: args.state,
    init: args.initialState ?? null,
    dk: d,
    dv: e,
    reverse: false,
  }, args);
}

/** The variant and chunking the dispatcher picks for a product with these head dims (for tests, docs). */
export function lightningPlan(gpu: Gpu, shape: LightningShape, opts: LightningOptions = {}) {
  if (useChunked(gpu, shape, opts, false)) {
    const c = chunkedPlan(gpu, shape, opts, 1);
    return {
      variant: "chunked" as const,
      blockRows: LIGHTNING_CHUNK_ROWS,
      sliceWidth: 128,
      chunkRows: LIGHTNING_CHUNK_ROWS,
      chunks: c.nchunks,
      chunkGroup: c.chunkGroup,
      headsPerGroup: c.group,
      headsPerGroupBackward: chunkedPlan(gpu, shape, opts, 2).group,
      workgroupBytes: LIGHTNING_CHUNKED_WORKGROUP_BYTES,
      invocations: 128,
    };
  }
  const p = plan(gpu, shape, shape.d, shape.e, opts);
  return {
    variant: p.parallel ? "parallel" as const : "sequential" as const,
    blockRows: p.cfg.bt,
    sliceWidth: p.cfg.w,
    chunkRows: p.chunkRows,
    chunks: p.nchunks,
    chunkGroup: 1,
    headsPerGroup: headsPerDispatch(gpu, shape, shape.d, shape.e, p),
    headsPerGroupBackward: headsPerDispatch(gpu, shape, shape.d, shape.e, p),
    workgroupBytes: workgroupBytes(p.cfg, true),
    invocations: p.cfg.nt,
  };
}

// ---------------------------------------------------------------- cost and benchmarks

/** MACs per (batch, head) of spec §4.6 with block rows `bt`: forward n·B(d+e) + 2nde, backward n·B(3d+2e) + 5nde. */
export function lightningMacs(T: number, d: number, e: number, bt = LIGHTNING_BLOCK_ROWS) {
  return { forward: T * bt * (d + e) + 2 * T * d * e, backward: T * bt * (3 * d + 2 * e) + 5 * T * d * e };
}

const VARIANTS: readonly LightningVariant[] = ["auto", "chunked", "sequential", "parallel"];

/** A shape's optional `variant` key (default: the case's variant, else auto). */
function benchVariant(shape: Record<string, number | string>, fixed?: LightningVariant): LightningVariant {
  const v = shape.variant ?? fixed ?? "auto";
  if (!VARIANTS.includes(v as LightningVariant)) {
    throw new TnlError("usage", `lightning bench shape: variant '${v}', expected ${VARIANTS.join(", ")}`);
  }
  return v as LightningVariant;
}

function attentionInputs(
  gpu: Gpu,
  shape: Record<string, number | string>,
  seed: number,
  fixed?: LightningVariant,
) {
  const B = Number(shape.b),
    H = Number(shape.h),
    T = Number(shape.T),
    d = Number(shape.d),
    e = Number(shape.e);
  // Inputs of the size the model feeds (silu outputs of unit-scale activations), never zeros, made on the GPU.
  const q = randomTensor(gpu, [B, H, T, d], "bench q", seed, -0.5, 0.5);
  const k = randomTensor(gpu, [B, H, T, d], "bench k", seed + 1, -0.5, 0.5);
  const v = randomTensor(gpu, [B, H, T, e], "bench v", seed + 2, -0.5, 0.5);
  const slopes = Tensor.from(gpu, tnlDecayRates(H, 0, 2), [H], "f32", "bench slopes");
  return { B, H, T, d, e, q, k, v, slopes, variant: benchVariant(shape, fixed) };
}

/** Full shapes of the attention benchmarks: b=4, h=16, d=e=128 as in ../anchors (T = 1K … 64K). */
export const ATTENTION_BENCH_T = [1024, 4096, 16384, 65536];
/**
 * --quick shapes (CI on a software adapter): a short sweep of T, odd T and d ≠ e included, so that the
 * time-vs-T chart has a line per kernel.
 */
export const ATTENTION_QUICK_T = [128, 300, 768];
export const ATTENTION_QUICK_SHAPES = ATTENTION_QUICK_T.map((T) => ({ b: 1, h: 2, T, d: 64, e: 32 }));

function lightningShapes(quick: boolean) {
  return quick ? ATTENTION_QUICK_SHAPES : ATTENTION_BENCH_T.map((T) => ({ b: 4, h: 16, T, d: 128, e: 128 }));
}

/** A forced variant of the per-variant bench cases. */
interface BenchForm {
  label: string;
  variant: Exclude<LightningVariant, "auto">;
}

/**
 * Forward and forward + backward cases: `lightning-fwd` / `lightning-fwdbwd` take the variant auto picks (or
 * the shape's `variant` key); `lightning-<form>-fwd` / `-fwdbwd` force one, so that one run compares them
 * (with --quick they run at one shape only).
 */
function lightningCases(form?: BenchForm): BenchCase[] {
  const name = (what: string) => (form ? `lightning-${form.label}-${what}` : `lightning-${what}`);
  const shapes = (quick: boolean) => (form && quick ? [ATTENTION_QUICK_SHAPES[1]] : lightningShapes(quick));
  const inputs = (gpu: Gpu, shape: Record<string, number | string>, seed: number) => ({
    ...attentionInputs(gpu, shape, seed, form?.variant),
  });
  return [{
    name: name("fwd"),
    group: "kernels",
    shapes,
    setup(gpu, shape) {
      const x = inputs(gpu, shape, 11);
      const o = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench o");
      return {
        encode: (step) => lightningForward(step, { ...x, o }),
        flops: 2 * x.B * x.H * lightningMacs(x.T, x.d, x.e).forward,
        tokens: x.B * x.T,
        dispose: () => {
          [x.q, x.k, x.v, x.slopes, o].forEach((t) => t.destroy());
          lightningReleaseScratch(gpu);
        },
      };
    },
  }, {
    name: name("fwdbwd"),
    group: "kernels",
    shapes,
    setup(gpu, shape) {
      const x = inputs(gpu, shape, 12);
      const o = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench o");
      const dO = randomTensor(gpu, [x.B, x.H, x.T, x.e], "bench do", 13);
      const dq = Tensor.empty(gpu, [x.B, x.H, x.T, x.d], "f32", "bench dq");
      const dk = Tensor.empty(gpu, [x.B, x.H, x.T, x.d], "f32", "bench dk");
      const dv = Tensor.empty(gpu, [x.B, x.H, x.T, x.e], "f32", "bench dv");
      const macs = lightningMacs(x.T, x.d, x.e);
      return {
        encode: (step) => {
          lightningForward(step, { ...x, o });
          lightningBackward(step, { ...x, do: dO, dq, dk, dv });
        },
        flops: 2 * x.B * x.H * (macs.forward + macs.backward),
        tokens: x.B * x.T,
        dispose: () => {
          [x.q, x.k, x.v, x.slopes, o, dO, dq, dk, dv].forEach((t) => t.destroy());
          lightningReleaseScratch(gpu);
        },
      };
    },
  }];
}

/** Benchmark cases: forward and forward + backward, as auto picks and per variant. */
export const lightningBenchCases: BenchCase[] = [
  ...lightningCases(),
  ...lightningCases({ label: "chunked", variant: "chunked" }),
  ...lightningCases({ label: "sequential", variant: "sequential" }),
  ...lightningCases({ label: "parallel", variant: "parallel" }),
];
