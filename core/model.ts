// TransNormerLLM on the GPU (spec §2), forward and backward, layer by layer like llm.c: every parameter
// lives in one flat f32 buffer under its HF name (so the optimizer and the gradient norm see one vector),
// every activation the backward needs is an explicit buffer sized once per (B, T), and a whole training
// step encodes into one compute pass.

import type { ModelDims } from "./config.ts";
import { TnlError } from "./errors.ts";
import type { Gpu, Step } from "./gpu.ts";
import { Rng } from "./random.ts";
import { Tensor } from "./tensor.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";
import { fill, fillRandom } from "../kernels/elementwise.ts";
import {
  embeddingBackward,
  embeddingBuckets,
  embeddingForward,
  type GpuBuckets,
  uploadBuckets,
} from "../kernels/embedding.ts";
import { linearBackward, linearForward, lmHeadLoss, sgluBackward, sgluForward } from "../kernels/layers.ts";
import {
  lightningBackward,
  lightningForward,
  lightningPrefillState,
  tnlDecayRates,
} from "../kernels/lightning.ts";
import { matmul } from "../kernels/matmul.ts";
import { colsum, colsumPartialRows, partialsFor, sum } from "../kernels/reduce.ts";
import { srmsnormBackward, srmsnormForward } from "../kernels/srmsnorm.ts";
import {
  normGateBackward,
  normGateForward,
  qkvPrepBackward,
  qkvPrepForward,
} from "../kernels/token_mixer.ts";

// ---------------------------------------------------------------- parameters

export interface ParamSpec {
  /** HF state-dict name */
  name: string;
  shape: number[];
  /** element offset in the flat buffer */
  offset: number;
  size: number;
}

export interface ParamLayout {
  specs: ParamSpec[];
  byName: Map<string, ParamSpec>;
  total: number;
  /** parameters [0, decayEnd) get weight decay (every tensor with ≥ 2 dimensions: all of TNL's) */
  decayEnd: number;
}

/**
 * The flat layout, in HF order; l1 and l2 of a layer are adjacent so that [W1; W2] is one [2F, D] matrix and
 * SGLU's two projections are one matmul.
 */
export function paramLayout(m: ModelDims): ParamLayout {
  const specs: ParamSpec[] = [];
  let offset = 0;
  const add = (name: string, shape: number[]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    specs.push({ name, shape, offset, size });
    offset += size;
  };
  add("model.embed_tokens.weight", [m.vocab, m.d]);
  for (let l = 0; l < m.layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.token_mixer.qkvu_proj.weight`, [4 * m.e, m.d]);
    add(`${p}.token_mixer.out_proj.weight`, [m.d, m.e]);
    if (m.lrpe[l]) add(`${p}.token_mixer.lrpe.theta`, [m.heads, 1, m.headDim]);
    add(`${p}.channel_mixer.l1.weight`, [m.glu, m.d]);
    add(`${p}.channel_mixer.l2.weight`, [m.glu, m.d]);
    add(`${p}.channel_mixer.l3.weight`, [m.d, m.glu]);
  }
  if (!m.tied) add("lm_head.weight", [m.vocab, m.d]);
  const decayEnd = specs.filter((s) => s.shape.length >= 2).reduce(
    (end, s) => Math.max(end, s.offset + s.size),
    0,
  );
  if (specs.some((s) => s.shape.length < 2 && s.offset < decayEnd)) {
    throw new TnlError("internal", "parameter layout: tensors without weight decay must come last");
  }
  return { specs, byName: new Map(specs.map((s) => [s.name, s])), total: offset, decayEnd };
}

/** θ in closed form: θ_{h,j} = 10000^(−2(h·d + j)/E) (spec §2.4), as fp32. */
export function lrpeThetaInit(m: ModelDims): Float32Array {
  return Float32Array.from({ length: m.e }, (_, i) => 10000 ** ((-2 / m.e) * i));
}

/** The model's weights on the GPU. */
export class TnlModel {
  readonly layout: ParamLayout;
  /** decay rates s per layer, [H] f32 each */
  readonly rates: Tensor[];

  private constructor(
    readonly gpu: Gpu,
    readonly dims: ModelDims,
    /** all parameters, flat */
    readonly params: Tensor,
  ) {
    this.layout = paramLayout(dims);
    this.rates = Array.from(
      { length: dims.layers },
      (_, l) =>
        Tensor.from(gpu, tnlDecayRates(dims.heads, l, dims.layers), [dims.heads], "f32", `decay rates ${l}`),
    );
  }

  /** A model with zeroed weights (to be loaded or initialised). */
  static empty(gpu: Gpu, dims: ModelDims): TnlModel {
    const layout = paramLayout(dims);
    const bytes = layout.total * 4;
    if (bytes > gpu.limits.maxBufferSize) {
      throw new TnlError(
        "gpu",
        `the model's ${layout.total} parameters need a ${bytes}-byte buffer; this device allows ${gpu.limits.maxBufferSize} bytes per buffer (maxBufferSize)`,
      );
    }
    return new TnlModel(gpu, dims, Tensor.empty(gpu, [layout.total], "f32", "parameters"));
  }

  /**
   * Seeded random initialisation as HF `_init_weights`: Linear and Embedding ~ N(0, init_std), the pad row of
   * the embedding zero, LRPE θ in closed form.
   */
  static init(gpu: Gpu, dims: ModelDims, seed: number): TnlModel {
    const model = TnlModel.empty(gpu, dims);
    const rng = new Rng(seed);
    for (const s of model.layout.specs) {
      let data: Float32Array;
      if (s.name.endsWith("lrpe.theta")) data = lrpeThetaInit(dims);
      else {
        data = rng.normalArray(s.size, dims.initStd);
        if (s.name === "model.embed_tokens.weight") {
          data.fill(0, dims.padId * dims.d, (dims.padId + 1) * dims.d);
        }
      }
      model.param(s.name).write(data);
    }
    return model;
  }

  /**
   * Random weights made on the GPU (uniform with the init_std's variance; θ in closed form): for benchmarks
   * of large models, where the seeded host-side initialisation would take longer than the benchmark.
   */
  static randomOnGpu(gpu: Gpu, dims: ModelDims, seed: number): TnlModel {
    const model = TnlModel.empty(gpu, dims);
    const a = dims.initStd * Math.sqrt(3);
    gpu.run("random weights", (step) => fillRandom(step, model.params, seed, -a, a));
    for (const s of model.layout.specs) {
      if (s.name.endsWith("lrpe.theta")) model.param(s.name).write(lrpeThetaInit(dims));
    }
    return model;
  }

  spec(name: string): ParamSpec {
    const s = this.layout.byName.get(name);
    if (!s) throw new TnlError("internal", `no parameter '${name}'`);
    return s;
  }

  /** The parameter `name` as a part of the flat buffer. */
  param(name: string): Tensor {
    const s = this.spec(name);
    return Tensor.part(this.params, s.offset, s.shape, name);
  }

  /** [W1; W2] of a layer: [2F, D]. */
  w12(l: number): Tensor {
    const s = this.spec(`model.layers.${l}.channel_mixer.l1.weight`);
    return Tensor.part(this.params, s.offset, [2 * this.dims.glu, this.dims.d], `layer ${l} l1+l2`);
  }

  /** The LM head: lm_head.weight, or the embedding when tied. */
  head(): Tensor {
    return this.param(this.dims.tied ? "model.embed_tokens.weight" : "lm_head.weight");
  }

  /** All parameters back on the host by name (a readback: not for hot loops). */
  async readParams(): Promise<Map<string, Float32Array>> {
    const flat = await this.params.readF32();
    return new Map(this.layout.specs.map((s) => [s.name, flat.slice(s.offset, s.offset + s.size)]));
  }

  destroy(): void {
    this.params.destroy();
    for (const r of this.rates) r.destroy();
  }
}

// ---------------------------------------------------------------- activations

interface LayerActs {
  xn1: Tensor; // [N, D] SRMSNorm(x) before the token mixer
  r1: Tensor; // [N]
  qkvu: Tensor; // [N, 4E]
  q: Tensor; // [B, H, T, dq]
  k: Tensor; // [B, H, T, dq]
  v: Tensor; // [B, H, T, d]
  on: Tensor; // [N, E] normalized attention output
  ro: Tensor; // [N]
  og: Tensor; // [N, E] gated
  xn2: Tensor; // [N, D] SRMSNorm(x) before the channel mixer
  r2: Tensor; // [N]
  h: Tensor; // [N, 2F] = [x·W1ᵀ | x·W2ᵀ]
  g: Tensor; // [N, F] = h1 ⊙ h2
}

/**
 * One micro-batch's inputs on the GPU. Inputs are written with queue.writeBuffer, which lands before the
 * whole next submit: every micro-batch of one step needs its own.
 */
export class BatchInputs {
  readonly ids: Tensor; // [N] u32
  readonly targets: Tensor; // [N] i32 (IGNORE_INDEX where nothing is predicted)
  buckets: GpuBuckets | null = null;
  /** predicted positions of the last batch set */
  predicted = 0;

  constructor(
    readonly gpu: Gpu,
    readonly dims: ModelDims,
    readonly B: number,
    readonly T: number,
    label = "batch",
  ) {
    this.ids = Tensor.empty(gpu, [B * T], "u32", `${label} ids`);
    this.targets = Tensor.empty(gpu, [B * T], "i32", `${label} targets`);
  }

  /**
   * Uploads ids [B, T]; targets are the next ids within each sequence (the last position of a sequence
   * predicts nothing), or `targets` when given (IGNORE_INDEX = none). Returns the number of predicted
   * positions. Ids and targets are checked against the vocabulary, naming the first that is outside.
   */
  set(
    ids: ArrayLike<number>,
    opts: { targets?: ArrayLike<number>; what?: string; train?: boolean } = {},
  ): number {
    const { B, T } = this, n = B * T;
    const what = opts.what ?? "input";
    if (ids.length !== n) throw new TnlError("internal", `batch of ${ids.length} ids for B·T = ${n}`);
    const buckets = embeddingBuckets(ids, this.dims.vocab, this.dims.padId, what);
    const targets = new Int32Array(n);
    let predicted = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        const next = opts.targets ? opts.targets[i] : t + 1 < T ? ids[i + 1] : IGNORE_INDEX;
        if (next !== IGNORE_INDEX && (next < 0 || next >= this.dims.vocab)) {
          throw new TnlError(
            "input",
            `${what}: target ${next} at position ${i} is outside the vocabulary of ${this.dims.vocab}`,
          );
        }
        targets[i] = next;
        if (next !== IGNORE_INDEX) predicted++;
      }
    }
    this.ids.write(Uint32Array.from(ids));
    this.targets.write(targets);
    if (opts.train !== false) {
      this.#dropBuckets();
      this.buckets = uploadBuckets(this.gpu, buckets, "embedding");
    }
    this.predicted = predicted;
    return predicted;
  }

  #dropBuckets(): void {
    if (this.buckets) {
      for (const x of [this.buckets.order, this.buckets.tokens, this.buckets.starts]) x.destroy();
    }
    this.buckets = null;
  }

  destroy(): void {
    this.ids.destroy();
    this.targets.destroy();
    this.#dropBuckets();
  }
}

/** Every buffer of a forward + backward at one (B, T), allocated once and reused by every step. */
export class Activations {
  readonly n: number;
  /** the default inputs (callers with several micro-batches per step bring their own BatchInputs) */
  readonly input: BatchInputs;
  readonly x: Tensor; // [N, D] residual stream
  readonly layers: LayerActs[];
  readonly o: Tensor; // [B, H, T, d] attention output (scratch)
  readonly xf: Tensor; // [N, D] final SRMSNorm
  readonly rf: Tensor; // [N]
  readonly lossRows: Tensor; // [N] NLL per position
  readonly logits: Tensor; // [chunk, V] scratch
  readonly loss: Tensor; // [2]: [0] mean loss of the last forward, [1] free for callers
  readonly partials: Tensor;
  // backward scratch, shared by the layers
  readonly dx: Tensor; // [N, D] gradient of the residual stream
  readonly dxn: Tensor; // [N, D]
  readonly dqkvu: Tensor; // [N, 4E]
  readonly dq: Tensor;
  readonly dk: Tensor;
  readonly dv: Tensor;
  readonly dO: Tensor;
  readonly dog: Tensor; // [N, E]
  readonly dg: Tensor; // [N, F]
  readonly dh: Tensor; // [N, 2F]
  readonly thetaTerms: Tensor | null; // [N, E]
  readonly colsumPartials: Tensor;
  #tensors: Tensor[] = [];

  /**
   * `opts.shareLayers` (inference only, no backward): all layers use one set of buffers, since nothing is
   * kept for a backward; the logits scratch is one row (a prefill needs the last position's logits only).
   */
  constructor(
    readonly gpu: Gpu,
    readonly dims: ModelDims,
    readonly B: number,
    readonly T: number,
    train: boolean,
    opts: { shareLayers?: boolean } = {},
  ) {
    const m = dims, N = B * T;
    this.n = N;
    const t = (shape: number[], label: string, dtype: "f32" | "u32" | "i32" = "f32") => {
      const x = Tensor.empty(gpu, shape, dtype, label);
      this.#tensors.push(x);
      return x;
    };
    const share = opts.shareLayers === true;
    if (share && train) throw new TnlError("internal", "activations: shared layer buffers cannot train");
    const anyLrpe = m.lrpe.some((x) => x);
    this.input = new BatchInputs(gpu, dims, B, T);
    this.x = t([N, m.d], "x");
    const layerActs = (l: number | "shared", dq: number): LayerActs => ({
      xn1: t([N, m.d], `L${l} xn1`),
      r1: t([N], `L${l} rstd1`),
      qkvu: t([N, 4 * m.e], `L${l} qkvu`),
      q: t([B, m.heads, T, dq], `L${l} q`),
      k: t([B, m.heads, T, dq], `L${l} k`),
      v: t([B, m.heads, T, m.headDim], `L${l} v`),
      on: t([N, m.e], `L${l} on`),
      ro: t([N], `L${l} rstd o`),
      og: t([N, m.e], `L${l} og`),
      xn2: t([N, m.d], `L${l} xn2`),
      r2: t([N], `L${l} rstd2`),
      h: t([N, 2 * m.glu], `L${l} h`),
      g: t([N, m.glu], `L${l} g`),
    });
    if (share) {
      // q and k sized for the widest layer (LRPE doubles d); each layer takes the part it needs.
      const one = layerActs("shared", anyLrpe ? 2 * m.headDim : m.headDim);
      this.layers = m.lrpe.map((lrpe) => {
        const dq = lrpe ? 2 * m.headDim : m.headDim;
        return {
          ...one,
          q: Tensor.part(one.q, 0, [B, m.heads, T, dq], one.q.label),
          k: Tensor.part(one.k, 0, [B, m.heads, T, dq], one.k.label),
        };
      });
    } else {
      this.layers = m.lrpe.map((lrpe, l) => layerActs(l, lrpe ? 2 * m.headDim : m.headDim));
    }
    this.o = t([B, m.heads, T, m.headDim], "o");
    this.xf = t([N, m.d], "xf");
    this.rf = t([N], "rstd final");
    this.lossRows = t([N], "loss rows");
    // Logits for at most 2^15 rows or 256 MiB at a time, within one binding.
    const rows = share ? 1 : Math.max(
      1,
      Math.min(N, 32768, Math.floor(Math.min(256 * 2 ** 20, gpu.maxBindingBytes) / (4 * m.vocab))),
    );
    this.logits = t([rows, m.vocab], "logits chunk");
    this.loss = t([2], "loss");
    this.partials = t([partialsFor(N)], "loss partials");
    const dqMax = anyLrpe ? 2 * m.headDim : m.headDim;
    const none = () => t([1], "unused");
    this.dx = train ? t([N, m.d], "dx") : none();
    this.dxn = train ? t([N, m.d], "dxn") : none();
    this.dqkvu = train ? t([N, 4 * m.e], "dqkvu") : none();
    this.dq = train ? t([B, m.heads, T, dqMax], "dq") : none();
    this.dk = train ? t([B, m.heads, T, dqMax], "dk") : none();
    this.dv = train ? t([B, m.heads, T, m.headDim], "dv") : none();
    this.dO = train ? t([B, m.heads, T, m.headDim], "do") : none();
    this.dog = train ? t([N, m.e], "dog") : none();
    this.dg = train ? t([N, m.glu], "dg") : none();
    this.dh = train ? t([N, 2 * m.glu], "dh") : none();
    this.thetaTerms = train && anyLrpe ? t([N, m.e], "dθ terms") : null;
    this.colsumPartials = t([Math.max(1, colsumPartialRows(N) * m.e)], "colsum partials");
  }

  /** Uploads a batch into the default inputs (see BatchInputs.set). */
  setBatch(
    ids: ArrayLike<number>,
    opts: { targets?: ArrayLike<number>; what?: string; train?: boolean } = {},
  ): number {
    return this.input.set(ids, opts);
  }

  destroy(): void {
    for (const t of this.#tensors) t.destroy();
    this.input.destroy();
  }
}

// ---------------------------------------------------------------- forward and backward

export interface PassOptions {
  /** the micro-batch to run (default: acts.input) */
  input?: BatchInputs;
  /** 1 / predicted positions of the whole (accumulated) batch: the mean loss's scale */
  lossScale: number;
  /** add this pass's loss to acts.loss[0] (gradient accumulation) instead of overwriting it */
  accumulateLoss?: boolean;
}

/** Forward to the mean next-token loss (acts.loss[0]); every activation the backward needs is kept. */
export function forward(step: Step, model: TnlModel, acts: Activations, opts: PassOptions): void {
  const input = opts.input ?? acts.input;
  forwardHidden(step, model, acts, { input });
  const m = model.dims;
  lmHeadLoss(step, {
    x: acts.xf,
    w: model.head(),
    targets: input.targets,
    loss: acts.lossRows,
    logits: acts.logits,
    n: acts.n,
    d: m.d,
    vocab: m.vocab,
  });
  sum(step, acts.lossRows, acts.loss, acts.partials, {
    alpha: opts.lossScale,
    beta: opts.accumulateLoss ? 1 : 0,
  });
}

/** Where a forward of a chunk of longer sequences starts, and what it leaves for the next chunk. */
export interface ChunkOptions {
  /**
   * One [B, H, dk, dv] f32 tensor per layer: each layer writes its recurrent state decayed to the last token
   * (the prefill of generation, spec §5.2; the state the next chunk starts from).
   */
  states?: readonly Tensor[];
  /**
   * One [B, H, dk, dv] f32 tensor per layer: the state after the token before this chunk, kv_{t0−1}, as an
   * earlier forward wrote it into `states` (not the same tensors); absent = the sequences start here.
   */
  initialStates?: readonly Tensor[];
  /** position of the chunk's first token, t0 (LRPE positions continue from it); default 0 */
  offset?: number;
}

/**
 * Embedding, all layers and the final norm: acts.xf holds the last hidden states. The chunk options
 * continue sequences from given states and write the states at the end (chunked evaluation, prefill).
 */
export function forwardHidden(
  step: Step,
  model: TnlModel,
  acts: Activations,
  opts: ChunkOptions & { input?: BatchInputs } = {},
): void {
  const m = model.dims, N = acts.n;
  const input = opts.input ?? acts.input;
  for (const [what, list] of [["states", opts.states], ["initial states", opts.initialStates]] as const) {
    if (list && list.length !== m.layers) {
      throw new TnlError("internal", `forward: ${list.length} ${what} for ${m.layers} layers`);
    }
  }
  embeddingForward(
    step,
    input.ids,
    model.param("model.embed_tokens.weight"),
    acts.x,
    N,
    m.d,
    m.vocab,
    m.embedScale,
  );
  for (let l = 0; l < m.layers; l++) {
    layerForward(step, model, acts, l, opts.states?.[l] ?? null, {
      initialState: opts.initialStates?.[l] ?? null,
      offset: opts.offset ?? 0,
    });
  }
  srmsnormForward(step, acts.x, acts.xf, acts.rf, N, m.d);
}

/**
 * Block l on acts.x in place: the token mixer and the channel mixer, each behind SRMSNorm with a residual.
 * With `state` the attention also writes the layer's recurrent state [B, H, dk, dv] after the last token;
 * with `from.initialState` it continues from the state before the first token, at position `from.offset`.
 */
export function layerForward(
  step: Step,
  model: TnlModel,
  acts: Activations,
  l: number,
  state: Tensor | null = null,
  from: { initialState?: Tensor | null; offset?: number } = {},
): void {
  const m = model.dims, { B, T, n: N } = acts;
  const L = acts.layers[l], pre = `model.layers.${l}`;
  const shape = { b: B, t: T, h: m.heads, d: m.headDim };
  const theta = m.lrpe[l] ? model.param(`${pre}.token_mixer.lrpe.theta`) : null;
  const dq = m.lrpe[l] ? 2 * m.headDim : m.headDim;
  // token mixer: x += out_proj(u ⊙ SRMSNorm(attention(SiLU(q), SiLU(k), v)))
  srmsnormForward(step, acts.x, L.xn1, L.r1, N, m.d);
  linearForward(step, L.xn1, model.param(`${pre}.token_mixer.qkvu_proj.weight`), L.qkvu, N, m.d, 4 * m.e);
  qkvPrepForward(step, shape, L.qkvu, theta, L.q, L.k, L.v, from.offset ?? 0);
  const attention = {
    q: L.q,
    k: L.k,
    v: L.v,
    o: acts.o,
    slopes: model.rates[l],
    B,
    H: m.heads,
    T,
    d: dq,
    e: m.headDim,
    initialState: from.initialState ?? undefined,
  };
  if (state) lightningPrefillState(step, { ...attention, state });
  else lightningForward(step, attention);
  normGateForward(step, shape, acts.o, L.qkvu, L.on, L.ro, L.og);
  linearForward(step, L.og, model.param(`${pre}.token_mixer.out_proj.weight`), acts.x, N, m.e, m.d, 1);
  // channel mixer: x += SGLU(SRMSNorm(x))
  srmsnormForward(step, acts.x, L.xn2, L.r2, N, m.d);
  sgluForward(
    step,
    { n: N, d: m.d, f: m.glu },
    L.xn2,
    model.w12(l),
    model.param(`${pre}.channel_mixer.l3.weight`),
    L.h,
    L.g,
    acts.x,
    1,
  );
}

/** Logits [N, V] of the last forward (for reference comparisons; training never materialises them). */
export function writeLogits(step: Step, model: TnlModel, acts: Activations, out: Tensor): void {
  const m = model.dims;
  matmul(step, { a: acts.xf, b: model.head(), c: out, m: acts.n, n: m.vocab, k: m.d, transB: true });
}

/**
 * Forward and backward of the mean loss: grads (flat, like model.params) receive the gradient, added to what
 * they hold when `accumulate` (gradient accumulation), else overwritten.
 */
export function forwardBackward(
  step: Step,
  model: TnlModel,
  acts: Activations,
  grads: Tensor,
  opts: PassOptions & { accumulate?: boolean },
): void {
  const m = model.dims, { B, T, n: N } = acts;
  const input = opts.input ?? acts.input;
  if (!input.buckets) throw new TnlError("internal", "forwardBackward: set the batch (train) first");
  const beta = opts.accumulate ? 1 : 0;
  const grad = (name: string) => {
    const s = model.spec(name);
    return Tensor.part(grads, s.offset, s.shape, `grad ${name}`);
  };
  const dEmb = grad("model.embed_tokens.weight");
  forwardHidden(step, model, acts, { input });
  // An untied embedding gets gradient rows only for the batch's tokens: clear it first.
  if (!m.tied && !opts.accumulate) fill(step, dEmb, 0);
  lmHeadLoss(step, {
    x: acts.xf,
    w: model.head(),
    targets: input.targets,
    loss: acts.lossRows,
    logits: acts.logits,
    n: N,
    d: m.d,
    vocab: m.vocab,
    gradScale: opts.lossScale,
    dx: acts.dxn,
    dw: m.tied ? dEmb : grad("lm_head.weight"),
    betaW: beta,
  });
  sum(step, acts.lossRows, acts.loss, acts.partials, {
    alpha: opts.lossScale,
    beta: opts.accumulateLoss ? 1 : 0,
  });
  srmsnormBackward(step, acts.xf, acts.rf, acts.dxn, acts.dx, N, m.d);
  for (let l = m.layers - 1; l >= 0; l--) {
    const L = acts.layers[l], pre = `model.layers.${l}`;
    const shape = { b: B, t: T, h: m.heads, d: m.headDim };
    const lrpe = m.lrpe[l];
    const dqw = lrpe ? 2 * m.headDim : m.headDim;
    // channel mixer
    sgluBackward(
      step,
      { n: N, d: m.d, f: m.glu },
      L.xn2,
      model.w12(l),
      model.param(`${pre}.channel_mixer.l3.weight`),
      L.h,
      L.g,
      acts.dx,
      acts.dxn,
      Tensor.part(
        grads,
        model.spec(`${pre}.channel_mixer.l1.weight`).offset,
        [2 * m.glu, m.d],
        `grad ${pre} l1+l2`,
      ),
      grad(`${pre}.channel_mixer.l3.weight`),
      { dg: acts.dg, dh: acts.dh },
      { w: beta },
    );
    srmsnormBackward(step, L.xn2, L.r2, acts.dxn, acts.dx, N, m.d, 1);
    // token mixer
    linearBackward(
      step,
      L.og,
      model.param(`${pre}.token_mixer.out_proj.weight`),
      acts.dx,
      acts.dog,
      grad(`${pre}.token_mixer.out_proj.weight`),
      N,
      m.e,
      m.d,
      { w: beta },
    );
    normGateBackward(step, shape, acts.dog, L.on, L.ro, L.qkvu, acts.dqkvu, acts.dO);
    // The dq/dk scratch is sized for the widest layer (LRPE doubles d): take the part this layer needs.
    const dqL = Tensor.part(acts.dq, 0, [B, m.heads, T, dqw], "dq");
    const dkL = Tensor.part(acts.dk, 0, [B, m.heads, T, dqw], "dk");
    lightningBackward(step, {
      q: L.q,
      k: L.k,
      v: L.v,
      do: acts.dO,
      dq: dqL,
      dk: dkL,
      dv: acts.dv,
      slopes: model.rates[l],
      B,
      H: m.heads,
      T,
      d: dqw,
      e: m.headDim,
    });
    const theta = lrpe ? model.param(`${pre}.token_mixer.lrpe.theta`) : null;
    qkvPrepBackward(
      step,
      shape,
      L.qkvu,
      theta,
      acts.dq,
      acts.dk,
      acts.dv,
      acts.dqkvu,
      lrpe ? acts.thetaTerms : null,
    );
    if (lrpe && acts.thetaTerms) {
      colsum(step, acts.thetaTerms, grad(`${pre}.token_mixer.lrpe.theta`), N, m.e, {
        beta,
        partials: acts.colsumPartials,
      });
    }
    linearBackward(
      step,
      L.xn1,
      model.param(`${pre}.token_mixer.qkvu_proj.weight`),
      acts.dqkvu,
      acts.dxn,
      grad(`${pre}.token_mixer.qkvu_proj.weight`),
      N,
      m.d,
      4 * m.e,
      { w: beta },
    );
    srmsnormBackward(step, L.xn1, L.r1, acts.dxn, acts.dx, N, m.d, 1);
  }
  // The tied head already wrote the embedding's gradient: add the lookup's on top.
  embeddingBackward(
    step,
    input.buckets,
    acts.dx,
    dEmb,
    m.d,
    m.vocab,
    m.embedScale,
    m.tied || opts.accumulate ? 1 : 0,
  );
}
