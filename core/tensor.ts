// A small GPU tensor: a buffer (or a range of one), a shape and a dtype. Row-major, contiguous.

import { TnlError } from "./errors.ts";
import { alignDown, alignUp, type BufferRange, formatBytes, type Gpu } from "./gpu.ts";

export type DType = "f32" | "f16" | "i32" | "u32";
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** A bound range of a tensor: the buffer range to bind, and where the wanted elements start inside it. */
export interface TensorView extends BufferRange {
  /** Index (in elements) of the first wanted element inside the bound range. */
  base: number;
  /** Number of wanted elements. */
  count: number;
}

export type HostArray = Float32Array | Int32Array | Uint32Array | Uint16Array;

export class Tensor {
  readonly size: number;
  #owned: boolean;

  private constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly label: string,
    owned: boolean,
    /** Element offset of this tensor inside `buffer` (non-zero for parts of a larger tensor). */
    readonly offset = 0,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    this.#owned = owned;
  }

  /**
   * A tensor that is the elements [offset, offset + size) of `parent` (sharing its buffer), e.g. one weight
   * of a flat parameter buffer. Destroying it does not free the parent.
   */
  static part(parent: Tensor, offset: number, shape: readonly number[], label: string): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + size > parent.size) {
      throw new TnlError(
        "internal",
        `tensor '${label}': part [${offset}, ${
          offset + size
        }) of '${parent.label}' (${parent.size} elements)`,
      );
    }
    return new Tensor(parent.gpu, parent.buffer, shape, parent.dtype, label, false, parent.offset + offset);
  }

  /** A new zero-initialised tensor on `gpu`. */
  static empty(gpu: Gpu, shape: readonly number[], dtype: DType, label: string): Tensor {
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new TnlError("internal", `tensor '${label}': bad shape [${shape}]`);
      }
    }
    const size = shape.reduce((a, b) => a * b, 1);
    const buffer = gpu.createBuffer(size * DTYPE_BYTES[dtype], label);
    return new Tensor(gpu, buffer, shape, dtype, label, true);
  }

  /** A new tensor holding `data` (f16 data is given as its raw Uint16 bits). */
  static from(gpu: Gpu, data: HostArray, shape: readonly number[], dtype: DType, label: string): Tensor {
    const t = Tensor.empty(gpu, shape, dtype, label);
    if (data.length !== t.size) {
      t.destroy();
      throw new TnlError("internal", `tensor '${label}': ${data.length} values for shape [${shape}]`);
    }
    gpu.write(t.buffer, data);
    return t;
  }

  get bytes(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /**
   * The range to bind for elements [start, start + count): the byte offset is aligned down to the device's
   * storage-offset alignment and `base` says where `start` lies inside the range. Throws, naming the sizes,
   * when the range is over the binding limit (callers slice large tensors to fit).
   */
  view(start = 0, count = this.size - start): TensorView {
    const eb = DTYPE_BYTES[this.dtype];
    if (start < 0 || count < 0 || start + count > this.size) {
      throw new TnlError(
        "internal",
        `tensor '${this.label}': view [${start}, ${start + count}) of ${this.size}`,
      );
    }
    const align = this.gpu.limits.minStorageBufferOffsetAlignment;
    const byteStart = (this.offset + start) * eb;
    const offset = alignDown(byteStart, align);
    // Ends rounded up to 16 bytes (buffers are multiples of 16), so views can be read as vec4.
    const end = alignUp(Math.max((this.offset + start + count) * eb, byteStart + 4), 16);
    const size = Math.min(end, this.buffer.size) - offset;
    if (size > this.gpu.maxBindingBytes) {
      throw new TnlError(
        "gpu",
        `tensor '${this.label}' [${this.shape}]: a binding of ${
          formatBytes(size)
        } is over this device's limit of ` +
          `${formatBytes(this.gpu.maxBindingBytes)} (maxStorageBufferBindingSize)`,
      );
    }
    return { buffer: this.buffer, offset, size, base: (byteStart - offset) / eb, count };
  }

  /** Largest element count starting anywhere that always fits in one binding (for slicing loops). */
  maxViewElements(): number {
    const eb = DTYPE_BYTES[this.dtype];
    return Math.floor((this.gpu.maxBindingBytes - this.gpu.limits.minStorageBufferOffsetAlignment) / eb);
  }

  /** Reads the tensor back (a GPU round trip: never in a hot loop). */
  async read(): Promise<HostArray> {
    const eb = DTYPE_BYTES[this.dtype];
    const first = this.offset * eb;
    const from = first - (first % 4); // copies start at multiples of 4 bytes
    const raw = (await this.gpu.read(this.buffer, from, alignUp(first + this.bytes, 4) - from)).slice(
      first - from,
      first - from + this.bytes,
    );
    switch (this.dtype) {
      case "f32":
        return new Float32Array(raw);
      case "i32":
        return new Int32Array(raw);
      case "u32":
        return new Uint32Array(raw);
      case "f16":
        return new Uint16Array(raw);
    }
  }

  async readF32(): Promise<Float32Array> {
    if (this.dtype !== "f32") {
      throw new TnlError("internal", `tensor '${this.label}' is ${this.dtype}, not f32`);
    }
    return (await this.read()) as Float32Array;
  }

  write(data: HostArray): void {
    if (data.length !== this.size) {
      throw new TnlError(
        "internal",
        `tensor '${this.label}': writing ${data.length} values into ${this.size}`,
      );
    }
    if ((this.offset * DTYPE_BYTES[this.dtype]) % 4 !== 0) {
      throw new TnlError("internal", `tensor '${this.label}': writes must start at a multiple of 4 bytes`);
    }
    this.gpu.write(this.buffer, data, this.offset * DTYPE_BYTES[this.dtype]);
  }

  destroy(): void {
    if (this.#owned) this.gpu.destroyBuffer(this.buffer);
    this.#owned = false;
  }
}
