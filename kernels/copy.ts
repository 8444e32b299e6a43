// Device copy (copy.wgsl): dst = src for f32 tensors with 16-byte accesses, and the device-copy bandwidth
// probe of `tnl bench` built on it (the memory ceiling of a run); the f32 → f16 conversion (convert.wgsl).
// Tensors beyond one storage binding are processed in pieces.

import type { BenchCase } from "../core/bench.ts";
import { TnlError } from "../core/errors.ts";
import type { Gpu, Step } from "../core/gpu.ts";
import { Tensor } from "../core/tensor.ts";
import { fillRandom } from "./elementwise.ts";
import { cachedDef, forChunks, grid1d, packParams } from "./wgsl.ts";
import source from "./copy.wgsl" with { type: "text" };
import convertSource from "./convert.wgsl" with { type: "text" };

function def() {
  return cachedDef(
    "copy",
    () => ({ name: "copy", code: source, bindings: ["read", "rw"], paramBytes: 4 * 4 }),
  );
}

/** dst = src (f32, same size; both start at a multiple of 4 elements inside their buffers). */
export function copyTensor(step: Step, src: Tensor, dst: Tensor): void {
  if (src.size !== dst.size || src.dtype !== "f32" || dst.dtype !== "f32") {
    throw new TnlError(
      "internal",
      `copy: '${src.label}' (${src.size} ${src.dtype}) to '${dst.label}' (${dst.size} ${dst.dtype})`,
    );
  }
  if (src.offset % 4 !== 0 || dst.offset % 4 !== 0) {
    throw new TnlError(
      "internal",
      `copy: '${src.label}' at element ${src.offset}, '${dst.label}' at ${dst.offset}: need multiples of 4`,
    );
  }
  const kernel = step.gpu.kernel(def());
  const chunk = Math.floor(Math.min(src.maxViewElements(), dst.maxViewElements()) / 4) * 4;
  forChunks(src.size, chunk, (start, n) => {
    const vs = src.view(start, n), vd = dst.view(start, n);
    const params = packParams([[n, "u32"], [vs.base / 4, "u32"], [vd.base / 4, "u32"], [0, "u32"]]);
    step.dispatch(kernel, [vs, vd], params, grid1d(Math.ceil(n / 4 / 256)));
  });
}

/**
 * dst = src rounded to f16 (nearest, ties to even: core/half.ts), for an f32 tensor and an f16 tensor of the
 * same even size, dst starting at an even element of its buffer.
 */
export function convertToF16(step: Step, src: Tensor, dst: Tensor): void {
  if (src.size !== dst.size || src.dtype !== "f32" || dst.dtype !== "f16" || src.size % 2 !== 0) {
    throw new TnlError(
      "internal",
      `f16 conversion: '${src.label}' (${src.size} ${src.dtype}) to '${dst.label}' (${dst.size} ${dst.dtype}): ` +
        "needs f32 to f16 of one even size",
    );
  }
  if (dst.offset % 2 !== 0) {
    throw new TnlError(
      "internal",
      `f16 conversion: '${dst.label}' starts at element ${dst.offset}, not even`,
    );
  }
  const kernel = step.gpu.kernel(cachedDef(
    "convert-f16",
    () => ({ name: "convert-f16", code: convertSource, bindings: ["read", "rw"], paramBytes: 4 * 4 }),
  ));
  const chunk = Math.floor(Math.min(src.maxViewElements(), dst.maxViewElements()) / 4) * 4;
  forChunks(src.size, chunk, (start, n) => {
    const vs = src.view(start, n), vd = dst.view(start, n);
    const params = packParams([[n / 2, "u32"], [vs.base, "u32"], [vd.base / 2, "u32"], [0, "u32"]]);
    step.dispatch(kernel, [vs, vd], params, grid1d(Math.ceil(n / 2 / 256)));
  });
}

/**
 * Copy bandwidth probe of `gpu`: one buffer copied into another, large enough to leave the caches of the
 * device (256 MiB; 16 MiB with --quick; at most the binding limit). GB/s counts the bytes read and written.
 */
export function deviceCopyProbe(gpu: Gpu): BenchCase {
  const limit = Math.floor(gpu.maxBindingBytes / 2 ** 20) * 2 ** 20;
  return {
    name: "device-copy",
    group: "kernels",
    shapes: (quick) => [{ bytes: Math.min((quick ? 16 : 256) * 2 ** 20, limit) }],
    setup(gpu, shape) {
      const n = Number(shape.bytes) / 4;
      const src = Tensor.empty(gpu, [n], "f32", "copy probe src");
      const dst = Tensor.empty(gpu, [n], "f32", "copy probe dst");
      gpu.run("copy probe input", (step) => fillRandom(step, src, 41));
      return {
        encode: (step) => copyTensor(step, src, dst),
        bytes: 2 * 4 * n,
        dispose: () => [src, dst].forEach((t) => t.destroy()),
      };
    },
  };
}
