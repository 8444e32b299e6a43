// The parity subset CI also runs on Mesa's GL adapter (no subgroups, no f16): the paths every device without
// optional features takes must give the official results too.

import assert from "node:assert/strict";
import { loadModel } from "../core/checkpoint.ts";
import { Activations, forwardBackward, writeLogits } from "../core/model.ts";
import { Rng } from "../core/random.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { errorStats } from "../core/stats.ts";
import { Tensor } from "../core/tensor.ts";
import { matmul } from "../kernels/matmul.ts";
import { matmulRef } from "../kernels/matmul_ref.ts";
import { assertClose, gpuTest, REPO_ROOT, testGpu } from "./_gpu.ts";

Deno.test("parity: matmul, all transposes, odd sizes", gpuTest, async () => {
  const gpu = await testGpu();
  const rng = new Rng(90);
  for (const [m, n, k] of [[37, 70, 29], [130, 9, 260]]) {
    for (const op of ["nn", "nt", "tn", "tt"]) {
      const transA = op[0] === "t", transB = op[1] === "t";
      const ha = rng.uniformArray(m * k), hb = rng.uniformArray(k * n);
      const a = Tensor.from(gpu, ha, [ha.length], "f32", "A"),
        b = Tensor.from(gpu, hb, [hb.length], "f32", "B");
      const c = Tensor.empty(gpu, [m, n], "f32", "C");
      gpu.run("parity matmul", (s) => matmul(s, { a, b, c, m, n, k, transA, transB }));
      assertClose(
        await c.readF32(),
        matmulRef(ha, hb, null, { m, n, k, transA, transB }),
        1e-5,
        `${op} ${m}x${n}x${k}`,
      );
      [a, b, c].forEach((t) => t.destroy());
    }
  }
});

Deno.test(
  "parity: tnl-tiny logits, loss and gradients equal the official implementation's",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = `${REPO_ROOT}/testdata/tnl-tiny`;
    const { model } = await loadModel(gpu, dir);
    const g = await SafetensorsFile.open(`${dir}/golden.safetensors`);
    try {
      const ids = await g.readInt("input_ids");
      const [B, T] = g.tensors.get("input_ids")!.shape;
      const acts = new Activations(gpu, model.dims, B, T, true);
      const predicted = acts.setBatch(ids);
      const grads = Tensor.empty(gpu, [model.layout.total], "f32", "grads");
      const logits = Tensor.empty(gpu, [B * T, model.dims.vocab], "f32", "logits");
      gpu.run("parity model", (s) => {
        forwardBackward(s, model, acts, grads, { lossScale: 1 / predicted });
        writeLogits(s, model, acts, logits);
      });
      const e = errorStats(await logits.readF32(), await g.readF32("logits"));
      assert.ok(e.maxAbs <= 1e-4, `logits max |Δ| ${e.maxAbs} (subgroups ${gpu.features.subgroups})`);
      assert.ok(Math.abs((await acts.loss.readF32())[0] - (await g.readF32("loss"))[0]) <= 1e-5);
      const flat = await grads.readF32();
      for (const s of model.layout.specs) {
        const r = errorStats(flat.subarray(s.offset, s.offset + s.size), await g.readF32(`grad.${s.name}`));
        assert.ok(r.rel <= 1e-3, `grad ${s.name}: ${r.rel}`);
      }
      [grads, logits].forEach((t) => t.destroy());
      acts.destroy();
    } finally {
      g.close();
      model.destroy();
    }
  },
);
