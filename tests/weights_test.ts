import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { writeSafetensors } from "../core/safetensors.ts";
import { assertFinite, openWeights } from "../core/weights.ts";
import { REPO_ROOT } from "./_gpu.ts";

const TINY = `${REPO_ROOT}/testdata/tnl-tiny`;
const TORCH = `${REPO_ROOT}/testdata/tnl-tiny-torch`;

Deno.test("openWeights reads a safetensors directory and a torch directory through one interface", async () => {
  const a = await openWeights(TINY);
  const b = await openWeights(`${TORCH}/`);
  try {
    assert.equal(a.format, "model.safetensors");
    assert.equal(a.path, `${TINY}/model.safetensors`);
    assert.equal(b.format, "pytorch_model.bin");
    assert.deepEqual(a.names().toSorted(), b.names().toSorted());
    const name = "model.layers.1.channel_mixer.l3.weight";
    assert.deepEqual(a.info(name), { dtype: "F32", shape: [64, 128] });
    assert.deepEqual(b.info(name), { dtype: "BF16", shape: [64, 128] });
    const x = await a.readF32(name), y = await b.readF32(name);
    let maxRel = 0;
    for (let i = 0; i < x.length; i++) maxRel = Math.max(maxRel, Math.abs(x[i] - y[i]) / Math.abs(x[i]));
    assert.ok(maxRel <= 2 ** -8, `bf16 rounding error ${maxRel}`);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("openWeights prefers model.safetensors, then its index, then pytorch_model.bin, then its index", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tnl-w-" });
  try {
    const open = async () => {
      const w = await openWeights(dir);
      w.close();
      return w.format;
    };
    await Deno.writeTextFile(
      `${dir}/pytorch_model.bin.index.json`,
      JSON.stringify({ weight_map: { w: "pytorch_model-1.bin" } }),
    );
    await Deno.copyFile(`${TORCH}/pytorch_model.bin`, `${dir}/pytorch_model-1.bin`);
    // The index names a tensor the shard lacks: proves this file was the one opened.
    await assert.rejects(
      open(),
      (e) => e instanceof TnlError && e.message.includes("pytorch_model.bin.index.json"),
    );
    await Deno.copyFile(`${TORCH}/pytorch_model.bin`, `${dir}/pytorch_model.bin`);
    assert.equal(await open(), "pytorch_model.bin");
    await writeSafetensors(`${dir}/model-1.safetensors`, [{
      name: "w",
      dtype: "F32",
      shape: [1],
      data: new Float32Array(1),
    }]);
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: { w: "model-1.safetensors" } }),
    );
    assert.equal(await open(), "model.safetensors.index.json");
    await Deno.copyFile(`${TINY}/model.safetensors`, `${dir}/model.safetensors`);
    assert.equal(await open(), "model.safetensors");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openWeights: an empty, missing or non-directory path is an io error naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tnl-w-" });
  try {
    await assert.rejects(
      openWeights(dir),
      (e) =>
        e instanceof TnlError && e.kind === "io" &&
        e.message ===
          `no weights in ${dir}: none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json is there`,
    );
    await assert.rejects(
      openWeights(`${dir}/nope`),
      (e) =>
        e instanceof TnlError && e.kind === "io" && e.message.includes(`${dir}/nope`) &&
        e.message.includes("no such file"),
    );
    await assert.rejects(
      openWeights(`${TINY}/config.json`),
      (e) => e instanceof TnlError && e.kind === "io" && e.message.includes("not a directory"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("assertFinite names the tensor, file, kind of value and first index", () => {
  assertFinite("ok", Float32Array.from([0, -1, 3.4e38, 1e-45]), "f.safetensors");
  const cases: [number, string][] = [[NaN, "NaN"], [Infinity, "+Infinity"], [-Infinity, "-Infinity"]];
  for (const [bad, what] of cases) {
    const data = Float32Array.from([1, 2, bad, bad]);
    assert.throws(
      () => assertFinite("model.embed_tokens.weight", data, "m.safetensors"),
      (e) =>
        e instanceof TnlError && e.kind === "input" &&
        e.message === `tensor model.embed_tokens.weight in m.safetensors has ${what} at index 2`,
    );
  }
});
