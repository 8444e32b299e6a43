// Variants of one WGSL source: lines `#if NAME`, `#if !NAME`, `#else`, `#endif` keep or drop the lines
// between them, and `{{NAME}}` is replaced by a value. Types of bindings (f32 vs vec4<f32>) cannot be
// WGSL `override`s, so variants that change them are made here; numeric tuning knobs stay overrides.

import { TnlError } from "../core/errors.ts";
import type { KernelDef } from "../core/gpu.ts";
import reduceLib from "./reduce_lib.wgsl" with { type: "text" };

export type Defines = Record<string, boolean | number | string>;

export function preprocess(name: string, source: string, defines: Defines): string {
  const out: string[] = [];
  const stack: { active: boolean; parentActive: boolean; line: number }[] = [];
  let active = true;
  const lines = source.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const m = /^#(if|else|endif)\b\s*(!?)\s*([A-Za-z_][A-Za-z0-9_]*)?\s*$/.exec(line);
    if (!m) {
      if (line.startsWith("#")) {
        throw new TnlError("internal", `${name}.wgsl:${i + 1}: unknown directive '${line}'`);
      }
      if (active) {
        out.push(
          raw.replace(/\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}/g, (_, key: string) => {
            if (!(key in defines)) {
              throw new TnlError("internal", `${name}.wgsl:${i + 1}: '${key}' is not defined`);
            }
            return String(defines[key]);
          }),
        );
      }
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
  return out.join("\n");
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
