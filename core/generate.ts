// Generation (spec §5): the prompt is prefilled in parallel with the lightning kernels (which also leave
// each layer's recurrent state decayed to the last prompt token), then tokens are decoded one at a time
// with the robust recurrence kv ← λ·kv + kᵀv, o = q·kv on fp32 states [b, H, dk, d], carrying each
// sequence's position for LRPE. A decode round is all layers of one token for every sequence — GEMVs that
// read each weight once with the norms, gate and SGLU product fused in, the fused recurrent step — then
// sampling on the GPU, whose token is the next round's input: the host only encodes rounds and reads the
// chosen tokens back, a chunk of rounds at a time (a readback costs ~11 ms).

import type { ModelDims } from "./config.ts";
import { TnlError } from "./errors.ts";
import {
  type BufferRange,
  type DispatchCall,
  DispatchPlan,
  type Gpu,
  type Kernel,
  type Step,
} from "./gpu.ts";
import { Activations, BatchInputs, forwardHidden, type TnlModel } from "./model.ts";
import { Tensor } from "./tensor.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { convertToF16 } from "../kernels/copy.ts";
import { gemv, GEMV_MAX_BATCH, recurrentStep } from "../kernels/decode.ts";
import { embeddingForward } from "../kernels/embedding.ts";
import { tnlDecayRates } from "../kernels/lightning.ts";
import { NO_TOKEN, type SamplerSettings, samplerStride, sampleTokens } from "../kernels/sample.ts";

/** λ = e^−s per layer and head, computed in float64 and rounded to fp32 (the official code's fp32 exp). */
export function decayFactors(dims: ModelDims): Float32Array {
  const out = new Float32Array(dims.layers * dims.heads);
  for (let l = 0; l < dims.layers; l++) {
    tnlDecayRates(dims.heads, l, dims.layers).forEach((s, h) => (out[l * dims.heads + h] = Math.exp(-s)));
  }
  return out;
}

export interface GeneratorOptions {
  /** sequences decoded together, 1..GEMV_MAX_BATCH */
  batch: number;
  sampling: SamplerSettings;
  /** most rounds one chunk holds (rows of the token buffer read back); default 256 */
  maxChunk?: number;
  /**
   * most rounds per submit (the host encodes the next while the GPU runs one; a chunk's submits grow 1, 2, 4,
   * … up to it, so an idle GPU starts at once); default 8
   */
  roundsPerSubmit?: number;
  /**
   * most prompt tokens per prefill forward (default PREFILL_CHUNK): a longer prompt is prefilled in chunks,
   * each starting from the states the previous one left, so its length is bounded by nothing but time
   */
  prefillChunk?: number;
  /**
   * the weights the decode GEMVs read (default f32): f16 keeps copies of the layer and head matrices rounded
   * to f16 (nearest even), half the bytes per token; the prefill's matmuls keep f32
   */
  weights?: DecodeWeights;
}

export type DecodeWeights = "f32" | "f16";

/** Prompt tokens per prefill forward unless GeneratorOptions.prefillChunk says otherwise. */
export const PREFILL_CHUNK = 4096;

export interface Prompt {
  ids: readonly number[];
  /** the sampler's stream id (with the seed and position it picks the random numbers); default: the slot */
  stream?: number;
}

type Grid = readonly [number, number?, number?];

/** What Generator.saveState copied. */
export interface SavedState {
  copies: Tensor[];
  lengths: number[];
  pendingSample: boolean;
}

/** A chunk of rounds submitted to the GPU (all, or its first `submitted`), to be read back with Generator.read. */
export interface Chunk {
  rounds: number;
  staging: GPUBuffer;
  /** rounds submitted so far */
  submitted: number;
  /** each sequence's length before the chunk's first round */
  start: number[];
}

export interface ChunkTokens {
  /** each sequence's length before the chunk's first round: round r drew the token at position start + r */
  start: number[];
  /** [rounds][batch] token ids */
  tokens: number[][];
  /** [rounds][batch] log-probabilities under the raw logits (0 unless sampling.logprobs) */
  logprobs: number[][];
}

/** Decode buffers and states of `batch` sequences for one model, reused by every round. */
export class Generator {
  readonly dims: ModelDims;
  readonly batch: number;
  readonly maxChunk: number;
  readonly prefillChunk: number;
  readonly histW: number;
  readonly sampling: SamplerSettings;
  /** per layer [batch, H, dk, d] f32 (dk = 2d on LRPE layers) */
  readonly states: Tensor[];
  /** tokens of each sequence so far (prompt + drawn), mirrored on the host */
  readonly lengths: number[];
  #roundsPerSubmit: number;
  #decay: Tensor;
  #x: Tensor;
  #qkvu: Tensor;
  #o: Tensor;
  #h: Tensor;
  #logits: Tensor;
  /** logits per row of #logits (samplerStride of the vocabulary) */
  #logitsStride: number;
  #cur: Tensor;
  #seq: Tensor;
  #hist: Tensor;
  #out: Tensor;
  #info: Tensor;
  #staging: GPUBuffer[] = [];
  #stagingBusy = new Set<GPUBuffer>();
  #prefillActs = new Map<number, Activations>();
  /** two sets of per-layer [1, H, dk, d] states for the chunks of a long prompt (made when first needed) */
  #chunkStates: [Tensor[], Tensor[]] | null = null;
  /** the ids of each chunk of a long prompt (one step reads them all, so each chunk has its own) */
  #chunkInputs: BatchInputs[] = [];
  #tensors: Tensor[] = [];
  /** the logits hold a prefill's last position, not yet sampled */
  #pendingSample = false;
  #forwardPlan: DispatchPlan | null = null;
  /** the sampler's dispatches per row of the chunk, made when first used */
  #samplePlans: DispatchPlan[] = [];
  /** f16 copies of the GEMV weights by their element offset in the model's parameters (weights: "f16") */
  #half = new Map<number, Tensor>();
  readonly weights: DecodeWeights;

  constructor(readonly model: TnlModel, opts: GeneratorOptions) {
    const m = model.dims, gpu = model.gpu;
    this.dims = m;
    if (!Number.isInteger(opts.batch) || opts.batch < 1 || opts.batch > GEMV_MAX_BATCH) {
      throw new TnlError("internal", `generator: batch ${opts.batch} (1..${GEMV_MAX_BATCH})`);
    }
    this.batch = opts.batch;
    this.maxChunk = opts.maxChunk ?? 256;
    this.prefillChunk = opts.prefillChunk ?? PREFILL_CHUNK;
    if (!Number.isSafeInteger(this.prefillChunk) || this.prefillChunk < 1) {
      throw new TnlError("internal", `generator: prefill chunk ${this.prefillChunk}`);
    }
    this.#roundsPerSubmit = opts.roundsPerSubmit ?? 8;
    this.weights = opts.weights ?? "f32";
    if (this.weights !== "f32" && this.weights !== "f16") {
      throw new TnlError("internal", `generator: weights '${this.weights}' (f32 or f16)`);
    }
    this.sampling = opts.sampling;
    this.histW = Math.max(1, opts.sampling.repeatLastN);
    this.lengths = new Array(this.batch).fill(0);
    const b = this.batch;
    const t = (shape: number[], label: string, dtype: "f32" | "u32" = "f32") => {
      const x = Tensor.empty(gpu, shape, dtype, label);
      this.#tensors.push(x);
      return x;
    };
    this.states = m.lrpe.map((lrpe, l) =>
      t([b, m.heads, lrpe ? 2 * m.headDim : m.headDim, m.headDim], `state ${l}`)
    );
    this.#decay = t([m.layers, m.heads], "decay λ");
    this.#decay.write(decayFactors(m));
    this.#x = t([b, m.d], "decode x");
    this.#qkvu = t([b, 4 * m.e], "decode qkvu");
    this.#o = t([b, m.e], "decode o");
    this.#h = t([b, 2 * m.glu], "decode h");
    // rows padded to a multiple of 4 logits: the sampler reads them as vec4
    this.#logitsStride = samplerStride(m.vocab);
    this.#logits = t([b, this.#logitsStride], "decode logits");
    this.#cur = t([b], "decode tokens", "u32");
    this.#seq = t([b, 4], "decode positions", "u32");
    this.#hist = t([b, this.histW], "token history", "u32");
    this.#out = t([this.maxChunk, b, 2], "drawn tokens", "u32");
    this.#info = t([b, 4], "sampler info");
    if (this.weights === "f16") this.#makeHalfWeights();
    for (let i = 0; i < 2; i++) {
      this.#staging.push(
        gpu.createBuffer(
          this.maxChunk * b * 8,
          `drawn tokens readback ${i}`,
          GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        ),
      );
    }
  }

  get gpu(): Gpu {
    return this.model.gpu;
  }

  /** f16 copies of the GEMV weights whose rows are whole vec4s (the f16 GEMV reads quads); others stay f32. */
  #makeHalfWeights(): void {
    const m = this.dims, model = this.model, gpu = this.gpu;
    const matrices = [model.head()];
    for (let l = 0; l < m.layers; l++) {
      const pre = `model.layers.${l}`;
      matrices.push(
        model.param(`${pre}.token_mixer.qkvu_proj.weight`),
        model.param(`${pre}.token_mixer.out_proj.weight`),
        model.w12(l),
        model.param(`${pre}.channel_mixer.l3.weight`),
      );
    }
    gpu.run("decode weights to f16", (step) => {
      for (const w of matrices) {
        if (w.shape[w.shape.length - 1] % 4 !== 0 || w.size % 4 !== 0) continue;
        const half = Tensor.empty(gpu, [...w.shape], "f16", `${w.label} (f16)`);
        this.#tensors.push(half);
        convertToF16(step, w, half);
        this.#half.set(w.offset, half);
      }
    });
  }

  /** The matrix a decode GEMV reads for the model's matrix `w`: its f16 copy, if any. */
  #w(w: Tensor): Tensor {
    return this.#half.get(w.offset) ?? w;
  }

  /** The last forward's logits, [batch, V] (for reference comparisons; the sampler penalizes them in place). */
  async readLogits(): Promise<Float32Array> {
    const all = await this.#logits.readF32();
    const V = this.dims.vocab, S = this.#logitsStride;
    if (S === V) return all;
    const out = new Float32Array(this.batch * V);
    for (let b = 0; b < this.batch; b++) out.set(all.subarray(b * S, b * S + V), b * V);
    return out;
  }

  /** Overrides the next round's input tokens (teacher forcing, for reference comparisons). */
  setTokens(tokens: readonly number[]): void {
    if (
      tokens.length !== this.batch ||
      tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= this.dims.vocab)
    ) {
      throw new TnlError("internal", `generator: tokens [${tokens}] for ${this.batch} sequences`);
    }
    this.#cur.write(Uint32Array.from(tokens));
    this.#pendingSample = false;
  }

  /**
   * Prefills prompt i into slot i (fewer prompts than slots leave the rest idle), one submit per prompt. The
   * next chunk's first round samples from the logits of each prompt's last position.
   */
  prefill(prompts: readonly Prompt[]): void {
    if (prompts.length < 1 || prompts.length > this.batch) {
      throw new TnlError("internal", `prefill: ${prompts.length} prompts for ${this.batch} slots`);
    }
    this.lengths.fill(0);
    prompts.forEach((p, slot) =>
      this.gpu.run(`prefill ${p.ids.length} tokens`, (step) => this.encodePrefill(step, slot, p))
    );
    this.#pendingSample = true;
  }

  /**
   * Encodes the prefill of one prompt into `slot`: the prompt alone (B = 1) through every layer, the
   * attention by the lightning kernels' prefill entry, which writes the layer's state into the slot; logits
   * for the last position only. A prompt longer than `prefillChunk` goes in chunks, each from the states
   * the previous one left (at its position). The slot's history ring and counters are written now (they
   * land before the step runs).
   */
  encodePrefill(step: Step, slot: number, p: Prompt): void {
    const m = this.dims;
    const T = p.ids.length;
    if (T < 1) throw new TnlError("input", `prompt ${slot + 1} is empty`);
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.batch) {
      throw new TnlError("internal", `prefill: slot ${slot} of ${this.batch}`);
    }
    const states = this.states.map((s, l) => {
      const per = s.size / this.batch;
      return Tensor.part(s, slot * per, [1, ...s.shape.slice(1)], `state ${l} slot ${slot}`);
    });
    const C = this.prefillChunk, chunks = Math.ceil(T / C);
    let acts: Activations;
    if (chunks === 1) {
      acts = this.#activations(T);
      acts.setBatch(p.ids, { train: false, what: `prompt ${slot + 1}` });
      forwardHidden(step, this.model, acts, { states });
    } else {
      // Each chunk reads its own ids (inputs land before the whole step runs), the states ping-pong.
      const sets = this.#chunkStates ??= [0, 1].map((i) =>
        this.states.map((s, l) =>
          Tensor.empty(this.gpu, [1, ...s.shape.slice(1)], "f32", `prefill state ${i} ${l}`)
        )
      ) as [Tensor[], Tensor[]];
      const lastLen = T - (chunks - 1) * C;
      for (let k = 0; k < chunks; k++) {
        const n = k < chunks - 1 ? C : lastLen;
        acts = this.#activations(n, lastLen === C ? [] : [C, lastLen]);
        if (this.#chunkInputs[k]?.T !== n) {
          // A step already submitted keeps the old buffers alive until it finishes.
          this.#chunkInputs[k]?.destroy();
          this.#chunkInputs[k] = new BatchInputs(this.gpu, m, 1, n, `prompt chunk ${k + 1}`);
        }
        const input = this.#chunkInputs[k];
        input.set(p.ids.slice(k * C, k * C + n), { train: false, what: `prompt ${slot + 1}` });
        forwardHidden(step, this.model, acts, {
          input,
          initialStates: k > 0 ? sets[(k - 1) % 2] : undefined,
          states: k < chunks - 1 ? sets[k % 2] : states,
          offset: k * C,
        });
      }
    }
    const ring = new Uint32Array(this.histW);
    for (let pos = Math.max(0, T - this.histW); pos < T; pos++) ring[pos % this.histW] = p.ids[pos];
    Tensor.part(this.#hist, slot * this.histW, [this.histW], "history slot").write(ring);
    Tensor.part(this.#seq, slot * 4, [4], "positions slot").write(
      Uint32Array.from([T, p.stream ?? slot, 0, 0]),
    );
    this.lengths[slot] = T;
    gemv(step, {
      a: acts!.xf,
      aOffset: (acts!.T - 1) * m.d,
      w: this.#w(this.model.head()),
      y: this.#logits,
      yOffset: slot * this.#logitsStride,
      nb: 1,
      out: m.vocab,
      in: m.d,
    });
  }

  /** A copy of everything a decode continues from (states, positions, history, logits), on the GPU. */
  saveState(): SavedState {
    const own = [...this.states, this.#seq, this.#hist, this.#cur, this.#logits];
    const copies = own.map((t) => Tensor.empty(this.gpu, [...t.shape], t.dtype, `saved ${t.label}`));
    this.#copy(own, copies);
    return { copies, lengths: [...this.lengths], pendingSample: this.#pendingSample };
  }

  /** Returns to a saved state (the copies land before the next submit's work). */
  restoreState(saved: SavedState): void {
    this.#copy(saved.copies, [...this.states, this.#seq, this.#hist, this.#cur, this.#logits]);
    saved.lengths.forEach((n, i) => (this.lengths[i] = n));
    this.#pendingSample = saved.pendingSample;
  }

  #copy(from: Tensor[], to: Tensor[]): void {
    const enc = this.gpu.device.createCommandEncoder({ label: "generator state copy" });
    from.forEach((t, i) =>
      enc.copyBufferToBuffer(t.buffer, t.offset * 4, to[i].buffer, to[i].offset * 4, t.bytes)
    );
    this.gpu.scoped("copying the generator's state", () => this.gpu.device.queue.submit([enc.finish()]));
  }

  /**
   * Inference activations for one prompt of T tokens (kept for the next prompt of that length); the lengths
   * in `keep` (those of a chunked prefill's other chunks, in the same step) are kept too.
   */
  #activations(T: number, keep: readonly number[] = []): Activations {
    let acts = this.#prefillActs.get(T);
    if (!acts) {
      // Buffers of other lengths are freed; steps already submitted keep them alive until they finish.
      for (const [len, a] of this.#prefillActs) {
        if (keep.includes(len)) continue;
        a.destroy();
        this.#prefillActs.delete(len);
      }
      acts = new Activations(this.gpu, this.dims, 1, T, false, { shareLayers: true });
      this.#prefillActs.set(T, acts);
    }
    return acts;
  }

  /**
   * One token of every sequence through all layers: logits from the tokens in `cur`. Every round is the
   * same dispatches with the same parameters (positions live on the GPU), so the first is recorded into a
   * DispatchPlan and every round replays it: four encoder calls per dispatch on the host (the checks and
   * bindings of Step.dispatch, with the submits, cost 7–11 µs per dispatch on the H200's host, more than the GPU's time for a round of tnl-385m).
   */
  encodeForward(step: Step): void {
    this.#forwardPlan ??= this.#record("decode forward", (s) => this.#encodeForward(s));
    step.replay(this.#forwardPlan);
  }

  /** The dispatches `encode` makes, checked and bound once into a plan. */
  #record(label: string, encode: (step: Step) => void): DispatchPlan {
    const calls: DispatchCall[] = [];
    const recorder = {
      gpu: this.gpu,
      dispatch: (
        kernel: Kernel,
        ranges: readonly BufferRange[],
        params: ArrayBufferView | null,
        grid: Grid,
      ) => calls.push({ kernel, ranges, params, grid }),
    };
    encode(recorder as unknown as Step);
    return new DispatchPlan(this.gpu, label, calls);
  }

  #encodeForward(step: Step): void {
    const m = this.dims, model = this.model, nb = this.batch;
    embeddingForward(
      step,
      this.#cur,
      model.param("model.embed_tokens.weight"),
      this.#x,
      nb,
      m.d,
      m.vocab,
      m.embedScale,
    );
    for (let l = 0; l < m.layers; l++) {
      const pre = `model.layers.${l}`;
      // token mixer: x += out_proj(u ⊙ SRMSNorm(o)), o from the recurrence on SRMSNorm(x)'s projection
      gemv(step, {
        a: this.#x,
        w: this.#w(model.param(`${pre}.token_mixer.qkvu_proj.weight`)),
        y: this.#qkvu,
        nb,
        out: 4 * m.e,
        in: m.d,
        norm: true,
      });
      recurrentStep(step, {
        qkvu: this.#qkvu,
        theta: m.lrpe[l] ? model.param(`${pre}.token_mixer.lrpe.theta`) : null,
        seq: this.#seq,
        decay: Tensor.part(this.#decay, l * m.heads, [m.heads], `decay λ ${l}`),
        kv: this.states[l],
        o: this.#o,
        B: nb,
        H: m.heads,
        d: m.headDim,
      });
      gemv(step, {
        a: this.#o,
        b: this.#qkvu,
        bOffset: 3 * m.e,
        bStride: 4 * m.e,
        w: this.#w(model.param(`${pre}.token_mixer.out_proj.weight`)),
        y: this.#x,
        nb,
        out: m.d,
        in: m.e,
        norm: true,
        beta: 1,
      });
      // channel mixer: x += l3((x·W1ᵀ) ⊙ (x·W2ᵀ)) on SRMSNorm(x)
      gemv(step, {
        a: this.#x,
        w: this.#w(model.w12(l)),
        y: this.#h,
        nb,
        out: 2 * m.glu,
        in: m.d,
        norm: true,
      });
      gemv(step, {
        a: this.#h,
        aStride: 2 * m.glu,
        b: this.#h,
        bOffset: m.glu,
        bStride: 2 * m.glu,
        w: this.#w(model.param(`${pre}.channel_mixer.l3.weight`)),
        y: this.#x,
        nb,
        out: m.d,
        in: m.glu,
        beta: 1,
      });
    }
    gemv(step, {
      a: this.#x,
      w: this.#w(model.head()),
      y: this.#logits,
      yStride: this.#logitsStride,
      nb,
      out: m.vocab,
      in: m.d,
      norm: true,
    });
  }

  /**
   * Draws every sequence's next token into row `row` of the chunk (and into `cur` for the next round), from
   * a plan per row (the settings are the generator's).
   */
  encodeSample(step: Step, row: number): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.maxChunk) {
      throw new TnlError("internal", `generator: sample row ${row} (0..${this.maxChunk - 1})`);
    }
    this.#samplePlans[row] ??= this.#record(`decode sample ${row}`, (s) => this.#encodeSample(s, row));
    step.replay(this.#samplePlans[row]);
  }

  #encodeSample(step: Step, row: number): void {
    sampleTokens(
      step,
      {
        logits: this.#logits,
        stride: this.#logitsStride,
        hist: this.#hist,
        seq: this.#seq,
        cur: this.#cur,
        out: this.#out,
        info: this.#info,
        nseq: this.batch,
        vocab: this.dims.vocab,
        histW: this.histW,
      },
      this.sampling,
      row,
    );
  }

  /**
   * Starts a chunk of `rounds` rounds (each: a forward of the last tokens, except right after a prefill, then
   * a draw) and submits its first `now` rounds (default all; `complete` submits the rest). Rounds go in
   * submits of 1, 2, 4, … up to roundsPerSubmit rounds, so an idle GPU starts at once and then runs one
   * submit while the host encodes the next; the last copies the drawn tokens to a readback buffer.
   */
  submit(rounds: number, now = rounds): Chunk {
    if (!Number.isInteger(rounds) || rounds < 1 || rounds > this.maxChunk) {
      throw new TnlError("internal", `generator: chunk of ${rounds} rounds (1..${this.maxChunk})`);
    }
    if (this.lengths.every((n) => n === 0)) throw new TnlError("internal", "generator: nothing prefilled");
    const staging = this.#staging.find((s) => !this.#stagingBusy.has(s));
    if (!staging) throw new TnlError("internal", "generator: read a chunk back before starting a third");
    this.#stagingBusy.add(staging);
    const chunk: Chunk = { rounds, staging, submitted: 0, start: [...this.lengths] };
    try {
      this.#submitRounds(chunk, Math.max(1, Math.min(now, rounds)));
    } catch (e) {
      this.#stagingBusy.delete(staging);
      throw e;
    }
    return chunk;
  }

  /** Submits the rounds of a chunk that `submit` left out. */
  complete(chunk: Chunk): void {
    this.#submitRounds(chunk, chunk.rounds);
  }

  /** Gives a chunk up unread (for a generation that stopped): the rounds already submitted still run. */
  drop(chunk: Chunk): void {
    this.#stagingBusy.delete(chunk.staging);
  }

  #submitRounds(chunk: Chunk, upTo: number): void {
    const bytes = chunk.rounds * this.batch * 8;
    while (chunk.submitted < upTo) {
      const r0 = chunk.submitted, r1 = Math.min(upTo, r0 + Math.min(this.#roundsPerSubmit, r0 + 1));
      const step = this.gpu.step(`decode rounds ${r0}..${r1 - 1}`);
      try {
        for (let r = r0; r < r1; r++) {
          if (!this.#pendingSample) this.encodeForward(step);
          this.#pendingSample = false;
          this.encodeSample(step, r);
        }
      } catch (e) {
        step.abandon();
        throw e;
      }
      step.submit(
        r1 === chunk.rounds
          ? (enc) => enc.copyBufferToBuffer(this.#out.buffer, 0, chunk.staging, 0, bytes)
          : undefined,
      );
      for (let s = 0; s < this.batch; s++) if (this.lengths[s] > 0) this.lengths[s] += r1 - r0;
      chunk.submitted = r1;
    }
  }

  /**
   * Waits for a chunk (submitting what it left out) and returns its tokens. A readback (mapAsync) blocks
   * until the GPU has run everything submitted, then sleeps ~10 ms before it resolves: work submitted right
   * after this call returns its promise runs during that sleep (runChunks does).
   */
  async read(chunk: Chunk): Promise<ChunkTokens> {
    if (chunk.submitted < chunk.rounds) this.complete(chunk);
    const bytes = chunk.rounds * this.batch * 8;
    try {
      await chunk.staging.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch (e) {
      await this.gpu.sync();
      throw new TnlError(
        "gpu",
        `reading the drawn tokens back failed: ${e instanceof Error ? e.message : e}`,
      );
    } finally {
      this.#stagingBusy.delete(chunk.staging);
    }
    const raw = chunk.staging.getMappedRange(0, bytes).slice(0);
    chunk.staging.unmap();
    await this.gpu.sync();
    const u = new Uint32Array(raw), f = new Float32Array(raw);
    const tokens: number[][] = [], logprobs: number[][] = [];
    for (let r = 0; r < chunk.rounds; r++) {
      tokens.push(Array.from({ length: this.batch }, (_, b) => u[(r * this.batch + b) * 2]));
      logprobs.push(Array.from({ length: this.batch }, (_, b) => f[(r * this.batch + b) * 2 + 1]));
    }
    return { start: chunk.start, tokens, logprobs };
  }

  destroy(): void {
    this.#forwardPlan?.destroy();
    this.#forwardPlan = null;
    for (const p of this.#samplePlans) p?.destroy();
    this.#samplePlans = [];
    for (const t of this.#tensors) t.destroy();
    for (const a of this.#prefillActs.values()) a.destroy();
    this.#prefillActs.clear();
    for (const set of this.#chunkStates ?? []) for (const t of set) t.destroy();
    for (const i of this.#chunkInputs) i.destroy();
    for (const s of this.#staging) this.gpu.destroyBuffer(s);
  }
}

/** Rounds of the first chunk of a generation: small, so the first tokens show fast. */
export const FIRST_CHUNK = 4;
/**
 * Growth of the chunks after the first: 4, 16, 64, 256 rounds. Each readback costs ~11 ms (it waits for an
 * idle GPU, then sleeps), so 512 tokens take 5 readbacks instead of 8 when doubling.
 */
export const CHUNK_GROWTH = 4;

export type StopType = "eos" | "limit" | "word";

export interface SequenceOutput {
  tokens: number[];
  logprobs: number[];
  stop: StopType;
}

export interface RunOptions {
  /** tokens to draw per sequence at most; -1 = until EOS (or a stop from onToken) */
  maxTokens: number;
  /** this token ends a sequence (it is kept as its last token); null: none */
  eos: number | null;
  /** rounds of the first chunk (small, so the first tokens show fast); later chunks grow ×CHUNK_GROWTH, up to maxChunk */
  firstChunk?: number;
  /**
   * Called for each drawn token in order; true ends that sequence after this token (a stop string). The
   * token may be EOS, which ends the sequence anyway.
   */
  onToken?: (seq: number, token: number, logprob: number) => boolean | void;
  /** called after each chunk was read (for streaming output and timing) */
  onChunk?: () => void | Promise<void>;
  /** called once the prefill is submitted (e.g. to wait for it and time it) */
  onPrefill?: () => void | Promise<void>;
}

/**
 * GPU time the first rounds of the next chunk should cover while a chunk is read back: the readback's ~10 ms
 * sleep and the host's work on its tokens.
 */
export const BRIDGE_MS = 25;
/** Most rounds started ahead of a readback (what a stop can waste, whatever the measured pace says). */
export const BRIDGE_MAX_ROUNDS = 32;

export interface ChunkLoop {
  /** rounds of the first chunk */
  first: number;
  /** rounds still wanted, were every token of the chunk being read kept (≤ 0: none; Infinity: no limit) */
  left: () => number;
  /** takes a chunk's tokens; false ends the loop */
  take: (chunk: ChunkTokens) => boolean | Promise<boolean>;
}

/**
 * Draws chunks of rounds — `first`, then ×CHUNK_GROWTH up to maxChunk — and hands each chunk's tokens to
 * `take`. A readback blocks until the GPU has run every submitted round and then sleeps ~10 ms, so the
 * next chunk's first rounds (BRIDGE_MS of them at the pace measured between readbacks) are submitted as
 * soon as the read has started, and run during that sleep; the rest follows once `take` asks for more.
 * A stop wastes at most those first rounds.
 */
export async function runChunks(gen: Generator, loop: ChunkLoop): Promise<void> {
  let size = Math.max(1, loop.first);
  const rounds = Math.min(size, gen.maxChunk, loop.left());
  if (!(rounds >= 1)) return;
  let last = performance.now();
  let chunk: Chunk | null = gen.submit(rounds);
  let next: Chunk | null = null;
  try {
    while (chunk) {
      size *= CHUNK_GROWTH;
      const nextRounds = Math.min(size, gen.maxChunk, loop.left() - chunk.rounds);
      const reading = gen.read(chunk);
      const drained = performance.now();
      const msPerRound = (drained - last) / chunk.rounds;
      last = drained;
      if (nextRounds >= 1) {
        const bridge = Math.min(BRIDGE_MAX_ROUNDS, Math.ceil(BRIDGE_MS / Math.max(msPerRound, 1e-3)));
        next = gen.submit(nextRounds, bridge);
      }
      const tokens = await reading;
      if (!(await loop.take(tokens)) || !next) return;
      gen.complete(next);
      [chunk, next] = [next, null];
    }
  } finally {
    if (next) gen.drop(next);
  }
}

/**
 * Prefills `prompts` and draws tokens until every sequence stopped: EOS, `maxTokens`, or onToken's word.
 * The chunk schedule is first small, then growing ×CHUNK_GROWTH: each readback costs ~11 ms, so long chunks
 * amortise it, and tokens drawn past a stop inside a chunk are dropped (runChunks).
 */
export async function generate(
  gen: Generator,
  prompts: readonly Prompt[],
  opts: RunOptions,
): Promise<SequenceOutput[]> {
  const n = prompts.length;
  if (opts.maxTokens === 0) return prompts.map(() => ({ tokens: [], logprobs: [], stop: "limit" }));
  gen.prefill(prompts);
  await opts.onPrefill?.();
  const outs: SequenceOutput[] = prompts.map(() => ({ tokens: [], logprobs: [], stop: "limit" }));
  const active = new Array(n).fill(true);
  await runChunks(gen, {
    first: opts.firstChunk ?? FIRST_CHUNK,
    left: () =>
      opts.maxTokens < 0
        ? Infinity
        : Math.max(...outs.map((o, i) => (active[i] ? opts.maxTokens - o.tokens.length : 0))),
    take: async (chunk) => {
      for (let r = 0; r < chunk.tokens.length; r++) {
        for (let s = 0; s < n; s++) {
          if (!active[s]) continue;
          const token = chunk.tokens[r][s], lp = chunk.logprobs[r][s];
          if (token === NO_TOKEN) {
            throw new TnlError(
              "gpu",
              `sequence ${s + 1}: no token could be drawn at position ${chunk.start[s] + r}: the logits ` +
                `are not finite (NaN or infinity), or every token is excluded`,
            );
          }
          const o = outs[s];
          o.tokens.push(token);
          o.logprobs.push(lp);
          const word = opts.onToken?.(s, token, lp) === true;
          if (opts.eos !== null && token === opts.eos) [o.stop, active[s]] = ["eos", false];
          else if (word) [o.stop, active[s]] = ["word", false];
          else if (opts.maxTokens >= 0 && o.tokens.length >= opts.maxTokens) {
            [o.stop, active[s]] = ["limit", false];
          }
        }
      }
      await opts.onChunk?.();
      return active.some((a) => a);
    },
  });
  return outs;
}

/**
 * One sequence's text as tokens arrive, cut before the first stop string (excluded, as llama.cpp does).
 * take() gives the text that can be shown now: all but a tail that could still grow into a stop string.
 */
export class StopText {
  #text = "";
  #shown = 0;
  #stop: string | null = null;
  readonly #longest: number;

  constructor(readonly stops: readonly string[]) {
    if (stops.some((s) => s.length === 0)) throw new TnlError("usage", "a stop string is empty");
    this.#longest = Math.max(0, ...stops.map((s) => s.length));
  }

  /** Appends decoded text; true once a stop string has appeared. */
  push(delta: string): boolean {
    if (this.#stop !== null) return true;
    const from = Math.max(0, this.#text.length - this.#longest + 1);
    this.#text += delta;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.#text.indexOf(s, from);
      if (i >= 0 && (cut < 0 || i < cut)) [cut, this.#stop] = [i, s];
    }
    if (cut >= 0) this.#text = this.#text.slice(0, cut);
    return this.#stop !== null;
  }

  get text(): string {
    return this.#text;
  }

  /** The stop string that ended the text, or null. */
  get stop(): string | null {
    return this.#stop;
  }

  /** Text not shown yet; unless `final`, without a tail that is the start of a stop string. */
  take(final = false): string {
    let end = this.#text.length;
    if (!final && this.#stop === null) {
      for (let k = Math.min(this.#longest - 1, end - this.#shown); k > 0; k--) {
        const tail = this.#text.slice(end - k);
        if (this.stops.some((s) => s.startsWith(tail))) {
          end -= k;
          break;
        }
      }
    }
    const out = this.#text.slice(this.#shown, end);
    this.#shown = end;
    return out;
  }
}

/**
 * A streaming decoder for the text that follows `prompt`. SentencePiece drops the leading space of the first
 * piece it decodes (its dummy prefix), which a continuation keeps: its stream first decodes the prompt's last
 * token, and that text is dropped.
 */
export function continuationDecoder(
  tokenizer: Tokenizer,
  prompt: readonly number[],
): { push(id: number): string; flush(): string } {
  const stream = tokenizer.decodeStream();
  const last = prompt.at(-1);
  if (tokenizer.kind === "sentencepiece" && last !== undefined && last < tokenizer.vocabSize) {
    stream.push(last);
    stream.flush();
  }
  return stream;
}
