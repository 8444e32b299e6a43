// Dispatcher of the sampling kernel (sample.wgsl): repeat penalty, temperature, top-k, top-p, min-p and a
// seeded counter-based draw for a batch of sequences, one workgroup each, writing the token where the next
// decode step reads it. Nothing is read back here.

import { TnlError } from "../core/errors.ts";
import type { Gpu, Step } from "../core/gpu.ts";
import type { Tensor } from "../core/tensor.ts";
import { cachedDef, grid1d, packParams, withReduceLib } from "./wgsl.ts";
import source from "./sample.wgsl" with { type: "text" };

/** Longest repeat-penalty window (repeat_last_n) the kernel takes. */
export const SAMPLER_MAX_WINDOW = 1024;
/** Top-k candidates the top-p search gathers in workgroup memory (more: it sums over the vocabulary). */
export const SAMPLER_GATHER = 512;
/** The token written where no token could be drawn (non-finite logits, or every token banned). */
export const NO_TOKEN = 0xffffffff;
/**
 * Units of 4 logits each invocation loads before using them, in a pass over the vocabulary: 8 on a GPU (one
 * workgroup per sequence is latency-bound: H200, greedy 23 → 16 µs from 8 scalar loads to 8 units); 2 on
 * Mesa's llvmpipe, where the passes' unrolled bodies (U × 4 copies) would only lengthen a slow compile (GL:
 * 104 s cold with 8 scalar loads, 165 s with 8 units).
 */
export function sampleLoads(gpu: Gpu): number {
  return gpu.software ? 2 : 8;
}

export interface SamplerSettings {
  /** 0 = greedy (argmax, lowest id on ties) */
  temp: number;
  /** 0 = off */
  topK: number;
  /** (0, 1]; 1 = off */
  topP: number;
  /** [0, 1]; 0 = off */
  minP: number;
  /** > 0; 1 = off */
  repeatPenalty: number;
  /** tokens before the drawn position that the penalty looks at, ≤ SAMPLER_MAX_WINDOW */
  repeatLastN: number;
  /** u32 */
  seed: number;
  /** a token that is never drawn (e.g. EOS with --ignore-eos), or null */
  banned: number | null;
  /** write each token's log-probability under the raw logits */
  logprobs: boolean;
}

export interface SamplerBuffers {
  /** [nseq, stride] f32, the first V of each row (penalized in place) */
  logits: Tensor;
  /** logits between two sequences' rows: a multiple of 4 (read as vec4), ≥ vocab; default vocab */
  stride?: number;
  /** [nseq, histW] u32: the token at position i lives in slot i mod histW */
  hist: Tensor;
  /** [nseq, 4] u32: len (tokens so far: the drawn token gets position len), stream id, 0, 0 */
  seq: Tensor;
  /** [nseq] u32: the drawn token (the next step's input) */
  cur: Tensor;
  /** [rows, nseq, 2] u32: per step, token and the f32 bits of its log-probability */
  out: Tensor;
  /** [nseq, 4] f32: smallest kept logit, kept mass, kept count, u */
  info: Tensor;
  nseq: number;
  vocab: number;
  histW: number;
}

const def = (subgroups: boolean, loads: number) =>
  cachedDef(`sample/${subgroups}/${loads}`, () => ({
    name: `sample-u${loads}`,
    code: withReduceLib("sample", source, { SUBGROUPS: subgroups, U: loads }),
    bindings: ["rw", "rw", "rw", "rw", "rw", "rw"],
    paramBytes: 20 * 4,
  }));

/** Loop iterations of the busiest invocation (llvmpipe leaves loops after Gpu.loopLimit). */
/** Logits per row for the sampler: the vocabulary rounded up to a multiple of 4 (it reads units of 4). */
export function samplerStride(vocab: number): number {
  return Math.ceil(vocab / 4) * 4;
}

export function samplerIterations(vocab: number, window: number, loads: number): number {
  const per = Math.ceil(vocab / 1024); // units of 4 per invocation
  // A pass over the vocabulary: ⌈per / U⌉ iterations of U loads (their uses are unrolled; counted as if
  // not, as before, which leaves a margin).
  const pass = Math.ceil(per / loads) * (loads + 1);
  // The candidate path (two selects by rank: 256 and 2 × 512 comparisons; a count pass, an 8-step scan and
  // a gather pass; loops over ≤ CAP candidates) and the full-pass path are both counted.
  const candidates = 258 + 2 * SAMPLER_GATHER + 2 + 2 * pass + 16 + 2 * SAMPLER_GATHER;
  return 2 * pass + 64 + Math.ceil(window / 256) * window + pass + 8 + 4 * (pass + 257) + candidates +
    (2 * pass + 256 + 33 * pass + 33 * 40) + 2 * pass + 512;
}

/** Checks settings a user can get wrong (the CLI checks them first with its own flag names). */
export function checkSamplerSettings(s: SamplerSettings, vocab: number): void {
  const bad = (m: string) => {
    throw new TnlError("internal", `sampler: ${m}`);
  };
  if (!(s.temp >= 0) || !Number.isFinite(s.temp)) bad(`temp ${s.temp}`);
  if (!Number.isInteger(s.topK) || s.topK < 0) bad(`top-k ${s.topK}`);
  if (!(s.topP > 0 && s.topP <= 1)) bad(`top-p ${s.topP}`);
  if (!(s.minP >= 0 && s.minP <= 1)) bad(`min-p ${s.minP}`);
  if (!(s.repeatPenalty > 0) || !Number.isFinite(s.repeatPenalty)) bad(`repeat penalty ${s.repeatPenalty}`);
  if (!Number.isInteger(s.repeatLastN) || s.repeatLastN < 0 || s.repeatLastN > SAMPLER_MAX_WINDOW) {
    bad(`repeat window ${s.repeatLastN}`);
  }
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed > 0xffffffff) bad(`seed ${s.seed}`);
  if (s.banned !== null && (!Number.isInteger(s.banned) || s.banned < 0 || s.banned >= vocab)) {
    bad(`banned token ${s.banned}`);
  }
}

/** Draws one token per sequence into row `outRow` of b.out (and b.cur, b.hist; b.seq's len advances). */
export function sampleTokens(
  step: Step,
  b: SamplerBuffers,
  s: SamplerSettings,
  outRow: number,
  /** unit loads in flight per pass (tests run both forms on any adapter) */
  loads: number = sampleLoads(step.gpu),
): void {
  checkSamplerSettings(s, b.vocab);
  const { nseq, vocab, histW } = b;
  const stride = b.stride ?? vocab;
  if (stride % 4 !== 0 || stride < vocab) {
    throw new TnlError(
      "internal",
      `sampler: rows of ${stride} logits (a multiple of 4, ≥ ${vocab}: samplerStride)`,
    );
  }
  if (s.repeatLastN > histW) {
    throw new TnlError("internal", `sampler: window ${s.repeatLastN} > ring ${histW}`);
  }
  if (!Number.isInteger(loads) || loads < 1 || loads > 16) {
    throw new TnlError("internal", `sampler: ${loads} loads`);
  }
  const iterations = samplerIterations(vocab, s.repeatLastN, loads);
  if (iterations > step.gpu.loopLimit) {
    throw new TnlError(
      "gpu",
      `sampling over a vocabulary of ${vocab} needs ${iterations} loop iterations per invocation; this adapter ` +
        `stops loops after ${step.gpu.loopLimit}`,
    );
  }
  const sizes: [Tensor, number, string][] = [
    [b.logits, nseq * stride, "logits"],
    [b.hist, nseq * histW, "hist"],
    [b.seq, nseq * 4, "seq"],
    [b.cur, nseq, "cur"],
    [b.out, (outRow + 1) * nseq * 2, "out"],
    [b.info, nseq * 4, "info"],
  ];
  for (const [t, n, what] of sizes) {
    if (t.size < n) throw new TnlError("internal", `sampler: ${what} '${t.label}' holds ${t.size} < ${n}`);
  }
  const views = [
    b.logits.view(0, nseq * stride),
    b.hist.view(0, nseq * histW),
    b.seq.view(0, nseq * 4),
    b.cur.view(0, nseq),
    b.out.view(0, (outRow + 1) * nseq * 2),
    b.info.view(0, nseq * 4),
  ];
  if (views[0].base % 4 !== 0) {
    throw new TnlError("internal", `sampler: logits '${b.logits.label}' start off a multiple of 4`);
  }
  step.dispatch(
    step.gpu.kernel(def(step.gpu.features.subgroups, loads)),
    views,
    packParams([
      [vocab, "u32"],
      [stride, "u32"],
      [nseq, "u32"],
      [histW, "u32"],
      [s.repeatLastN, "u32"],
      [outRow, "u32"],
      [s.topK, "u32"],
      [s.banned ?? 0xffffffff, "u32"],
      [s.seed, "u32"],
      [s.logprobs ? 1 : 0, "u32"],
      ...views.map((v) => [v.base, "u32"] as const),
      [s.temp, "f32"],
      [s.topP, "f32"],
      [s.minP, "f32"],
      [s.repeatPenalty, "f32"],
    ]),
    grid1d(nseq),
  );
}
