// Float64 CPU reference of the sampler (kernels/sample.wgsl): the filtered distribution it draws from, and
// the draw for a given u. Written from the rules, not from the kernel's algorithm (radix select, bitwise
// threshold search): sorting and prefix sums here.

import type { SamplerSettings } from "./sample.ts";

type Num = ArrayLike<number>;

function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The kernel's u ∈ [0, 1) for (seed, stream, position): 24 bits of a hash. */
export function samplerUniform(seed: number, stream: number, position: number): number {
  const h = mix32((mix32((mix32((seed ^ 0x9e3779b9) >>> 0) ^ stream) >>> 0) ^ position) >>> 0);
  return (h >>> 8) / 16777216;
}

/** The ids of a vocabulary of V in the sampler's draw order: (unit mod 256, id), unit = ⌊id / 4⌋. */
export function drawOrder(V: number): number[] {
  const order: number[] = [];
  const units = Math.ceil(V / 4);
  for (let t = 0; t < 256; t++) {
    for (let u = t; u < units; u += 256) {
      for (let i = 4 * u; i < Math.min(4 * u + 4, V); i++) order.push(i);
    }
  }
  return order;
}

export interface SampleRef {
  /** logits after the penalty and the ban */
  logits: Float64Array;
  /** tokens that can be drawn */
  kept: boolean[];
  /** the filtered distribution (0 outside `kept`) */
  probs: Float64Array;
  /** Σ exp((l − max)/temp) over kept (1 when greedy) */
  keptMass: number;
  /** the smallest kept logit (the max when greedy) */
  threshold: number;
  chosen: number;
}

/**
 * The sampler's rules: penalty on the distinct `window` tokens (logit > 0 ? /penalty : ×penalty), the banned
 * token → −∞; greedy: argmax, lowest id. Else m_i = exp((l_i − max)/temp); top-k keeps logits ≥ the k-th
 * largest; top-p the smallest set of the largest logits whose mass reaches top_p × the top-k mass (ties at its
 * last logit kept); min-p keeps m_i ≥ min_p. The draw: the first kept token in drawOrder whose cumulative
 * mass exceeds u × the kept mass.
 */
export function sampleRef(logits: Num, window: readonly number[], s: SamplerSettings, u: number): SampleRef {
  const V = logits.length;
  const l = Float64Array.from(logits);
  if (s.repeatPenalty !== 1) {
    for (const t of new Set(window)) {
      if (t >= 0 && t < V) l[t] = l[t] > 0 ? l[t] / s.repeatPenalty : l[t] * s.repeatPenalty;
    }
  }
  if (s.banned !== null) l[s.banned] = -Infinity;
  let mx = -Infinity, arg = -1;
  for (let i = 0; i < V; i++) {
    if (l[i] > mx) [mx, arg] = [l[i], i];
  }
  if (s.temp === 0) {
    const kept = Array.from({ length: V }, (_, i) => i === arg);
    const probs = Float64Array.from(kept, (k) => (k ? 1 : 0));
    return { logits: l, kept, probs, keptMass: 1, threshold: mx, chosen: arg };
  }
  const m = Float64Array.from(l, (x) => Math.exp((x - mx) / s.temp));
  const byValue = Array.from({ length: V }, (_, i) => i).sort((a, b) => l[b] - l[a] || a - b);
  let threshold = -Infinity;
  if (s.topK > 0 && s.topK < V) threshold = l[byValue[s.topK - 1]];
  if (s.topP < 1) {
    let zk = 0;
    for (let i = 0; i < V; i++) if (l[i] >= threshold) zk += m[i];
    let cum = 0;
    for (const i of byValue) {
      cum += m[i];
      if (cum >= s.topP * zk) {
        threshold = Math.max(threshold, l[i]);
        break;
      }
    }
  }
  const kept = Array.from({ length: V }, (_, i) => l[i] >= threshold && m[i] >= s.minP);
  let z = 0;
  for (let i = 0; i < V; i++) if (kept[i]) z += m[i];
  const probs = Float64Array.from(m, (x, i) => (kept[i] ? x / z : 0));
  let smallest = Infinity;
  for (let i = 0; i < V; i++) if (kept[i]) smallest = Math.min(smallest, l[i]);
  let chosen = -1, cum = 0, last = -1;
  for (const i of drawOrder(V)) {
    if (!kept[i] || m[i] === 0) continue;
    last = i;
    cum += m[i];
    if (cum > u * z) {
      chosen = i;
      break;
    }
  }
  return { logits: l, kept, probs, keptMass: z, threshold: smallest, chosen: chosen < 0 ? last : chosen };
}
