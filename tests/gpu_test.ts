import assert from "node:assert/strict";
import { EXIT_CODES, TnlError } from "../core/errors.ts";
import { DispatchPlan, type KernelDef, openGpu } from "../core/gpu.ts";
import { Rng } from "../core/random.ts";
import { Tensor } from "../core/tensor.ts";
import { matmul } from "../kernels/matmul.ts";
import { matmulRef } from "../kernels/matmul_ref.ts";
import { assertClose, gpuTest, testGpu } from "./_gpu.ts";

const FILL: KernelDef = {
  name: "test-fill",
  code: `
struct Params { value: f32, n: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<f32>; // out: [n] f32
@group(1) @binding(0) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < p.n) { out[g.x] = p.value; }
}`,
  bindings: ["rw"],
  paramBytes: 8,
};

function params(value: number, n: number): Uint8Array {
  const b = new ArrayBuffer(8);
  new DataView(b).setFloat32(0, value, true);
  new DataView(b).setUint32(4, n, true);
  return new Uint8Array(b);
}

function assertTnlError(e: unknown, kind: string, ...fragments: string[]): true {
  assert.ok(e instanceof TnlError, `expected a TnlError, got ${e}`);
  assert.equal(e.kind, kind, e.message);
  for (const f of fragments) assert.ok(e.message.includes(f), `'${e.message}' lacks '${f}'`);
  assert.ok(!e.message.includes("\n"), "one line");
  return true;
}

Deno.test(
  "a dispatch over the workgroup-count limit throws naming the kernel, before encoding",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const t = Tensor.empty(gpu, [64], "f32", "out");
    const step = gpu.step("bad grid");
    assert.throws(
      () => step.dispatch(gpu.kernel(FILL), [t.view()], params(1, 64), [70000]),
      (e) => assertTnlError(e, "gpu", "test-fill", "70000", "65535"),
    );
    step.abandon();
    t.destroy();
    await gpu.sync(); // nothing reached WebGPU
  },
);

Deno.test(
  "overlapping writable bindings and wrong binding counts are refused naming the kernel",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const def: KernelDef = {
      name: "test-two",
      code: `
@group(0) @binding(0) var<storage, read> src: array<f32>;       // src: [n] f32
@group(0) @binding(1) var<storage, read_write> dst: array<f32>; // dst: [n] f32
@compute @workgroup_size(1) fn main() { dst[0] = src[0]; }`,
      bindings: ["read", "rw"],
    };
    const t = Tensor.empty(gpu, [64], "f32", "shared");
    const step = gpu.step("aliasing");
    assert.throws(
      () => step.dispatch(gpu.kernel(def), [t.view(), t.view(8, 8)], null, [1]),
      (e) => assertTnlError(e, "internal", "test-two", "overlap", "shared"),
    );
    assert.throws(
      () => step.dispatch(gpu.kernel(FILL), [t.view(), t.view()], params(1, 1), [1]),
      (e) => assertTnlError(e, "internal", "test-fill", "2 bindings"),
    );
    step.abandon();
    t.destroy();
  },
);

Deno.test("a binding over the storage-binding limit fails early naming size and limit", gpuTest, async () => {
  const gpu = await openGpu({ maxBindingBytes: 4096 });
  try {
    const t = Tensor.empty(gpu, [2048], "f32", "too-big");
    assert.throws(() => t.view(), (e) => assertTnlError(e, "gpu", "too-big", "8192 bytes", "4096 bytes"));
    t.destroy();
  } finally {
    gpu.close();
  }
});

Deno.test(
  "a buffer over maxBufferSize is refused naming size and limit, without allocating",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const before = gpu.liveBytes;
    const huge = gpu.limits.maxBufferSize + 1024;
    assert.throws(
      () => gpu.createBuffer(huge, "enormous"),
      (e) => assertTnlError(e, "gpu", "enormous", "maxBufferSize"),
    );
    assert.equal(gpu.liveBytes, before);
  },
);

Deno.test("a WGSL compile error surfaces at sync() naming the kernel", gpuTest, async () => {
  const gpu = await openGpu();
  try {
    gpu.kernel({ name: "broken-kernel", code: "fn main( {", bindings: [] });
    await assert.rejects(() => gpu.sync(), (e) => assertTnlError(e, "gpu", "broken-kernel"));
  } finally {
    gpu.close();
  }
});

Deno.test(
  "a pipeline whose WGSL disagrees with its declared bindings surfaces naming the kernel",
  gpuTest,
  async () => {
    const gpu = await openGpu();
    try {
      // The WGSL uses binding 1, the definition declares only binding 0.
      gpu.kernel({
        name: "mismatched-kernel",
        code: `@group(0) @binding(1) var<storage, read_write> x: array<f32>;
             @compute @workgroup_size(1) fn main() { x[0] = 1.0; }`,
        bindings: ["rw"],
      });
      await assert.rejects(() => gpu.sync(), (e) => assertTnlError(e, "gpu", "mismatched-kernel"));
    } finally {
      gpu.close();
    }
  },
);

Deno.test("no adapter: a no-gpu error that says what to install (exit code 5)", async () => {
  const noAdapter = { requestAdapter: () => Promise.resolve(null) };
  await assert.rejects(
    () => openGpu({ gpu: noAdapter }),
    (e) => assertTnlError(e, "no-gpu", "no WebGPU adapter", "mesa-vulkan-drivers"),
  );
  assert.equal(EXIT_CODES["no-gpu"], 5);
});

Deno.test(
  "optional features refused one by one: device opens without them and kernels stay right",
  gpuTest,
  async () => {
    const real = await navigator.gpu.requestAdapter();
    assert.ok(real, "a WebGPU adapter is required for this test");
    // An adapter that refuses subgroups and f16, as Mesa's GL adapter does.
    const refusing = new Proxy(real, {
      get(target, prop) {
        if (prop === "requestDevice") {
          return (desc?: GPUDeviceDescriptor) => {
            const f = [...(desc?.requiredFeatures ?? [])];
            if (f.includes("subgroups") || f.includes("shader-f16")) {
              return Promise.reject(
                new TypeError("requiredFeatures must be a subset of the adapter features"),
              );
            }
            return target.requestDevice(desc);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const gpu = await openGpu({ gpu: { requestAdapter: () => Promise.resolve(refusing) } });
    try {
      assert.equal(gpu.features.subgroups, false);
      assert.equal(gpu.features["shader-f16"], false);
      assert.match(gpu.featureNotes.subgroups ?? "", /refused/);
      assert.equal(gpu.features["timestamp-query"], real.features.has("timestamp-query"));
      const rng = new Rng(7);
      const m = 33, n = 29, k = 41;
      const ha = rng.uniformArray(m * k), hb = rng.uniformArray(k * n);
      const a = Tensor.from(gpu, ha, [m, k], "f32", "A"), b = Tensor.from(gpu, hb, [k, n], "f32", "B");
      const c = Tensor.empty(gpu, [m, n], "f32", "C");
      const step = gpu.step("fallback");
      matmul(step, { a, b, c, m, n, k });
      step.submit();
      assertClose(
        await c.readF32(),
        matmulRef(ha, hb, null, { m, n, k }),
        1e-5,
        "matmul without optional features",
      );
    } finally {
      gpu.close();
    }
  },
);

Deno.test("disabled features are reported as such", gpuTest, async () => {
  const gpu = await openGpu({ disable: ["subgroups", "timestamp-query"] });
  try {
    assert.equal(gpu.features.subgroups, false);
    assert.equal(gpu.features["timestamp-query"], false);
    assert.equal(gpu.featureNotes.subgroups, "disabled");
  } finally {
    gpu.close();
  }
});

Deno.test("a lost device turns into a clear error at the next operation", gpuTest, async () => {
  const gpu = await openGpu();
  gpu.device.destroy();
  await gpu.device.lost;
  assert.throws(() => gpu.step("after loss"), (e) => assertTnlError(e, "gpu", "device lost"));
});

Deno.test("per-dispatch parameters: the same kernel with different values in one step", gpuTest, async () => {
  const gpu = await testGpu();
  const ts = [1.5, -2, 3.25, 1e-3].map((_, i) => Tensor.empty(gpu, [100 + i], "f32", `out${i}`));
  const step = gpu.step("params");
  ts.forEach((t, i) =>
    step.dispatch(gpu.kernel(FILL), [t.view()], params([1.5, -2, 3.25, 1e-3][i], t.size), [2])
  );
  step.submit();
  for (const [i, t] of ts.entries()) {
    const v = await t.readF32();
    assert.ok(v.every((x) => x === Math.fround([1.5, -2, 3.25, 1e-3][i])), `tensor ${i}`);
  }
});

Deno.test(
  "a dispatch plan replays its dispatches with their own parameters, checked once",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const values = [1.5, -2, 3.25];
    const ts = values.map((_, i) => Tensor.empty(gpu, [100 + i], "f32", `plan out${i}`));
    const add: KernelDef = { ...FILL, name: "test-add", code: FILL.code.replace("= p.value", "+= p.value") };
    const calls = ts.map((t, i) => ({
      kernel: gpu.kernel(i === 1 ? add : FILL),
      ranges: [t.view()],
      params: params(values[i], t.size),
      grid: [2] as const,
    }));
    // A zero-sized grid is dropped; a bad call is refused when the plan is made, naming the kernel.
    const plan = new DispatchPlan(gpu, "test", [...calls, { ...calls[0], grid: [0] }]);
    assert.equal(plan.items.length, 3);
    assert.throws(
      () => new DispatchPlan(gpu, "bad", [{ ...calls[0], params: null }]),
      (e) =>
        e instanceof TnlError && e.message.includes("test-fill") && e.message.includes("parameter block"),
    );
    ts[1].write(new Float32Array(101).fill(10));
    for (let round = 0; round < 3; round++) {
      const step = gpu.step("replay");
      step.replay(plan);
      // Another dispatch in the same step keeps its own parameters next to the plan's.
      step.dispatch(gpu.kernel(FILL), [ts[2].view()], params(7, 50), [1]);
      assert.equal(step.kernels.length, 4);
      step.submit();
    }
    assert.ok((await ts[0].readF32()).every((x) => x === 1.5));
    assert.ok((await ts[1].readF32()).every((x) => x === 10 - 6), "three rounds of += −2");
    const last = await ts[2].readF32();
    assert.ok(last.every((x, i) => x === (i < 50 ? 7 : 3.25)), "the plan, then the step's own dispatch");
    ts[0].destroy();
    const step = gpu.step("after destroy");
    assert.throws(() => step.replay(plan), (e) => e instanceof TnlError && e.message.includes("plan out0"));
    step.abandon();
    plan.destroy();
    const again = gpu.step("destroyed plan");
    assert.throws(() => again.replay(plan), (e) => e instanceof TnlError && e.message.includes("destroyed"));
    again.abandon();
  },
);

Deno.test("tensors round-trip f32, i32, u32 and f16 bits; views align offsets", gpuTest, async () => {
  const gpu = await testGpu();
  const f = Tensor.from(gpu, new Float32Array([1, -2.5, 3e-7]), [3], "f32", "f");
  assert.deepEqual([...await f.read()], [1, -2.5, Math.fround(3e-7)]);
  const i = Tensor.from(gpu, new Int32Array([-1, 2 ** 31 - 1, 0, 5, 6]), [5], "i32", "i");
  assert.deepEqual([...await i.read()], [-1, 2 ** 31 - 1, 0, 5, 6]);
  const u = Tensor.from(gpu, new Uint32Array([2 ** 32 - 1]), [1], "u32", "u");
  assert.deepEqual([...await u.read()], [2 ** 32 - 1]);
  const h = Tensor.from(gpu, new Uint16Array([0x3c00, 0xc000, 0x7bff]), [3], "f16", "h");
  assert.deepEqual([...await h.read()], [0x3c00, 0xc000, 0x7bff]);
  const big = Tensor.empty(gpu, [1000], "f32", "big");
  const v = big.view(333, 10);
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  assert.equal(v.offset % align, 0);
  assert.equal(v.offset / 4 + v.base, 333);
  assert.ok(v.offset + v.size >= (333 + 10) * 4 && v.size % 16 === 0);
  [f, i, u, h, big].forEach((t) => t.destroy());
});

Deno.test(
  "buffer pool reuses released buffers of the same size class; memory is accounted",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    gpu.trimPool();
    const before = gpu.liveBytes;
    const a = gpu.acquire(1000, "pooled");
    assert.ok(a.size >= 1000 && a.size <= 1536);
    gpu.release(a);
    const b = gpu.acquire(900, "pooled again");
    assert.equal(b, a);
    gpu.release(b);
    assert.ok(gpu.liveBytes > before);
    gpu.trimPool();
    assert.equal(gpu.liveBytes, before);
  },
);

Deno.test("only one step may be open at a time; a submitted step cannot be reused", gpuTest, async () => {
  const gpu = await testGpu();
  const s = gpu.step("first");
  assert.throws(() => gpu.step("second"), (e) => assertTnlError(e, "internal", "first"));
  s.submit();
  assert.throws(() => s.submit(), (e) => assertTnlError(e, "internal", "already submitted"));
  await gpu.sync();
});
