// Multi-query associative recall (MQAR), the probe of what a recurrent state remembers, as the Zoology
// benchmark defines it (Arora et al. 2023, "Zoology: measuring and improving recall in efficient language
// models", multiquery_ar): a sequence opens with N key-value pairs k₁ v₁ … k_N v_N (distinct keys from the
// lower half of the vocabulary, ids 1 … V/2 − 1; distinct values from the upper half, V/2 … V − 1); each key
// is then queried once, at a gap drawn from a power law that favours short distances, and the model must
// predict the key's value right after it; every other position holds a random token and is not scored.
// Chance is 1 / (number of values). Zoology draws with numpy; here the seeded Rng draws the same
// distributions (the sequences differ, the protocol is the same).

import { TnlError } from "./errors.ts";
import { Rng } from "./random.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";

export interface MqarSettings {
  /** vocabulary: keys 1 … V/2 − 1, values V/2 … V − 1 */
  vocab: number;
  /** key-value pairs per sequence */
  pairs: number;
  /** tokens per sequence */
  seqLen: number;
  /** exponent a of the gap distribution p(g) ∝ a·g^(a−1), g = 1 … (T − 2N)/2 (Zoology: 0.01) */
  powerA: number;
}

export const MQAR_POWER_A = 0.01;

/** Problems with the settings, one line each (empty when usable). */
export function mqarProblems(s: MqarSettings): string[] {
  const out: string[] = [];
  if (!Number.isSafeInteger(s.vocab) || s.vocab < 4) out.push(`vocab = ${s.vocab}: expected an integer ≥ 4`);
  if (!Number.isSafeInteger(s.pairs) || s.pairs < 1) out.push(`pairs = ${s.pairs}: expected an integer ≥ 1`);
  if (!Number.isSafeInteger(s.seqLen) || s.seqLen < 1) {
    out.push(`seq_len = ${s.seqLen}: expected an integer ≥ 1`);
  }
  if (!(s.powerA > 0 && s.powerA <= 1)) out.push(`power_a = ${s.powerA}: expected a number in (0, 1]`);
  if (out.length) return out;
  const keys = Math.floor(s.vocab / 2) - 1;
  if (s.pairs > keys) {
    out.push(`pairs = ${s.pairs}: a vocabulary of ${s.vocab} has only ${keys} keys (ids 1..${keys})`);
  }
  if (4 * s.pairs > s.seqLen) {
    out.push(
      `seq_len = ${s.seqLen}: ${s.pairs} pairs need at least ${
        4 * s.pairs
      } tokens (the pairs, then a query ` +
        `slot of two tokens per pair)`,
    );
  }
  return out;
}

export function checkMqar(s: MqarSettings, where: string): void {
  const p = mqarProblems(s);
  // One line, as every error: the problems joined.
  if (p.length) throw new TnlError("input", `${where}: ${p.join("; ")}`);
}

/** Values the answer is drawn from: chance accuracy is 1 / this. */
export function mqarValues(vocab: number): number {
  return vocab - Math.floor(vocab / 2);
}

/** `n` distinct integers of [lo, hi), uniformly (a partial Fisher-Yates shuffle). */
function distinct(rng: Rng, lo: number, hi: number, n: number): number[] {
  const pool = Array.from({ length: hi - lo }, (_, i) => lo + i);
  for (let i = 0; i < n; i++) {
    const j = i + rng.int(pool.length - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, n);
}

/**
 * One sequence: inputs [T] and targets [T] (the value at each query's position, IGNORE_INDEX elsewhere).
 * Layout as Zoology's: pairs at [0, 2N); query slot g ∈ [0, S), S = ⌊(T − 2N)/2⌋, at position 2N + 2g.
 */
export function mqarSequence(rng: Rng, s: MqarSettings, weights: Float64Array): {
  inputs: Uint32Array;
  targets: Int32Array;
} {
  const T = s.seqLen, N = s.pairs, half = Math.floor(s.vocab / 2);
  const keys = distinct(rng, 1, half, N), values = distinct(rng, half, s.vocab, N);
  const inputs = new Uint32Array(T), targets = new Int32Array(T).fill(IGNORE_INDEX);
  const query = new Uint8Array(T);
  for (let i = 0; i < N; i++) {
    inputs[2 * i] = keys[i];
    inputs[2 * i + 1] = values[i];
    query[2 * i] = query[2 * i + 1] = 1;
  }
  // Gaps without replacement from the power law: draw, remove, renormalise.
  const w = Float64Array.from(weights);
  let mass = w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < N; i++) {
    let u = rng.next() * mass, g = 0;
    while (g < w.length - 1 && (w[g] === 0 || u >= w[g])) {
      u -= w[g];
      g++;
    }
    while (w[g] === 0) g--; // rounding at the end of the walk
    mass -= w[g];
    w[g] = 0;
    const at = 2 * N + 2 * g;
    inputs[at] = keys[i];
    targets[at] = values[i];
    query[at] = 1;
  }
  for (let t = 0; t < T; t++) if (!query[t]) inputs[t] = rng.int(s.vocab);
  return { inputs, targets };
}

/** The gap weights a·g^(a−1), g = 1 … ⌊(T − 2N)/2⌋. */
export function mqarGapWeights(s: MqarSettings): Float64Array {
  const slots = Math.floor((s.seqLen - 2 * s.pairs) / 2);
  return Float64Array.from({ length: slots }, (_, i) => s.powerA * (i + 1) ** (s.powerA - 1));
}

/** Seeded MQAR batches for training (the RNG state is the data position: exact resume). */
export class MqarSampler {
  readonly rng: Rng;
  readonly #weights: Float64Array;

  constructor(readonly settings: MqarSettings, seed: number) {
    checkMqar(settings, "mqar");
    this.rng = new Rng(seed);
    this.#weights = mqarGapWeights(settings);
  }

  /** B sequences as inputs [B, T] and targets [B, T]. */
  next(B: number): { inputs: Uint32Array; targets: Int32Array } {
    const T = this.settings.seqLen;
    const inputs = new Uint32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const x = mqarSequence(this.rng, this.settings, this.#weights);
      inputs.set(x.inputs, b * T);
      targets.set(x.targets, b * T);
    }
    return { inputs, targets };
  }
}

/** The validation sequences of a training seed: another stream than the training batches'. */
export function mqarValidationSeed(seed: number): number {
  return (seed ^ 0x5bd1e995) >>> 0;
}
