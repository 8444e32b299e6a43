// Variants of one WGSL source: lines `#if NAME`, `#if !NAME`, `#else`, `#endif` keep or drop the lines
// between them, and `{{NAME}}` is replaced by a value. Types of bindings (f32 vs vec4<f32>) cannot be
// WGSL `override`s, so variants that change them are made here; numeric tuning knobs stay overrides.
//
// `#unroll I N` ... `#endunroll` repeats its lines N times with `{{I}}` = 0 … N−1 (blocks nest; N is a
// number or a define holding one). Loops with
// a constant trip count must be unrolled here: the WGSL compiler turns every loop into an unbounded loop
// with a 64-bit guard counter, which the driver's compiler then does not unroll (an 8-step matmul K loop
// unrolled by hand ran 16% faster on the H200, and constant indices into workgroup arrays become
// immediate offsets).

import { TnlError } from "../core/errors.ts";
import type { KernelDef } from "../core/gpu.ts";
import reduceLib from "./reduce_lib.wgsl" with { type: "text" };

export type Defines = Record<string, boolean | number | string>;

/** Expands `#unroll I N` … `#endunroll` blocks; each output line keeps the number of its source line. */
function unroll(name: string, lines: { raw: string; line: number }[], defines: Defines) {
  const out: { raw: string; line: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const { raw, line } = lines[i];
    const trimmed = raw.trim();
    if (/^#endunroll\b/.test(trimmed)) {
      throw new TnlError("internal", `${name}.wgsl:${line}: #endunroll without #unroll`);
    }
    const m = /^#unroll\b(.*)$/.exec(trimmed);
    if (!m) {
      out.push(lines[i]);
      continue;
    }
    const args = /^\s+([A-Za-z_][A-Za-z0-9_]*)\s+(\d+|[A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(m[1]);
    if (!args) throw new TnlError("internal", `${name}.wgsl:${line}: expected '#unroll NAME COUNT'`);
    const [, key, countText] = args;
    // COUNT: a number, or a define holding one.
    const count = /^\d+$/.test(countText) ? Number(countText) : Number(defines[countText]);
    if (!Number.isInteger(count) || count < 0) {
      throw new TnlError("internal", `${name}.wgsl:${line}: unroll count '${countText}' is not a number`);
    }
    if (key in defines) {
      throw new TnlError("internal", `${name}.wgsl:${line}: unroll name '${key}' is a define`);
    }
    let depth = 1, end = i + 1;
    for (; end < lines.length; end++) {
      const t = lines[end].raw.trim();
      if (/^#unroll\b/.test(t)) depth++;
      else if (/^#endunroll\b/.test(t) && --depth === 0) break;
    }
    if (end === lines.length) {
      throw new TnlError("internal", `${name}.wgsl:${line}: #unroll without #endunroll`);
    }
    const body = unroll(name, lines.slice(i + 1, end), defines);
    const token = new RegExp(`\\{\\{${key}\\}\\}`, "g");
    for (let k = 0; k < count; k++) {
      for (const b of body) out.push({ raw: b.raw.replace(token, String(k)), line: b.line });
    }
    i = end;
  }
  return out;
}

export function preprocess(name: string, source: string, defines: Defines): string {
  // #if first (an unroll block may hold #if lines, and a dropped part may name undefined counts), then
  // #unroll, then the values of {{NAME}}.
  const kept: { raw: string; line: number }[] = [];
  const stack: { active: boolean; parentActive: boolean; line: number }[] = [];
  let active = true;
  source.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    const m = /^#(if|else|endif)\b\s*(!?)\s*([A-Za-z_][A-Za-z0-9_]*)?\s*$/.exec(line);
    if (!m) {
      if (line.startsWith("#") && !/^#(unroll|endunroll)\b/.test(line)) {
        throw new TnlError("internal", `${name}.wgsl:${i + 1}: unknown directive '${line}'`);
      }
      if (active) kept.push({ raw, line: i + 1 });
      return;
    }
    const [, directive, negate, key] = m;
    if (directive === "if") {
      if (!key) throw new TnlError("internal", `${name}.wgsl:${i + 1}: #if needs a name`);
      if (!(key in defines)) throw new TnlError("internal", `${name}.wgsl:${i + 1}: '${key}' is not defined`);
      const cond = Boolean(defines[key]) !== (negate === "!");
      stack.push({ active: cond, parentActive: active, line: i + 1 });
      active = active && cond;
    } else if (directive === "else") {
      const top = stack.at(-1);
      if (!top) throw new TnlError("internal", `${name}.wgsl:${i + 1}: #else without #if`);
      top.active = !top.active;
      active = top.parentActive && top.active;
    } else {
      const top = stack.pop();
      if (!top) throw new TnlError("internal", `${name}.wgsl:${i + 1}: #endif without #if`);
      active = top.parentActive;
    }
  });
  if (stack.length) throw new TnlError("internal", `${name}.wgsl:${stack.at(-1)!.line}: #if without #endif`);
  return unroll(name, kept, defines).map(({ raw, line }) =>
    raw.replace(/\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}/g, (_, key: string) => {
      if (!(key in defines)) throw new TnlError("internal", `${name}.wgsl:${line}: '${key}' is not defined`);
      return String(defines[key]);
    })
  ).join("\n");
}

/** Packs a uniform parameter block of 4-byte fields: each entry is [value, "u32" | "i32" | "f32"]. */
export function packParams(fields: readonly (readonly [number, "u32" | "i32" | "f32"])[]): Uint8Array {
  const buf = new ArrayBuffer(fields.length * 4);
  const view = new DataView(buf);
  fields.forEach(([v, t], i) => {
    if (t === "f32") view.setFloat32(i * 4, v, true);
    else if (t === "i32") view.setInt32(i * 4, v, true);
    else {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new TnlError("internal", `u32 parameter ${i} = ${v}`);
      }
      view.setUint32(i * 4, v, true);
    }
  });
  return new Uint8Array(buf);
}

const defCache = new Map<string, KernelDef>();

/** A kernel definition built once per key (the key must name every define that shapes the code). */
export function cachedDef(key: string, make: () => KernelDef): KernelDef {
  let def = defCache.get(key);
  if (!def) {
    def = make();
    defCache.set(key, def);
  }
  return def;
}

/**
 * A 2-D grid of `workgroups` workgroups (x ≤ the per-dimension limit); kernels recover the linear index as
 * wg.y · num_workgroups.x + wg.x and return when past the end.
 */
export function grid1d(workgroups: number, maxPerDim = 65535): [number, number] {
  if (workgroups <= maxPerDim) return [workgroups, 1];
  const y = Math.ceil(workgroups / maxPerDim);
  return [Math.ceil(workgroups / y), y];
}

/** Calls fn(start, count) over [0, n) in pieces of at most `chunk` (at least one call when n = 0 is not made). */
export function forChunks(n: number, chunk: number, fn: (start: number, count: number) => void): void {
  const c = Math.max(1, Math.floor(chunk));
  for (let s = 0; s < n; s += c) fn(s, Math.min(c, n - s));
}

/** WGSL of a row-reduction kernel: reduce_lib.wgsl (wg_sum, wg_max, non_finite) + the kernel, preprocessed. */
export function withReduceLib(name: string, source: string, defines: Defines): string {
  return preprocess("reduce_lib", reduceLib, defines) + "\n" + preprocess(name, source, defines);
}
