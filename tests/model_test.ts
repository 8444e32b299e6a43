import assert from "node:assert/strict";
import { loadModel, saveModel } from "../core/checkpoint.ts";
import { HF_DEFAULTS, type ModelDims, resolveDims, type TnlConfig } from "../core/config.ts";
import { TnlError } from "../core/errors.ts";
import type { Gpu } from "../core/gpu.ts";
import { Activations, forward, forwardBackward, TnlModel, writeLogits } from "../core/model.ts";
import { modelRef, type RefParams } from "../core/model_ref.ts";
import { Rng } from "../core/random.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { errorStats } from "../core/stats.ts";
import { Tensor } from "../core/tensor.ts";
import { gpuTest, REPO_ROOT, testGpu } from "./_gpu.ts";
import { tnl } from "./_cli.ts";

const TINY = `${REPO_ROOT}/testdata/tnl-tiny`;
const TINY_TORCH = `${REPO_ROOT}/testdata/tnl-tiny-torch`;

async function golden(dir: string) {
  const f = await SafetensorsFile.open(`${dir}/golden.safetensors`);
  const read = (n: string) => f.readF32(n);
  const ids = await f.readInt("input_ids");
  const [B, T] = f.tensors.get("input_ids")!.shape;
  return { f, read, ids, B, T, names: [...f.tensors.keys()] };
}

interface RunResult {
  logits: Float32Array;
  loss: number;
  grads: Map<string, Float32Array> | null;
}

async function run(
  gpu: Gpu,
  model: TnlModel,
  ids: ArrayLike<number>,
  B: number,
  T: number,
  wantGrads: boolean,
): Promise<RunResult> {
  const acts = new Activations(gpu, model.dims, B, T, wantGrads);
  const predicted = acts.setBatch(ids, { train: wantGrads });
  const grads = wantGrads ? Tensor.empty(gpu, [model.layout.total], "f32", "grads") : null;
  const logits = Tensor.empty(gpu, [B * T, model.dims.vocab], "f32", "logits");
  gpu.run("model test", (step) => {
    if (grads) forwardBackward(step, model, acts, grads, { lossScale: 1 / predicted });
    else forward(step, model, acts, { lossScale: 1 / predicted });
    writeLogits(step, model, acts, logits);
  });
  const out: RunResult = {
    logits: await logits.readF32(),
    loss: (await acts.loss.readF32())[0],
    grads: null,
  };
  if (grads) {
    const flat = await grads.readF32();
    out.grads = new Map(model.layout.specs.map((s) => [s.name, flat.slice(s.offset, s.offset + s.size)]));
    grads.destroy();
  }
  logits.destroy();
  acts.destroy();
  return out;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test(
  "tnl-tiny matches the official implementation: logits, loss and every gradient",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const { model } = await loadModel(gpu, TINY);
    const g = await golden(TINY);
    try {
      const r = await run(gpu, model, g.ids, g.B, g.T, true);
      // Official fp32 logits (blocked eval path) and the train path (quadratic masked attention).
      const dl = maxAbs(r.logits, await g.read("logits"));
      const dt = maxAbs(r.logits, await g.read("train_logits"));
      assert.ok(dl <= 1e-4, `logits max |Δ| ${dl}`);
      assert.ok(dt <= 1e-4, `train-path logits max |Δ| ${dt}`);
      const loss = (await g.read("loss"))[0];
      assert.ok(Math.abs(r.loss - loss) <= 1e-5, `loss ${r.loss} vs ${loss}`);
      let graded = 0;
      for (const name of g.names.filter((n) => n.startsWith("grad."))) {
        const e = errorStats(r.grads!.get(name.slice(5))!, await g.read(name));
        assert.ok(e.rel <= 1e-3, `${name}: ‖Δ‖/‖ref‖ ${e.rel}`);
        graded++;
      }
      assert.equal(graded, model.layout.specs.length, "a gradient for every weight");
    } finally {
      g.f.close();
      model.destroy();
    }
  },
);

Deno.test("the float64 reference model written from the spec matches the official fixture too", async () => {
  const gpu = await testGpu();
  const { model } = await loadModel(gpu, TINY);
  const g = await golden(TINY);
  try {
    const params = new Map([...(await model.readParams())].map(([k, v]) => [k, Float64Array.from(v)]));
    // Two of the 96 positions keep the float64 attention loops short.
    const ref = modelRef(model.dims, params, g.ids, g.B, g.T, true);
    assert.ok(maxAbs(ref.logits, await g.read("logits")) <= 2e-5);
    assert.ok(Math.abs(ref.loss - (await g.read("loss"))[0]) <= 1e-6);
    for (const name of g.names.filter((n) => n.startsWith("grad."))) {
      const e = errorStats(ref.grads!.get(name.slice(5))!, await g.read(name));
      assert.ok(e.rel <= 1e-4, `${name}: ‖Δ‖/‖ref‖ ${e.rel}`);
    }
  } finally {
    g.f.close();
    model.destroy();
  }
});

Deno.test("the bf16 PyTorch checkpoint (torch.save zip) loads and matches its logits", gpuTest, async () => {
  const gpu = await testGpu();
  const { model, weightsPath } = await loadModel(gpu, TINY_TORCH);
  const g = await golden(TINY_TORCH);
  try {
    assert.match(weightsPath, /pytorch_model\.bin$/);
    const r = await run(gpu, model, g.ids, g.B, g.T, false);
    const d = maxAbs(r.logits, await g.read("logits"));
    assert.ok(d <= 1e-4, `logits max |Δ| ${d}`);
  } finally {
    g.f.close();
    model.destroy();
  }
});

function dims(over: Partial<TnlConfig>): ModelDims {
  return resolveDims({ ...HF_DEFAULTS, ...over }, "test config");
}

async function checkAgainstRef(
  gpu: Gpu,
  m: ModelDims,
  B: number,
  T: number,
  seed: number,
  withPads: boolean,
) {
  // Larger init than 0.02 so that the layers move the logits measurably.
  const model = TnlModel.init(gpu, { ...m, initStd: 0.2 }, seed);
  try {
    const rng = new Rng(seed);
    const ids = Array.from({ length: B * T }, () => rng.int(m.vocab));
    if (withPads) ids[1] = ids[5] = ids[B * T - 2] = m.padId;
    const r = await run(gpu, model, ids, B, T, true);
    const params: RefParams = new Map(
      [...(await model.readParams())].map(([k, v]) => [k, Float64Array.from(v)]),
    );
    const ref = modelRef(model.dims, params, ids, B, T, true);
    const label = JSON.stringify({ L: m.layers, H: m.heads, d: m.headDim, lrpe: m.lrpe, tied: m.tied, B, T });
    const el = errorStats(r.logits, ref.logits);
    assert.ok(el.rel <= 1e-5, `${label} logits ‖Δ‖/‖ref‖ ${el.rel}`);
    assert.ok(Math.abs(r.loss - ref.loss) <= 1e-5, `${label} loss ${r.loss} vs ${ref.loss}`);
    for (const [name, g] of ref.grads!) {
      const e = errorStats(r.grads!.get(name)!, g);
      // fp32 vs float64 through the whole network: measured ≤ 3e-5 here; the fixture bound is 1e-3.
      assert.ok(e.rel <= 1e-4, `${label} ${name}: ‖Δ‖/‖ref‖ ${e.rel}`);
    }
    if (withPads && !m.tied) {
      const row = r.grads!.get("model.embed_tokens.weight")!.subarray(m.padId * m.d, (m.padId + 1) * m.d);
      assert.ok(row.every((x) => x === 0), "the pad row gets no gradient");
    }
  } finally {
    model.destroy();
  }
}

Deno.test(
  "GPU model = float64 reference: 3 layers, 3 heads (not a power of two), no LRPE, tied head, pad ids",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    await checkAgainstRef(
      gpu,
      dims({
        vocab_size: 50,
        decoder_embed_dim: 24,
        hidden_dim: 24,
        decoder_layers: 3,
        decoder_attention_heads: 3,
        glu_dim: 40,
        linear_use_lrpe_list: [],
        tie_word_embeddings: true,
      }),
      2,
      37,
      1,
      true,
    );
  },
);

Deno.test(
  "GPU model = float64 reference: LRPE on every layer, 5 heads, untied, pad ids, no embedding scale",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    await checkAgainstRef(
      gpu,
      dims({
        vocab_size: 40,
        decoder_embed_dim: 20,
        hidden_dim: 20,
        decoder_layers: 2,
        decoder_attention_heads: 5,
        glu_dim: -1,
        linear_use_lrpe: 1,
        no_scale_embedding: true,
      }),
      3,
      33,
      2,
      true,
    );
  },
);

Deno.test(
  "GPU model = float64 reference: hidden_dim ≠ embed_dim without LRPE, 4 layers",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    await checkAgainstRef(
      gpu,
      dims({
        vocab_size: 30,
        decoder_embed_dim: 16,
        hidden_dim: 24,
        decoder_layers: 4,
        decoder_attention_heads: 2,
        glu_dim: 20,
        linear_use_lrpe_list: [0, 0, 0, 0],
      }),
      1,
      70,
      3,
      false,
    );
  },
);

Deno.test("save → load gives bit-identical weights and the same tying", gpuTest, async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  try {
    for (const tied of [false, true]) {
      const m = dims({
        vocab_size: 30,
        decoder_embed_dim: 8,
        hidden_dim: 8,
        decoder_layers: 2,
        decoder_attention_heads: 2,
        glu_dim: 12,
        linear_use_lrpe_list: [1, 0],
        tie_word_embeddings: tied,
      });
      const model = TnlModel.init(gpu, m, 5);
      await saveModel(model, {
        ...HF_DEFAULTS,
        vocab_size: 30,
        decoder_embed_dim: 8,
        hidden_dim: 8,
        decoder_layers: 2,
        decoder_attention_heads: 2,
        glu_dim: 12,
        linear_use_lrpe_list: [1, 0],
      }, dir);
      const { model: back, config } = await loadModel(gpu, dir);
      assert.equal(back.dims.tied, tied);
      assert.equal(config.tie_word_embeddings, tied);
      const a = await model.params.readF32(), b = await back.params.readF32();
      assert.deepEqual(new Uint32Array(b.buffer), new Uint32Array(a.buffer));
      const json = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      assert.equal(json.tie_word_embeddings, tied);
      assert.deepEqual(json.architectures, ["TransnormerForCausalLM"]);
      const st = await SafetensorsFile.open(`${dir}/model.safetensors`);
      assert.equal(st.tensors.has("lm_head.weight"), !tied);
      st.close();
      model.destroy();
      back.destroy();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a checkpoint whose tensors do not fit the config lists every problem", gpuTest, async () => {
  const gpu = await testGpu();
  const dir = await Deno.makeTempDir();
  try {
    const cfg = {
      ...HF_DEFAULTS,
      vocab_size: 30,
      decoder_embed_dim: 8,
      hidden_dim: 8,
      decoder_layers: 2,
      decoder_attention_heads: 2,
      glu_dim: 12,
      linear_use_lrpe_list: [1, 0],
    };
    const model = TnlModel.init(gpu, resolveDims(cfg, "t"), 6);
    await saveModel(model, cfg, dir);
    model.destroy();
    // The same weights under a config with another GLU width and without LRPE.
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...cfg, glu_dim: 16, linear_use_lrpe_list: [0, 0] }),
    );
    await assert.rejects(() => loadModel(gpu, dir), (e) => {
      assert.ok(e instanceof TnlError && e.kind === "input", String(e));
      assert.match(e.message, /channel_mixer\.l1\.weight has shape \[12,8\], the config needs \[16,8\]/);
      assert.match(e.message, /unexpected tensor model\.layers\.0\.token_mixer\.lrpe\.theta/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unsupported configurations are refused, each problem named", () => {
  const bad = (over: Partial<TnlConfig>, pattern: RegExp) =>
    assert.throws(
      () => resolveDims({ ...HF_DEFAULTS, ...over }, "config.json"),
      (e) => e instanceof TnlError && pattern.test(e.message),
    );
  bad({ norm_type: "layernorm" }, /norm_type = "layernorm": unsupported/);
  bad({ linear_act_fun: "relu" }, /linear_act_fun = "relu": unsupported/);
  bad({ decoder_layers: 1, linear_use_lrpe_list: [] }, /decoder_layers = 1: unsupported/);
  bad({ decoder_attention_heads: 7 }, /does not divide hidden_dim/);
  bad(
    { hidden_dim: 512, linear_use_lrpe_list: [1, ...Array(23).fill(0)] },
    /hidden_dim = 512 ≠ decoder_embed_dim/,
  );
  bad({ bias: true }, /bias = true: unsupported/);
  bad({ linear_use_lrpe_list: [1, 0] }, /2 entries for decoder_layers = 24/);
  assert.equal(resolveDims({ ...HF_DEFAULTS, glu_dim: -1 }, "c").glu, 1024);
  assert.deepEqual(resolveDims({ ...HF_DEFAULTS, decoder_layers: 3, linear_use_lrpe: 1 }, "c").lrpe, [
    true,
    true,
    true,
  ]);
});

Deno.test("tnl eval --input-ids reports the fixture's loss and writes logits and gradients", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await tnl([
      "eval",
      "--model",
      TINY,
      "--input-ids",
      `${TINY}/golden.safetensors`,
      "--save-logits",
      `${dir}/logits.safetensors`,
      "--save-grads",
      `${dir}/grads.safetensors`,
      "--json",
    ]);
    assert.equal(out.code, 0, out.stderr);
    const j = JSON.parse(out.stdout);
    const g = await golden(TINY);
    const loss = (await g.read("loss"))[0];
    assert.ok(Math.abs(j.loss - loss) <= 1e-5);
    assert.ok(Math.abs(j.perplexity - Math.exp(loss)) <= 1e-4 * Math.exp(loss));
    assert.equal(j.tokens, 2 * 95);
    const logits = await SafetensorsFile.open(`${dir}/logits.safetensors`);
    assert.deepEqual(logits.tensors.get("logits")!.shape, [2, 96, 256]);
    assert.ok(maxAbs(await logits.readF32("logits"), await g.read("logits")) <= 1e-4);
    logits.close();
    const grads = await SafetensorsFile.open(`${dir}/grads.safetensors`);
    for (const name of g.names.filter((n) => n.startsWith("grad."))) {
      assert.ok(errorStats(await grads.readF32(name), await g.read(name)).rel <= 1e-3, name);
    }
    grads.close();
    g.f.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
