// Token embedding (embedding.wgsl): forward gather with the √D scale, and a deterministic backward that
// sums each token's positions in a fixed order (buckets built on the host, where the ids come from).

import { TnlError } from "../core/errors.ts";
import type { Gpu, Step } from "../core/gpu.ts";
import { Tensor } from "../core/tensor.ts";
import { cachedDef, forChunks, grid1d, packParams, preprocess } from "./wgsl.ts";
import source from "./embedding.wgsl" with { type: "text" };

const def = (fwd: boolean) =>
  cachedDef(`embedding/${fwd}`, () => ({
    name: fwd ? "embedding-fwd" : "embedding-bwd",
    code: preprocess("embedding", source, { FWD: fwd }),
    bindings: fwd ? ["read", "read", "rw"] : ["read", "read", "read", "read", "rw"],
    paramBytes: 14 * 4,
  }));

/** Positions of a batch grouped by token (stable), without the pad token: the backward's plan. */
export interface EmbeddingBuckets {
  /** positions, grouped by token, increasing inside a group */
  order: Uint32Array;
  /** the token of each group */
  tokens: Uint32Array;
  /** group g is order[starts[g] .. starts[g+1]) */
  starts: Uint32Array;
}

/**
 * Checks every id is in [0, vocab) (naming the first that is not) and groups the positions by token with a
 * counting sort; positions holding `padId` get no gradient (PyTorch's padding_idx rule).
 */
export function embeddingBuckets(
  ids: ArrayLike<number>,
  vocab: number,
  padId: number | null,
  what = "input",
): EmbeddingBuckets {
  const counts = new Map<number, number>();
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new TnlError(
        "input",
        `${what}: token id ${id} at position ${i} is outside the model's vocabulary of ${vocab}`,
      );
    }
    if (id !== padId) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const tokens = Uint32Array.from([...counts.keys()].sort((a, b) => a - b));
  const starts = new Uint32Array(tokens.length + 1);
  const slot = new Map<number, number>();
  tokens.forEach((t, g) => {
    starts[g + 1] = starts[g] + counts.get(t)!;
    slot.set(t, starts[g]);
  });
  const order = new Uint32Array(starts[tokens.length]);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === padId) continue;
    const s = slot.get(id)!;
    order[s] = i;
    slot.set(id, s + 1);
  }
  return { order, tokens, starts };
}

/** Vocabulary rows per binding of a [vocab, d] matrix. */
function vocabSlice(t: Tensor, vocab: number, d: number): number {
  return Math.max(1, Math.min(vocab, Math.floor(t.maxViewElements() / Math.max(d, 1))));
}

function params(p: {
  rows: number;
  d: number;
  vcount: number;
  vstart: number;
  bases: number[];
  first?: number;
  skip?: number;
  cap?: number;
  scale: number;
  beta?: number;
}): Uint8Array {
  const b = [...p.bases, 0, 0, 0, 0, 0].slice(0, 5);
  return packParams([
    [p.rows, "u32"],
    [p.d, "u32"],
    [p.vcount, "u32"],
    [p.vstart, "u32"],
    ...b.map((x) => [x, "u32"] as const),
    [p.first ?? 0, "u32"],
    [p.skip ?? 0, "u32"],
    [p.cap ?? 0, "u32"],
    [p.scale, "f32"],
    [p.beta ?? 0, "f32"],
  ]);
}

/** x[n, :] = scale · emb[ids[n], :] for ids: [N] u32 (validated), emb: [vocab, d], x: [N, d]. */
export function embeddingForward(
  step: Step,
  ids: Tensor,
  emb: Tensor,
  x: Tensor,
  rows: number,
  d: number,
  vocab: number,
  scale: number,
): void {
  if (ids.size < rows || emb.size < vocab * d || x.size < rows * d) {
    throw new TnlError("internal", `embedding: sizes for ${rows} rows of ${d} over ${vocab}`);
  }
  if (rows === 0) return;
  const kernel = step.gpu.kernel(def(true));
  const vi = ids.view(0, rows), vx = x.view(0, rows * d);
  forChunks(vocab, vocabSlice(emb, vocab, d), (v0, vn) => {
    const ve = emb.view(v0 * d, vn * d);
    step.dispatch(
      kernel,
      [vi, ve, vx],
      params({ rows, d, vcount: vn, vstart: v0, bases: [vi.base, ve.base, vx.base], scale }),
      grid1d(rows),
    );
  });
}

/** The backward's plan uploaded: u32 tensors of an EmbeddingBuckets, and the host copy of its tokens. */
export interface GpuBuckets {
  order: Tensor;
  tokens: Tensor;
  starts: Tensor;
  hostTokens: Uint32Array;
  /** positions of the most frequent token */
  maxCount: number;
}

/** Uploads a batch's buckets (u32 tensors; empty lists get one unused element). */
export function uploadBuckets(gpu: Gpu, b: EmbeddingBuckets, label = "embedding"): GpuBuckets {
  const t = (a: Uint32Array, what: string) =>
    Tensor.from(gpu, a.length ? a : new Uint32Array(1), [Math.max(1, a.length)], "u32", `${label} ${what}`);
  let maxCount = 0;
  for (let g = 0; g < b.tokens.length; g++) maxCount = Math.max(maxCount, b.starts[g + 1] - b.starts[g]);
  return {
    order: t(b.order, "order"),
    tokens: t(b.tokens, "tokens"),
    starts: t(b.starts, "starts"),
    hostTokens: b.tokens,
    maxCount,
  };
}

/**
 * demb[token, :] = beta · demb[token, :] + scale · Σ dx[positions of token, :] for the groups of the
 * buckets. Rows of tokens absent from the batch are not touched: clear demb first when it must hold only
 * this batch's gradient.
 */
export function embeddingBackward(
  step: Step,
  buckets: GpuBuckets,
  dx: Tensor,
  demb: Tensor,
  d: number,
  vocab: number,
  scale: number,
  beta = 0,
): void {
  const groups = buckets.hostTokens.length;
  if (groups === 0) return;
  const kernel = step.gpu.kernel(def(false));
  const vo = buckets.order.view(),
    vt = buckets.tokens.view(0, groups),
    vs = buckets.starts.view(0, groups + 1);
  const vdx = dx.view();
  // Each invocation loops over ceil(d/256) columns × the group's positions: keep that under the loop limit.
  const cap = Math.max(1, Math.floor((step.gpu.loopLimit - 64) / Math.ceil(d / 256)) - 1);
  const rounds = Math.max(1, Math.ceil(buckets.maxCount / cap));
  forChunks(vocab, vocabSlice(demb, vocab, d), (v0, vn) => {
    // The groups are sorted by token: those of this slice are one run.
    const first = lowerBound(buckets.hostTokens, v0), end = lowerBound(buckets.hostTokens, v0 + vn);
    if (end === first) return;
    const vde = demb.view(v0 * d, vn * d);
    for (let round = 0; round < rounds; round++) {
      step.dispatch(
        kernel,
        [vo, vt, vs, vdx, vde],
        params({
          rows: end - first,
          d,
          vcount: vn,
          vstart: v0,
          bases: [vo.base, vt.base, vs.base, vdx.base, vde.base],
          first,
          skip: round * Math.min(cap, 0xffffffff),
          cap: Math.min(cap, 0xffffffff),
          scale,
          beta: round === 0 ? beta : 1,
        }),
        grid1d(end - first),
      );
    }
  });
}

function lowerBound(sorted: Uint32Array, x: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
