// The one WebGPU wrapper of tnl: opens the device with explicit limits and optional features, turns every
// WebGPU error into a TnlError naming the kernel or buffer, caches pipelines, bind groups and layouts,
// pools buffers, and encodes many dispatches into one compute pass and one submit (`Step`).
//
// Facts this rests on (measured with Deno 2.9.6 / wgpu): a dispatch inside an open pass costs ~1.4 us of
// CPU, a new pass ~33 us, a submit ~0.2 ms, a readback ~11 ms; `queue.writeBuffer` takes effect before the
// whole submit, so per-dispatch parameters live at their own offsets of a uniform arena (dynamic offsets).
// A validation error silently voids a whole command buffer, so dispatches are checked here before encoding.

import { TnlError } from "./errors.ts";

export type AdapterChoice = "high-performance" | "low-power" | "fallback";
export const ADAPTER_CHOICES: readonly AdapterChoice[] = ["high-performance", "low-power", "fallback"];

/** Optional device features tnl uses when the adapter grants them; every kernel also runs without them. */
export type OptionalFeature = "timestamp-query" | "shader-f16" | "subgroups";
export const OPTIONAL_FEATURES: readonly OptionalFeature[] = ["timestamp-query", "shader-f16", "subgroups"];

export interface GpuOptions {
  /** Adapter preference; default: $TNL_ADAPTER, else high-performance. */
  adapter?: AdapterChoice;
  /** Features not to request even if available (e.g. to exercise fallback paths). */
  disable?: OptionalFeature[];
  /** The navigator.gpu to use (tests inject adapters through this). */
  gpu?: Pick<GPU, "requestAdapter">;
  /** Lower the storage-binding limit tnl plans with (tests use it to exercise slicing). */
  maxBindingBytes?: number;
  /** Override the loop-iteration limit tnl plans with (tests check both the limited and the unlimited paths). */
  loopLimit?: number;
}

export interface AdapterFacts {
  description: string;
  vendor: string;
  architecture: string;
  device: string;
  fallback: boolean;
  subgroupMinSize: number | null;
  subgroupMaxSize: number | null;
  /** `DENO_WEBGPU_BACKEND` when set (WebGPU does not expose the backend). */
  backend: string | null;
}

/** The limits tnl requests (the adapter's own values) and plans with. */
export interface DeviceLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
  maxComputeWorkgroupSizeZ: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  maxUniformBufferBindingSize: number;
  minStorageBufferOffsetAlignment: number;
  minUniformBufferOffsetAlignment: number;
  maxBindGroups: number;
}
const LIMIT_KEYS: (keyof DeviceLimits)[] = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
  "maxBindGroups",
];

export const NO_ADAPTER_HELP =
  "install a GPU driver (Vulkan, Metal or D3D12), or Mesa's software Vulkan driver " +
  "(Debian/Ubuntu: apt-get install -y mesa-vulkan-drivers)";

/** A kernel: one WGSL compute entry point with explicit bindings. */
export interface KernelDef {
  /** Shown in every error about this kernel. */
  name: string;
  code: string;
  entry?: string;
  /**
   * Storage bindings of `@group(0)` in binding order: "read" for `var<storage, read>`, "rw" for
   * `var<storage, read_write>`.
   */
  bindings: readonly ("read" | "rw")[];
  /** Bytes of the `@group(1) @binding(0) var<uniform>` parameter struct; 0 or absent = no parameters. */
  paramBytes?: number;
}

/** A byte range of a buffer bound to one storage binding. */
export interface BufferRange {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** A compiled kernel (pipeline + layouts), cached per (definition, constants). */
export class Kernel {
  constructor(
    readonly def: KernelDef,
    readonly label: string,
    readonly pipeline: GPUComputePipeline,
    readonly storageLayout: GPUBindGroupLayout,
    readonly storageSignature: string,
    readonly paramLayout: GPUBindGroupLayout | null,
    readonly paramSize: number,
  ) {}
}

type Pending = { what: string; errors: Promise<GPUError | null>[] };

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export class Gpu {
  readonly device: GPUDevice;
  readonly adapter: AdapterFacts;
  /** Which optional features the device got. */
  readonly features: Record<OptionalFeature, boolean>;
  /** Why an optional feature is off ("not offered", "refused: ...", "disabled"). */
  readonly featureNotes: Partial<Record<OptionalFeature, string>>;
  readonly limits: DeviceLimits;
  /** Largest storage binding tnl plans with (≤ the device limit; multiple of 4). */
  readonly maxBindingBytes: number;
  /**
   * Most loop iterations one invocation may run, all loops together. Mesa's llvmpipe (the lavapipe and GL
   * software adapters) silently leaves loops after 65535 iterations per invocation (measured with Mesa
   * 22.3: docs/webgpu.md); dispatchers split longer work across dispatches. Infinity elsewhere.
   */
  readonly loopLimit: number;
  /** Mesa's llvmpipe (lavapipe, the GL software adapter): the GPU is the CPU, and compiles are slow. */
  readonly software: boolean;

  #lost: GPUDeviceLostInfo | null = null;
  #closing = false;
  #firstError: TnlError | null = null;
  #pending: Pending[] = [];
  #kernels = new Map<string, Kernel>();
  #layouts = new Map<string, GPUBindGroupLayout>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #bindGroupsOfBuffer = new Map<number, string[]>();
  #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextBufferId = 1;
  #destroyed = new WeakSet<GPUBuffer>();
  #pool = new Map<string, GPUBuffer[]>();
  #openStep: Step | null = null;
  #arena: ParamArena | null = null;
  liveBytes = 0;
  peakBytes = 0;

  constructor(
    device: GPUDevice,
    adapter: AdapterFacts,
    features: Record<OptionalFeature, boolean>,
    featureNotes: Partial<Record<OptionalFeature, string>>,
    maxBindingBytes?: number,
    loopLimit?: number,
  ) {
    this.device = device;
    this.adapter = adapter;
    this.features = features;
    this.featureNotes = featureNotes;
    const lim = {} as DeviceLimits;
    for (const k of LIMIT_KEYS) lim[k] = Number(device.limits[k]);
    this.limits = lim;
    const deviceMax = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    this.maxBindingBytes = Math.floor(Math.min(deviceMax, maxBindingBytes ?? Infinity) / 4) * 4;
    this.software = /llvmpipe/i.test(adapter.description);
    this.loopLimit = loopLimit ?? (this.software ? 65535 : Infinity);
    device.addEventListener("uncapturederror", (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.#record(new TnlError("gpu", `GPU error: ${squash(err.message)}`));
    });
    device.lost.then((info) => {
      this.#lost = info;
      if (!this.#closing) {
        this.#record(
          new TnlError("gpu", `GPU device lost (${info.reason}): ${squash(info.message) || "no detail"}`),
        );
      }
    });
  }

  // ---------------------------------------------------------------- errors

  #record(err: TnlError): void {
    if (!this.#firstError) this.#firstError = err;
  }

  /** @internal Forgets recorded errors: only for probes whose failure just switches a feature off. */
  _forgetErrors(): void {
    this.#firstError = null;
    this.#pending = [];
  }

  /** Throws the first GPU error seen so far, or if the device is lost (synchronous, no GPU wait). */
  check(): void {
    if (this.#firstError) throw this.#firstError;
    if (this.#lost && !this.#closing) {
      throw new TnlError("gpu", `GPU device lost (${this.#lost.reason}): ${squash(this.#lost.message)}`);
    }
  }

  /** Resolves the error scopes of everything submitted so far and throws the first error (no GPU wait). */
  async sync(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) {
      for (const e of await Promise.all(p.errors)) {
        if (e) this.#record(new TnlError("gpu", `GPU error in ${p.what}: ${squash(e.message)}`));
      }
    }
    this.check();
  }

  /** Runs `fn` inside validation + out-of-memory error scopes; errors surface at the next sync(). */
  scoped<T>(what: string, fn: () => T): T {
    this.device.pushErrorScope("validation");
    this.device.pushErrorScope("out-of-memory");
    try {
      return fn();
    } finally {
      const oom = this.device.popErrorScope();
      const validation = this.device.popErrorScope();
      this.#pending.push({ what, errors: [oom, validation] });
    }
  }

  /** Waits until the GPU has finished all submitted work (costs ~11 ms in Deno: not for hot loops). */
  async idle(): Promise<void> {
    this.check();
    await this.device.queue.onSubmittedWorkDone();
    await this.sync();
  }

  close(): void {
    this.#closing = true;
    this.device.destroy();
  }

  // ---------------------------------------------------------------- kernels

  /**
   * The pipeline for `def` with WGSL `override` constants `constants`, compiled once and cached. Compile
   * errors surface at the next sync() (or check()) naming the kernel.
   */
  kernel(def: KernelDef, constants: Record<string, number | boolean> = {}): Kernel {
    const constKeys = Object.keys(constants).sort();
    const label = constKeys.length
      ? `${def.name}[${constKeys.map((k) => `${k}=${constants[k]}`).join(",")}]`
      : def.name;
    const cacheKey = `${label}\u0000${def.code.length}\u0000${def.entry ?? "main"}`;
    const cached = this.#kernels.get(cacheKey);
    if (cached && cached.def === def) return cached;
    if (def.bindings.length > this.limits.maxStorageBuffersPerShaderStage) {
      throw new TnlError(
        "gpu",
        `kernel '${def.name}' needs ${def.bindings.length} storage bindings; this device allows ` +
          `${this.limits.maxStorageBuffersPerShaderStage} (maxStorageBuffersPerShaderStage)`,
      );
    }
    const storageSignature = def.bindings.map((b) => (b === "rw" ? "w" : "r")).join("");
    const storageLayout = this.#layout(`s:${storageSignature}`, () => ({
      label: `storage ${storageSignature}`,
      entries: def.bindings.map((b, i) => ({
        binding: i,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b === "rw" ? "storage" : "read-only-storage" },
      })),
    }));
    const paramSize = def.paramBytes ? alignUp(def.paramBytes, 16) : 0;
    const paramLayout = paramSize
      ? this.#layout(`u:${paramSize}`, () => ({
        label: `params ${paramSize}`,
        entries: [{
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: paramSize },
        }],
      }))
      : null;
    const pipeline = this.scoped(`kernel '${label}' (compiling its WGSL)`, () => {
      const module = this.device.createShaderModule({ label, code: def.code });
      const bindGroupLayouts = paramLayout ? [storageLayout, paramLayout] : [storageLayout];
      return this.device.createComputePipeline({
        label,
        layout: this.device.createPipelineLayout({ label, bindGroupLayouts }),
        compute: {
          module,
          entryPoint: def.entry ?? "main",
          constants: Object.fromEntries(Object.entries(constants).map(([k, v]) => [k, Number(v)])),
        },
      });
    });
    const k = new Kernel(def, label, pipeline, storageLayout, storageSignature, paramLayout, paramSize);
    this.#kernels.set(cacheKey, k);
    return k;
  }

  #layout(key: string, make: () => GPUBindGroupLayoutDescriptor): GPUBindGroupLayout {
    let l = this.#layouts.get(key);
    if (!l) {
      l = this.device.createBindGroupLayout(make());
      this.#layouts.set(key, l);
    }
    return l;
  }

  /** Cached bind group of `kernel`'s storage bindings. */
  storageBindGroup(kernel: Kernel, ranges: readonly BufferRange[]): GPUBindGroup {
    const ids = ranges.map((r) => this.bufferId(r.buffer));
    const key = `${kernel.storageSignature}|${
      ranges.map((r, i) => `${ids[i]}:${r.offset}:${r.size}`).join("|")
    }`;
    let bg = this.#bindGroups.get(key);
    if (!bg) {
      bg = this.device.createBindGroup({
        label: kernel.label,
        layout: kernel.storageLayout,
        entries: ranges.map((r, i) => ({
          binding: i,
          resource: { buffer: r.buffer, offset: r.offset, size: r.size },
        })),
      });
      this.#bindGroups.set(key, bg);
      for (const id of new Set(ids)) {
        const keys = this.#bindGroupsOfBuffer.get(id) ?? [];
        keys.push(key);
        this.#bindGroupsOfBuffer.set(id, keys);
      }
    }
    return bg;
  }

  // ---------------------------------------------------------------- buffers

  bufferId(buffer: GPUBuffer): number {
    let id = this.#bufferIds.get(buffer);
    if (id === undefined) {
      id = this.#nextBufferId++;
      this.#bufferIds.set(buffer, id);
    }
    return id;
  }

  isDestroyed(buffer: GPUBuffer): boolean {
    return this.#destroyed.has(buffer);
  }

  /** A new buffer; the size is checked against the device limits first (never by trying to allocate). */
  createBuffer(bytes: number, label: string, usage = STORAGE_USAGE): GPUBuffer {
    this.check();
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new TnlError("internal", `buffer '${label}': invalid size ${bytes}`);
    }
    // Multiples of 16 bytes, so any tensor can be bound as array<vec4<f32>>.
    const size = Math.max(16, alignUp(bytes, 16));
    if (size > this.limits.maxBufferSize) {
      throw new TnlError(
        "gpu",
        `buffer '${label}' needs ${formatBytes(size)}; this device allows at most ${
          formatBytes(this.limits.maxBufferSize)
        } per buffer (maxBufferSize)`,
      );
    }
    const buffer = this.scoped(
      `creating buffer '${label}' (${formatBytes(size)})`,
      () => this.device.createBuffer({ label, size, usage }),
    );
    this.liveBytes += size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    return buffer;
  }

  destroyBuffer(buffer: GPUBuffer): void {
    if (this.#destroyed.has(buffer)) return;
    this.#destroyed.add(buffer);
    this.liveBytes -= buffer.size;
    const id = this.#bufferIds.get(buffer);
    if (id !== undefined) {
      for (const key of this.#bindGroupsOfBuffer.get(id) ?? []) this.#bindGroups.delete(key);
      this.#bindGroupsOfBuffer.delete(id);
    }
    buffer.destroy();
  }

  /**
   * A storage buffer of at least `bytes` from the pool (size classes of 2^k and 1.5·2^k bytes, so reuse
   * wastes at most a third). Give it back with `release`.
   */
  acquire(bytes: number, label: string, usage = STORAGE_USAGE): GPUBuffer {
    const size = poolSizeClass(Math.max(16, bytes));
    const free = this.#pool.get(`${usage}:${size}`);
    const reused = free?.pop();
    if (reused) return reused;
    return this.createBuffer(size, label, usage);
  }

  release(buffer: GPUBuffer): void {
    if (this.#destroyed.has(buffer)) return;
    const key = `${buffer.usage}:${buffer.size}`;
    const free = this.#pool.get(key) ?? [];
    free.push(buffer);
    this.#pool.set(key, free);
  }

  /** Destroys every pooled (released) buffer. */
  trimPool(): void {
    for (const free of this.#pool.values()) for (const b of free) this.destroyBuffer(b);
    this.#pool.clear();
  }

  resetPeak(): void {
    this.peakBytes = this.liveBytes;
  }

  /** Copies host data into `buffer` at `offset` (takes effect before the next submit's work). */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.check();
    if (offset + data.byteLength > buffer.size) {
      throw new TnlError(
        "internal",
        `write to buffer '${buffer.label}': ${data.byteLength} bytes at ${offset} exceed its ${buffer.size} bytes`,
      );
    }
    if (data.byteLength === 0) return; // Deno's writeBuffer panics on empty data
    const padded = data.byteLength % 4 === 0 ? data : padTo4(data);
    this.device.queue.writeBuffer(
      buffer,
      offset,
      padded.buffer as ArrayBuffer,
      padded.byteOffset,
      padded.byteLength,
    );
  }

  /**
   * Reads `bytes` bytes at `offset` of `buffer` back to the host. Costs a GPU round trip (~11 ms in Deno):
   * never call it inside a hot loop.
   */
  async read(buffer: GPUBuffer, offset = 0, bytes = buffer.size - offset): Promise<ArrayBuffer> {
    this.check();
    if (this.#openStep) throw new TnlError("internal", "read() while a step is still open: submit it first");
    const size = alignUp(bytes, 4);
    const staging = this.acquire(size, "readback staging", GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.scoped(`reading back buffer '${buffer.label}'`, () => {
      const enc = this.device.createCommandEncoder({ label: "readback" });
      enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
    });
    await this.sync();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, size);
    } catch (e) {
      // A lost device fails the mapping first and reports the loss a moment later: say which it was.
      await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 50))]);
      this.check();
      throw new TnlError("gpu", `reading back buffer '${buffer.label}' failed: ${squash(String(e))}`);
    }
    const out = staging.getMappedRange(0, size).slice(0, bytes);
    staging.unmap();
    this.release(staging);
    return out;
  }

  // ---------------------------------------------------------------- steps

  /** Starts a step: many dispatches in one compute pass, one submit. Only one step may be open at a time. */
  step(label: string, passOptions?: { timestampWrites?: GPUComputePassTimestampWrites }): Step {
    this.check();
    if (this.#openStep) {
      throw new TnlError(
        "internal",
        `step '${label}' started while step '${this.#openStep.label}' is open: submit or abandon it first`,
      );
    }
    this.#arena ??= new ParamArena(this);
    const s = new Step(this, label, this.#arena, passOptions);
    this.#openStep = s;
    return s;
  }

  /** Encodes one step with `encode` and submits it; an exception while encoding drops the step. */
  run(label: string, encode: (step: Step) => void): void {
    const s = this.step(label);
    try {
      encode(s);
    } catch (e) {
      s.abandon();
      throw e;
    }
    s.submit();
  }

  /** @internal called by Step */
  _stepClosed(s: Step): void {
    if (this.#openStep === s) this.#openStep = null;
  }

  /** @internal called by Step on submit */
  _track(p: Pending): void {
    this.#pending.push(p);
  }
}

/**
 * Parameters of every dispatch of a step live at their own aligned offsets of uniform buffers ("chunks"),
 * written once at submit. Chunks are reused by later steps: queue order makes that safe.
 */
class ParamArena {
  readonly stride: number;
  readonly chunkBytes = 1 << 20;
  readonly chunks: {
    buffer: GPUBuffer;
    host: Uint8Array;
    bindGroups: Map<number, GPUBindGroup>;
    used: number;
  }[] = [];
  current = 0;
  constructor(readonly gpu: Gpu) {
    this.stride = gpu.limits.minUniformBufferOffsetAlignment;
  }
  /** Appends a parameter block; returns the bind group and dynamic offset to use. */
  push(data: Uint8Array, kernel: Kernel): [GPUBindGroup, number] {
    let chunk = this.chunks[this.current];
    if (chunk && chunk.used + kernel.paramSize > this.chunkBytes) chunk = this.chunks[++this.current];
    if (!chunk) {
      chunk = {
        buffer: this.gpu.createBuffer(
          this.chunkBytes,
          `param arena ${this.chunks.length}`,
          GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        ),
        host: new Uint8Array(this.chunkBytes),
        bindGroups: new Map(),
        used: 0,
      };
      this.chunks.push(chunk);
    }
    const offset = chunk.used;
    chunk.host.set(data, offset);
    chunk.host.fill(0, offset + data.byteLength, offset + kernel.paramSize);
    chunk.used = alignUp(offset + kernel.paramSize, this.stride);
    let bg = chunk.bindGroups.get(kernel.paramSize);
    if (!bg) {
      bg = this.gpu.device.createBindGroup({
        label: `params ${kernel.paramSize}`,
        layout: kernel.paramLayout!,
        entries: [{ binding: 0, resource: { buffer: chunk.buffer, offset: 0, size: kernel.paramSize } }],
      });
      chunk.bindGroups.set(kernel.paramSize, bg);
    }
    return [bg, offset];
  }
  /** Uploads the blocks of the step being submitted and empties the arena for the next step. */
  flush(): void {
    for (const c of this.chunks) {
      if (c.used > 0) this.gpu.device.queue.writeBuffer(c.buffer, 0, c.host.buffer as ArrayBuffer, 0, c.used);
      c.used = 0;
    }
    this.current = 0;
  }
  /** Forgets the blocks of an abandoned step. */
  reset(): void {
    for (const c of this.chunks) c.used = 0;
    this.current = 0;
  }
}

/** One dispatch as a kernel and its inputs, before it is encoded. */
export interface DispatchCall {
  kernel: Kernel;
  ranges: readonly BufferRange[];
  params: ArrayBufferView | null;
  grid: readonly [number, number?, number?];
}

/**
 * Dynamic offsets go through setBindGroup's typed-array form: Deno converts it at a quarter of the host cost
 * of an array (an empty one panics, so bind groups without offsets keep the plain form).
 */
const ONE_OFFSET = new Uint32Array(1);

/**
 * Dispatches checked and bound once, for work encoded the same way many times (a decode round): their
 * parameter blocks live in a uniform buffer of their own, so `Step.replay` costs four encoder calls per
 * dispatch instead of Step.dispatch's checks, cache lookups and parameter copies.
 */
export class DispatchPlan {
  readonly items: {
    kernel: Kernel;
    storage: GPUBindGroup;
    params: GPUBindGroup | null;
    grid: [number, number, number];
  }[] = [];
  /** Each item's dynamic offset into the parameter buffer, for setBindGroup's typed-array form (ONE_OFFSET). */
  readonly offsets: Uint32Array;
  readonly #buffers: GPUBuffer[];
  #paramBuffer: GPUBuffer | null = null;
  #destroyed = false;

  constructor(readonly gpu: Gpu, readonly label: string, calls: readonly DispatchCall[]) {
    const stride = gpu.limits.minUniformBufferOffsetAlignment;
    const checked = calls.map((c) => checkDispatch(gpu, c.kernel, c.ranges, c.params, c.grid));
    let bytes = 0;
    const offsets = calls.map((c) => {
      const at = bytes;
      if (c.kernel.paramSize) bytes = alignUp(at + c.kernel.paramSize, stride);
      return at;
    });
    const host = new Uint8Array(bytes);
    if (bytes > 0) {
      this.#paramBuffer = gpu.createBuffer(
        bytes,
        `plan ${label} params`,
        GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      );
    }
    const paramGroups = new Map<number, GPUBindGroup>();
    const kept: number[] = []; // the offsets of the calls that became items (empty grids are dropped)
    calls.forEach((c, i) => {
      const [x, y, z] = checked[i];
      if (x === 0 || y === 0 || z === 0) return;
      let params: GPUBindGroup | null = null;
      if (c.kernel.paramSize && c.params) {
        host.set(new Uint8Array(c.params.buffer, c.params.byteOffset, c.params.byteLength), offsets[i]);
        params = paramGroups.get(c.kernel.paramSize) ?? null;
        if (!params) {
          params = gpu.device.createBindGroup({
            label: `plan ${label} params ${c.kernel.paramSize}`,
            layout: c.kernel.paramLayout!,
            entries: [{
              binding: 0,
              resource: { buffer: this.#paramBuffer!, offset: 0, size: c.kernel.paramSize },
            }],
          });
          paramGroups.set(c.kernel.paramSize, params);
        }
      }
      this.items.push({
        kernel: c.kernel,
        storage: gpu.storageBindGroup(c.kernel, c.ranges),
        params,
        grid: [x, y, z],
      });
      kept.push(offsets[i]);
    });
    if (this.#paramBuffer) gpu.device.queue.writeBuffer(this.#paramBuffer, 0, host, 0, bytes);
    this.#buffers = [...new Set(calls.flatMap((c) => c.ranges.map((r) => r.buffer)))];
    this.offsets = Uint32Array.from(kept);
  }

  /** Throws if a buffer the plan binds was destroyed since (or the plan itself). */
  checkAlive(): void {
    if (this.#destroyed) throw new TnlError("internal", `dispatch plan '${this.label}' was destroyed`);
    for (const b of this.#buffers) {
      if (this.gpu.isDestroyed(b)) {
        throw new TnlError("internal", `dispatch plan '${this.label}': buffer '${b.label}' was destroyed`);
      }
    }
  }

  destroy(): void {
    if (this.#paramBuffer) this.gpu.destroyBuffer(this.#paramBuffer);
    this.#paramBuffer = null;
    this.#destroyed = true;
  }
}

/** Dispatches per timestamp query set of a profiled step (WebGPU allows 4096 queries per set). */
const PROFILE_SET_DISPATCHES = 2048;

interface StepProfile {
  sets: { set: GPUQuerySet; buffer: GPUBuffer }[];
  kernels: string[];
}

/** Dispatches of one step: one compute pass (or a few, for timing), one submit. */
export class Step {
  readonly #encoder: GPUCommandEncoder;
  #pass: GPUComputePassEncoder | null;
  readonly #kernels: string[] = [];
  #done = false;
  #profile: StepProfile | null = null;

  constructor(
    readonly gpu: Gpu,
    readonly label: string,
    readonly arena: ParamArena,
    passOptions?: { timestampWrites?: GPUComputePassTimestampWrites },
  ) {
    this.#encoder = gpu.device.createCommandEncoder({ label });
    this.#pass = this.#encoder.beginComputePass({ label, ...passOptions });
  }

  /** Ends the current pass and opens another (used by benchmarks to time passes separately). */
  newPass(passOptions?: { timestampWrites?: GPUComputePassTimestampWrites }): void {
    this.#open().end();
    this.#pass = this.#encoder.beginComputePass({ label: this.label, ...passOptions });
  }

  /**
   * From now on every dispatch gets a pass of its own with timestamps at its start and end (profiling: the
   * passes serialise the dispatches, so the sum is an upper bound of the step's time). Read the times with
   * `profileTimes()` after `submit()`.
   */
  enableProfile(): void {
    if (!this.gpu.features["timestamp-query"]) {
      throw new TnlError("usage", "profiling needs timestamp queries, which this adapter lacks");
    }
    this.#profile ??= { sets: [], kernels: [] };
  }

  /** Per dispatch: its kernel and GPU time (ms), in encoding order; resolves the step's timestamps. */
  async profileTimes(): Promise<{ kernel: string; ms: number }[]> {
    const prof = this.#profile;
    if (!prof || !this.#done) throw new TnlError("internal", "profileTimes: a submitted, profiled step only");
    const out: { kernel: string; ms: number }[] = [];
    for (let s = 0; s < prof.sets.length; s++) {
      const { set, buffer } = prof.sets[s];
      const n = Math.min(PROFILE_SET_DISPATCHES, prof.kernels.length - s * PROFILE_SET_DISPATCHES);
      const ticks = new BigInt64Array(await this.gpu.read(buffer, 0, 16 * n));
      for (let i = 0; i < n; i++) {
        out.push({
          kernel: prof.kernels[s * PROFILE_SET_DISPATCHES + i],
          ms: Number(ticks[2 * i + 1] - ticks[2 * i]) / 1e6,
        });
      }
      set.destroy();
      this.gpu.destroyBuffer(buffer);
    }
    prof.sets.length = 0;
    return out;
  }

  #open(): GPUComputePassEncoder {
    if (this.#done || !this.#pass) {
      throw new TnlError("internal", `step '${this.label}' is already submitted`);
    }
    return this.#pass;
  }

  /**
   * Encodes one dispatch. Everything WebGPU would reject later (silently voiding the whole step) is
   * checked here first and thrown naming the kernel: grid size, binding count, size, alignment, usage,
   * range and writable aliasing, and the parameter block size.
   */
  dispatch(
    kernel: Kernel,
    ranges: readonly BufferRange[],
    params: ArrayBufferView | null,
    grid: readonly [number, number?, number?],
  ): void {
    let pass = this.#open();
    const gpu = this.gpu;
    const name = kernel.label;
    const [x, y, z] = checkDispatch(gpu, kernel, ranges, params, grid);
    if (x === 0 || y === 0 || z === 0) return;
    if (this.#profile) pass = this.#profiledPass(name);
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, gpu.storageBindGroup(kernel, ranges));
    if (kernel.paramSize && params) {
      const bytes = new Uint8Array(params.buffer, params.byteOffset, params.byteLength);
      const [bindGroup, offset] = this.arena.push(bytes, kernel);
      ONE_OFFSET[0] = offset; // read during the call
      pass.setBindGroup(1, bindGroup, ONE_OFFSET, 0, 1);
    }
    pass.dispatchWorkgroups(x, y, z);
    this.#kernels.push(name);
  }

  /** Encodes the dispatches of a prepared plan (checked and bound once: four encoder calls each). */
  replay(plan: DispatchPlan): void {
    let pass = this.#open();
    plan.checkAlive();
    const items = plan.items;
    for (let i = 0; i < items.length; i++) {
      const d = items[i];
      if (this.#profile) pass = this.#profiledPass(d.kernel.label);
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.storage);
      if (d.params) pass.setBindGroup(1, d.params, plan.offsets, i, 1);
      pass.dispatchWorkgroups(d.grid[0], d.grid[1], d.grid[2]);
      this.#kernels.push(d.kernel.label);
    }
  }

  /** A new pass with timestamps for the next dispatch (profiling). */
  #profiledPass(kernel: string): GPUComputePassEncoder {
    const prof = this.#profile!;
    const i = prof.kernels.length % PROFILE_SET_DISPATCHES;
    if (i === 0) {
      const set = this.gpu.device.createQuerySet({ type: "timestamp", count: 2 * PROFILE_SET_DISPATCHES });
      const buffer = this.gpu.createBuffer(
        16 * PROFILE_SET_DISPATCHES,
        "profile timestamps",
        GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      );
      prof.sets.push({ set, buffer });
    }
    const { set } = prof.sets.at(-1)!;
    prof.kernels.push(kernel);
    this.newPass({
      timestampWrites: { querySet: set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    });
    return this.#open();
  }

  /** The kernels encoded so far (for error messages and tests). */
  get kernels(): readonly string[] {
    return this.#kernels;
  }

  /** Ends the pass and hands the step to the GPU; errors surface at the next gpu.sync()/read(). */
  submit(extra?: (encoder: GPUCommandEncoder) => void): void {
    const pass = this.#open();
    this.#done = true;
    this.gpu._stepClosed(this);
    const kernels = [...new Set(this.#kernels)];
    const what = `step '${this.label}' (kernels: ${kernels.join(", ") || "none"})`;
    const prof = this.#profile;
    this.gpu.scoped(what, () => {
      pass.end();
      prof?.sets.forEach(({ set, buffer }, s) => {
        const n = Math.min(PROFILE_SET_DISPATCHES, prof.kernels.length - s * PROFILE_SET_DISPATCHES);
        this.#encoder.resolveQuerySet(set, 0, 2 * n, buffer, 0);
      });
      extra?.(this.#encoder);
      this.arena.flush();
      this.gpu.device.queue.submit([this.#encoder.finish()]);
    });
  }

  /** Drops the step without submitting it. */
  abandon(): void {
    if (this.#done) return;
    this.#done = true;
    this.gpu._stepClosed(this);
    this.arena.reset();
    try {
      this.#pass?.end();
    } catch { /* already ended */ }
    for (const { set, buffer } of this.#profile?.sets ?? []) {
      set.destroy();
      this.gpu.destroyBuffer(buffer);
    }
  }
}

/**
 * Everything WebGPU would reject later about one dispatch (silently voiding the whole step), thrown naming
 * the kernel; returns the grid with its defaults.
 */
function checkDispatch(
  gpu: Gpu,
  kernel: Kernel,
  ranges: readonly BufferRange[],
  params: ArrayBufferView | null,
  grid: readonly [number, number?, number?],
): [number, number, number] {
  const name = kernel.label;
  const [x, y = 1, z = 1] = grid;
  const maxWg = gpu.limits.maxComputeWorkgroupsPerDimension;
  for (const [axis, v] of [["x", x], ["y", y], ["z", z]] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new TnlError("gpu", `kernel '${name}': workgroup count ${axis} = ${v}`);
    }
    if (v > maxWg) {
      throw new TnlError(
        "gpu",
        `kernel '${name}': workgroup count ${axis} = ${v} exceeds the device limit ${maxWg} ` +
          `(maxComputeWorkgroupsPerDimension)`,
      );
    }
  }
  checkRanges(gpu, kernel, ranges);
  if (kernel.paramSize) {
    if (!params) throw new TnlError("internal", `kernel '${name}': missing its parameter block`);
    if (params.byteLength > kernel.paramSize) {
      throw new TnlError(
        "internal",
        `kernel '${name}': parameter block of ${params.byteLength} bytes, declared ${kernel.paramSize}`,
      );
    }
  } else if (params && params.byteLength) {
    throw new TnlError("internal", `kernel '${name}' takes no parameters`);
  }
  return [x, y, z];
}

function checkRanges(gpu: Gpu, kernel: Kernel, ranges: readonly BufferRange[]): void {
  const name = kernel.label;
  const kinds = kernel.def.bindings;
  if (ranges.length !== kinds.length) {
    throw new TnlError(
      "internal",
      `kernel '${name}': ${ranges.length} bindings given, it declares ${kinds.length}`,
    );
  }
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  ranges.forEach((r, i) => {
    const what = `kernel '${name}', binding ${i} (buffer '${r.buffer.label}')`;
    if (gpu.isDestroyed(r.buffer)) throw new TnlError("internal", `${what}: the buffer was destroyed`);
    if ((r.buffer.usage & GPUBufferUsage.STORAGE) === 0) {
      throw new TnlError("internal", `${what}: the buffer lacks STORAGE usage`);
    }
    if (r.offset % align !== 0) {
      throw new TnlError("internal", `${what}: offset ${r.offset} is not a multiple of ${align}`);
    }
    if (r.size <= 0 || r.size % 4 !== 0) {
      throw new TnlError("internal", `${what}: size ${r.size} must be a positive multiple of 4`);
    }
    if (r.offset + r.size > r.buffer.size) {
      throw new TnlError(
        "internal",
        `${what}: range ${r.offset}+${r.size} exceeds the buffer's ${r.buffer.size} bytes`,
      );
    }
    if (r.size > gpu.limits.maxStorageBufferBindingSize) {
      throw new TnlError(
        "gpu",
        `${what}: binds ${formatBytes(r.size)}; this device binds at most ` +
          `${formatBytes(gpu.limits.maxStorageBufferBindingSize)} (maxStorageBufferBindingSize)`,
      );
    }
  });
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (kinds[i] !== "rw" && kinds[j] !== "rw") continue;
      const a = ranges[i], b = ranges[j];
      if (a.buffer === b.buffer && a.offset < b.offset + b.size && b.offset < a.offset + a.size) {
        throw new TnlError(
          "internal",
          `kernel '${name}': bindings ${i} and ${j} overlap in buffer '${a.buffer.label}' and one is writable`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------- opening the device

/**
 * Opens the GPU: the adapter by preference, its limits requested explicitly, each optional feature
 * requested when granted (subgroups even though adapters do not list it). No adapter → TnlError "no-gpu".
 */
export async function openGpu(options: GpuOptions = {}): Promise<Gpu> {
  silenceRuntimeDirWarning();
  const choice = options.adapter ?? adapterFromEnv() ?? "high-performance";
  const nav = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!nav) {
    throw new TnlError("no-gpu", `this Deno has no WebGPU (navigator.gpu is missing); ${NO_ADAPTER_HELP}`);
  }
  const adapter = choice === "fallback"
    ? await nav.requestAdapter({ forceFallbackAdapter: true })
    : await nav.requestAdapter({ powerPreference: choice });
  if (!adapter) {
    const which = choice === "fallback"
      ? "no software (fallback) WebGPU adapter found"
      : "no WebGPU adapter found";
    throw new TnlError("no-gpu", `${which}; ${NO_ADAPTER_HELP}`);
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMIT_KEYS) requiredLimits[k] = Number(adapter.limits[k]);
  const disabled = new Set(options.disable ?? []);
  const notes: Partial<Record<OptionalFeature, string>> = {};
  const wanted: OptionalFeature[] = [];
  for (const f of OPTIONAL_FEATURES) {
    if (disabled.has(f)) notes[f] = "disabled";
    // subgroups works on Vulkan when requested although adapters do not list it.
    else if (f === "subgroups" || adapter.features.has(f)) wanted.push(f);
    else notes[f] = "not offered by the adapter";
  }
  let device: GPUDevice | null = null;
  let granted: OptionalFeature[] = [];
  try {
    device = await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits });
    granted = wanted;
  } catch {
    // Some adapters refuse one of them (the GL adapter: subgroups and f16): try each on its own.
    for (const f of wanted) {
      try {
        const d = await adapter.requestDevice({ requiredFeatures: [f], requiredLimits });
        d.destroy();
        granted.push(f);
      } catch (e) {
        notes[f] = `refused: ${squash(e instanceof Error ? e.message : String(e))}`;
      }
    }
  }
  if (!device) {
    try {
      device = await adapter.requestDevice({ requiredFeatures: granted, requiredLimits });
    } catch (e) {
      throw new TnlError("gpu", `the adapter refused to open a device: ${squash(String(e))}`);
    }
  }
  const info = adapter.info;
  const facts: AdapterFacts = {
    description: info.description || "(no description)",
    vendor: info.vendor || "(unknown)",
    architecture: info.architecture || "",
    device: info.device || "",
    fallback: Boolean(info.isFallbackAdapter),
    subgroupMinSize: typeof info.subgroupMinSize === "number" ? info.subgroupMinSize : null,
    subgroupMaxSize: typeof info.subgroupMaxSize === "number" ? info.subgroupMaxSize : null,
    backend: envGet("DENO_WEBGPU_BACKEND") ?? null,
  };
  const features = Object.fromEntries(OPTIONAL_FEATURES.map((f) => [f, granted.includes(f)])) as Record<
    OptionalFeature,
    boolean
  >;
  const gpu = new Gpu(device, facts, features, notes, options.maxBindingBytes, options.loopLimit);
  if (features.subgroups && !(await subgroupsAreLinear(gpu))) {
    features.subgroups = false;
    notes.subgroups = "off: subgroups are not consecutive runs of local_invocation_index on this device";
  }
  return gpu;
}

/**
 * Reduction kernels assume subgroup i of a workgroup holds local invocations [i·size, (i+1)·size): true on
 * every known driver, but not promised by WebGPU, so it is checked once when the device opens.
 */
async function subgroupsAreLinear(gpu: Gpu): Promise<boolean> {
  const probe: KernelDef = {
    name: "subgroup-layout-probe",
    code: `
@group(0) @binding(0) var<storage, read_write> ok: array<u32>; // ok: [256] u32, 1 where the layout holds
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32,
        @builtin(subgroup_size) size: u32) {
  let first = (lid / size) * size;
  let linear = sid == lid % size && subgroupMin(lid) == first && subgroupMax(lid) == first + size - 1u;
  ok[lid] = select(0u, 1u, linear);
}`,
    bindings: ["rw"],
  };
  const out = gpu.createBuffer(256 * 4, "subgroup layout probe");
  try {
    const step = gpu.step("subgroup layout probe");
    step.dispatch(gpu.kernel(probe), [{ buffer: out, offset: 0, size: 256 * 4 }], null, [1]);
    step.submit();
    const flags = new Uint32Array(await gpu.read(out));
    return flags.every((f) => f === 1);
  } catch {
    gpu._forgetErrors();
    return false;
  } finally {
    gpu.destroyBuffer(out);
  }
}

/** The adapter preference named by $TNL_ADAPTER, validated. */
export function adapterFromEnv(): AdapterChoice | undefined {
  const v = envGet("TNL_ADAPTER");
  if (v === undefined || v === "") return undefined;
  if (!(ADAPTER_CHOICES as readonly string[]).includes(v)) {
    throw new TnlError("usage", `TNL_ADAPTER=${v}: expected one of ${ADAPTER_CHOICES.join(", ")}`);
  }
  return v as AdapterChoice;
}

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no env permission
  }
}

let runtimeDirSet = false;
/** Mesa's EGL/Wayland probing warns when XDG_RUNTIME_DIR is unset: point it at a private temp dir. */
function silenceRuntimeDirWarning(): void {
  if (runtimeDirSet) return;
  runtimeDirSet = true;
  try {
    if (Deno.env.get("XDG_RUNTIME_DIR")) return;
    const dir = Deno.makeTempDirSync({ prefix: "tnl-runtime-" });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* best effort */ }
    });
  } catch { /* no env or write permission: the warning is harmless */ }
}

// ---------------------------------------------------------------- small helpers

export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export function alignDown(n: number, a: number): number {
  return Math.floor(n / a) * a;
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB (${n} bytes)`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB (${n} bytes)`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB (${n} bytes)`;
  return `${n} bytes`;
}

function poolSizeClass(n: number): number {
  const p = 2 ** Math.ceil(Math.log2(n));
  return p >= 64 && n <= p * 0.75 ? p * 0.75 : p;
}

function padTo4(data: ArrayBufferView): Uint8Array {
  const out = new Uint8Array(alignUp(data.byteLength, 4));
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}

/** wgpu messages span lines; tnl prints one line per error. */
function squash(msg: string): string {
  return msg.replace(/\s+/g, " ").trim();
}
