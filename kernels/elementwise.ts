// Dispatchers of the elementwise kernels (elementwise.wgsl): fill, axpy (residual adds, accumulation),
// SiLU forward/backward, the multiplicative gate forward/backward, and SGLU's product forward/backward.
// Operands larger than one storage binding are processed in pieces.

import { TnlError } from "../core/errors.ts";
import type { Gpu, Step } from "../core/gpu.ts";
import { Tensor } from "../core/tensor.ts";
import { cachedDef, forChunks, grid1d, packParams, preprocess } from "./wgsl.ts";
import source from "./elementwise.wgsl" with { type: "text" };

type Op =
  | "FILL"
  | "RAND"
  | "AXPY"
  | "SUMK"
  | "SILU_FWD"
  | "SILU_BWD"
  | "MUL_FWD"
  | "MUL_BWD"
  | "GLU_FWD"
  | "GLU_BWD";
const BINDINGS: Record<Op, ("read" | "rw")[]> = {
  FILL: ["rw"],
  RAND: ["rw"],
  AXPY: ["read", "rw"],
  SUMK: ["read", "rw"],
  SILU_FWD: ["read", "rw"],
  SILU_BWD: ["read", "read", "rw"],
  MUL_FWD: ["read", "read", "rw"],
  MUL_BWD: ["read", "read", "read", "rw", "rw"],
  GLU_FWD: ["read", "rw"],
  GLU_BWD: ["read", "read", "rw"],
};
const OPS = Object.keys(BINDINGS) as Op[];

function def(op: Op) {
  return cachedDef(`elementwise/${op}`, () => ({
    name: op.toLowerCase().replace("_", "-"),
    code: preprocess("elementwise", source, Object.fromEntries(OPS.map((o) => [o, o === op]))),
    bindings: BINDINGS[op],
    paramBytes: 10 * 4,
  }));
}

interface Scalars {
  f?: number;
  /** RAND: index of the first element (goes where a second operand's offset would) */
  start?: number;
  alpha?: number;
  beta?: number;
  value?: number;
}

/** One dispatch over `count` elements; `parts[i]` = [tensor, first element] for binding i. */
function encode(step: Step, op: Op, count: number, parts: [Tensor, number, number][], s: Scalars): void {
  if (count === 0) return;
  const views = parts.map(([t, start, n]) => t.view(start, n));
  const bases = [0, 0, 0, 0, 0];
  views.forEach((v, i) => (bases[i] = v.base));
  if (s.start !== undefined) bases[1] = s.start;
  const params = packParams([
    [count, "u32"],
    [s.f ?? 0, "u32"],
    ...bases.map((b) => [b, "u32"] as const),
    [s.alpha ?? 1, "f32"],
    [s.beta ?? 0, "f32"],
    [s.value ?? 0, "f32"],
  ]);
  step.dispatch(step.gpu.kernel(def(op)), views, params, grid1d(Math.ceil(count / 256)));
}

function sameSize(what: string, ...ts: Tensor[]): number {
  const n = ts[0].size;
  for (const t of ts) {
    if (t.size !== n) {
      throw new TnlError("internal", `${what}: '${t.label}' has ${t.size} elements, expected ${n}`);
    }
  }
  return n;
}

function chunkOf(...ts: Tensor[]): number {
  return Math.min(...ts.map((t) => t.maxViewElements()));
}

/** out[start .. start + count) = value */
export function fill(step: Step, out: Tensor, value: number, start = 0, count = out.size - start): void {
  forChunks(count, chunkOf(out), (s, n) => encode(step, "FILL", n, [[out, start + s, n]], { value }));
}

/**
 * out = uniform values in [lo, hi) from a hash of (index, seed): quick non-zero inputs for benchmarks (not
 * the model's seeded initialisation, which comes from core/random.ts).
 */
export function fillRandom(step: Step, out: Tensor, seed: number, lo = -1, hi = 1): void {
  forChunks(
    out.size,
    chunkOf(out),
    (s, n) => encode(step, "RAND", n, [[out, s, n]], { f: seed >>> 0, start: s, alpha: lo, beta: hi }),
  );
}

/**
 * y = alpha·Σ_s x[s·n .. (s+1)·n) + beta·y over `parts` partial results x: [parts, n] (split-K matmuls);
 * the sum runs in a fixed order.
 */
export function sumParts(
  step: Step,
  x: Tensor,
  y: Tensor,
  n: number,
  parts: number,
  alpha = 1,
  beta = 0,
): void {
  if (x.size < parts * n || y.size < n) {
    throw new TnlError("internal", `sum of parts: sizes for ${parts}×${n}`);
  }
  const chunk = Math.min(y.maxViewElements(), Math.floor(x.maxViewElements() / parts));
  if (chunk < 1) throw new TnlError("gpu", `sum of parts: ${parts} parts do not fit one binding`);
  if (n > chunk) throw new TnlError("internal", `sum of parts: ${n} elements over one binding`);
  encode(step, "SUMK", n, [[x, 0, parts * n], [y, 0, n]], { f: parts, alpha, beta });
}

/** y = alpha·x + beta·y (beta = 0 never reads y) */
export function axpy(step: Step, x: Tensor, y: Tensor, alpha = 1, beta = 1): void {
  const n = sameSize("axpy", x, y);
  forChunks(n, chunkOf(x, y), (s, c) => encode(step, "AXPY", c, [[x, s, c], [y, s, c]], { alpha, beta }));
}

/** y = x·σ(x) */
export function siluForward(step: Step, x: Tensor, y: Tensor): void {
  const n = sameSize("silu", x, y);
  forChunks(n, chunkOf(x, y), (s, c) => encode(step, "SILU_FWD", c, [[x, s, c], [y, s, c]], {}));
}

/** dx = dy·silu'(x) + beta·dx */
export function siluBackward(step: Step, x: Tensor, dy: Tensor, dx: Tensor, beta = 0): void {
  const n = sameSize("silu backward", x, dy, dx);
  forChunks(
    n,
    chunkOf(x, dy, dx),
    (s, c) => encode(step, "SILU_BWD", c, [[x, s, c], [dy, s, c], [dx, s, c]], { beta }),
  );
}

/** y = a ⊙ b */
export function mulForward(step: Step, a: Tensor, b: Tensor, y: Tensor): void {
  const n = sameSize("mul", a, b, y);
  forChunks(n, chunkOf(a, b, y), (s, c) => encode(step, "MUL_FWD", c, [[a, s, c], [b, s, c], [y, s, c]], {}));
}

/** da = dy ⊙ b + beta·da, db = dy ⊙ a + beta·db */
export function mulBackward(
  step: Step,
  a: Tensor,
  b: Tensor,
  dy: Tensor,
  da: Tensor,
  db: Tensor,
  beta = 0,
): void {
  const n = sameSize("mul backward", a, b, dy, da, db);
  forChunks(
    n,
    chunkOf(a, b, dy, da, db),
    (s, c) =>
      encode(step, "MUL_BWD", c, [[a, s, c], [b, s, c], [dy, s, c], [da, s, c], [db, s, c]], { beta }),
  );
}

/** g[r, c] = h[r, c]·h[r, F + c] for h = [rows, 2F] (the two SGLU projections side by side), g = [rows, F] */
export function gluForward(step: Step, h: Tensor, g: Tensor, rows: number, f: number): void {
  if (h.size < rows * 2 * f || g.size < rows * f) {
    throw new TnlError("internal", `glu: sizes for ${rows}×${f}`);
  }
  const rowsPer = Math.max(1, Math.floor(Math.min(h.maxViewElements() / (2 * f), g.maxViewElements() / f)));
  forChunks(
    rows,
    rowsPer,
    (r, n) => encode(step, "GLU_FWD", n * f, [[h, r * 2 * f, n * 2 * f], [g, r * f, n * f]], { f }),
  );
}

/** dh = [dg ⊙ h2, dg ⊙ h1] for h = [h1 | h2] */
export function gluBackward(step: Step, h: Tensor, dg: Tensor, dh: Tensor, rows: number, f: number): void {
  if (h.size < rows * 2 * f || dg.size < rows * f || dh.size < rows * 2 * f) {
    throw new TnlError("internal", `glu backward: sizes for ${rows}×${f}`);
  }
  const rowsPer = Math.max(
    1,
    Math.floor(
      Math.min(h.maxViewElements() / (2 * f), dg.maxViewElements() / f, dh.maxViewElements() / (2 * f)),
    ),
  );
  forChunks(
    rows,
    rowsPer,
    (r, n) =>
      encode(step, "GLU_BWD", n * f, [[h, r * 2 * f, n * 2 * f], [dg, r * f, n * f], [
        dh,
        r * 2 * f,
        n * 2 * f,
      ]], {
        f,
      }),
  );
}

/** A new f32 tensor of uniform values in [lo, hi) made on the GPU (benchmark inputs: never zeros, no upload). */
export function randomTensor(
  gpu: Gpu,
  shape: readonly number[],
  label: string,
  seed: number,
  lo = -1,
  hi = 1,
): Tensor {
  const t = Tensor.empty(gpu, shape, "f32", label);
  gpu.run(`random ${label}`, (step) => fillRandom(step, t, seed, lo, hi));
  return t;
}
