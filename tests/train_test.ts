import assert from "node:assert/strict";
import { loadModel } from "../core/checkpoint.ts";
import { TnlError } from "../core/errors.ts";
import { Rng } from "../core/random.ts";
import { SafetensorsFile } from "../core/safetensors.ts";
import { writeTokenFile } from "../core/tokenfile.ts";
import { learningRate, train, type TrainOptions } from "../core/train.ts";
import { parseTrainConfig, type TrainConfig } from "../core/train_config.ts";
import { gpuTest, testGpu } from "./_gpu.ts";
import { tnl } from "./_cli.ts";
import { parseXml } from "./_xml.ts";

/** A token file with learnable structure: a fixed cycle of ids with random interruptions. */
async function syntheticData(dir: string, n: number, seed: number, vocab = 64): Promise<string> {
  const rng = new Rng(seed);
  const ids = Array.from({ length: n }, (_, i) => (rng.next() < 0.1 ? rng.int(vocab) : (i * 7) % vocab));
  const path = `${dir}/data-${seed}.bin`;
  await writeTokenFile(path, ids, vocab);
  return path;
}

function config(
  dir: string,
  extra: { train?: Record<string, unknown>; model?: Record<string, unknown> } = {},
): TrainConfig {
  const yaml = (o: Record<string, unknown>) =>
    Object.entries(o).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join("\n");
  return parseTrainConfig(
    `model:
${yaml({ preset: "tnl-tiny", ...extra.model })}
data:
  train: ${dir}/data-1.bin
  val: ${dir}/data-2.bin
train:
${
      yaml({
        batch_size: 2,
        seq_len: 16,
        steps: 12,
        lr: 3e-3,
        warmup_steps: 2,
        eval_every: 6,
        log_every: 4,
        save_every: 5,
        ...extra.train,
      })
    }
out_dir: ${dir}/run
`,
    `${dir}/cfg.yaml`,
  );
}

const quiet: TrainOptions = { log: () => {}, interactive: false };

async function rows(dir: string) {
  return (await Deno.readTextFile(`${dir}/run/metrics.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
}

async function withData<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    await syntheticData(dir, 3000, 1);
    await syntheticData(dir, 400, 2);
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(
  "training lowers the loss, logs rows, writes HF-shaped checkpoints, keeps the last ones and the best",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    await withData(async (dir) => {
      const s = await train(gpu, config(dir), quiet);
      assert.equal(s.step, 12);
      const r = await rows(dir);
      const trainRows = r.filter((x) => "loss" in x), valRows = r.filter((x) => "val_loss" in x);
      assert.deepEqual(trainRows.map((x) => x.step), [4, 8, 12]);
      assert.deepEqual(valRows.map((x) => x.step), [0, 6, 12]);
      for (const x of trainRows) {
        for (const k of ["step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"]) {
          assert.ok(k in x, k);
        }
      }
      assert.ok(
        valRows.at(-1)!.val_loss < valRows[0].val_loss - 0.5,
        `val loss ${valRows[0].val_loss} → ${valRows.at(-1)!.val_loss}`,
      );
      const names = [];
      for await (const e of Deno.readDir(`${dir}/run`)) {
        names.push(e.name);
      }
      assert.deepEqual(names.filter((n) => n.startsWith("ckpt-")).sort(), [
        "ckpt-000005",
        "ckpt-000010",
        "ckpt-000012",
        "ckpt-best",
      ]);
      for (const f of ["metrics.jsonl", "run.json", "loss.svg", "LOCK"]) {
        assert.equal(names.includes(f), f !== "LOCK", f);
      }
      const ck = `${dir}/run/ckpt-000012`;
      for (
        const f of ["config.json", "model.safetensors", "optimizer.safetensors", "state.json", "DONE"]
      ) {
        await Deno.stat(`${ck}/${f}`);
      }
      const cfg = JSON.parse(await Deno.readTextFile(`${ck}/config.json`));
      assert.deepEqual(cfg.architectures, ["TransnormerForCausalLM"]);
      assert.equal(cfg.model_type, "transnormer");
      assert.equal(cfg.tie_word_embeddings, false);
      const st = await SafetensorsFile.open(`${ck}/model.safetensors`);
      assert.deepEqual(st.tensors.get("model.layers.0.token_mixer.lrpe.theta")!.shape, [4, 1, 16]);
      assert.deepEqual(st.tensors.get("lm_head.weight")!.shape, [64, 64]);
      st.close();
      const { model } = await loadModel(gpu, ck);
      assert.equal(model.dims.vocab, 64);
      model.destroy();
      const svg = await Deno.readTextFile(`${dir}/run/loss.svg`);
      parseXml(svg); // well-formed
      assert.equal(svg.match(/<g class="series"/g)?.length, 2, "train and val curves");
    });
  },
);

Deno.test(
  "an interrupted and resumed run logs exactly the rows of an uninterrupted one",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const straight = await withData(async (dir) => {
      await train(gpu, config(dir), quiet);
      return await rows(dir);
    });
    const resumed = await withData(async (dir) => {
      // Interrupt after step 7 (not a multiple of log_every = 4): the partial loss sum goes into the checkpoint.
      let steps = 0;
      const s1 = await train(gpu, config(dir), {
        ...quiet,
        interrupted: () => (++steps >= 7 ? "SIGINT" : null),
      });
      assert.equal(s1.interrupted, "SIGINT");
      assert.equal(s1.step, 7);
      const s2 = await train(gpu, config(dir), quiet);
      assert.equal(s2.resumed_from?.endsWith("ckpt-000007"), true);
      assert.equal(s2.step, 12);
      return await rows(dir);
    });
    const strip = (r: Record<string, unknown>[]) => r.map(({ tokens_per_s: _a, elapsed_s: _b, ...x }) => x);
    assert.deepEqual(strip(resumed), strip(straight));
  },
);

Deno.test("grad_accum = k gives the update of a k-times larger batch", gpuTest, async () => {
  const gpu = await testGpu();
  const params = async (train_: Record<string, unknown>) =>
    await withData(async (dir) => {
      await train(gpu, config(dir, { train: { steps: 2, eval_every: 100, ...train_ } }), quiet);
      const { model } = await loadModel(gpu, `${dir}/run/ckpt-000002`);
      const p = await model.params.readF32();
      model.destroy();
      return p;
    });
  const big = await params({ batch_size: 4 });
  const accum = await params({ batch_size: 2, grad_accum: 2 });
  let d2 = 0, r2 = 0;
  for (let i = 0; i < big.length; i++) {
    d2 += (big[i] - accum[i]) ** 2;
    r2 += big[i] ** 2;
  }
  // The same windows in the same order; only the order of the gradient sums differs (fp32 rounding).
  assert.ok(Math.sqrt(d2 / r2) < 1e-5, `‖Δ‖/‖p‖ = ${Math.sqrt(d2 / r2)}`);
});

Deno.test(
  "a finished run says so; a changed model config is refused unless --force; --fresh needs --overwrite",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    await withData(async (dir) => {
      await train(gpu, config(dir, { train: { steps: 3, eval_every: 100 } }), quiet);
      const again = await train(gpu, config(dir, { train: { steps: 3, eval_every: 100 } }), quiet);
      assert.equal(again.already_finished, true);
      await assert.rejects(
        () => train(gpu, config(dir, { train: { steps: 5 }, model: { glu_dim: 96 } }), quiet),
        (e) => e instanceof TnlError && /model config differs.*--force/.test(e.message),
      );
      await assert.rejects(
        () => train(gpu, config(dir, { train: { steps: 5 } }), { ...quiet, fresh: true }),
        (e) => e instanceof TnlError && /--overwrite/.test(e.message),
      );
      const s = await train(gpu, config(dir, { train: { steps: 2, eval_every: 100 } }), {
        ...quiet,
        fresh: true,
        overwrite: true,
      });
      assert.equal(s.step, 2);
      const moved = [];
      for await (const e of Deno.readDir(`${dir}/run`)) if (e.name.startsWith("old-")) moved.push(e.name);
      assert.equal(moved.length, 1);
      await Deno.stat(`${dir}/run/${moved[0]}/ckpt-000003/DONE`);
    });
  },
);

Deno.test("two runs on one out_dir: the second is refused; a stale lock is taken over", gpuTest, async () => {
  const gpu = await testGpu();
  await withData(async (dir) => {
    await Deno.mkdir(`${dir}/run`);
    const host = Deno.readTextFileSync("/etc/hostname").trim() || "localhost";
    // A live process on this host stands for the other run.
    const live = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      await Deno.writeTextFile(`${dir}/run/LOCK`, JSON.stringify({ pid: live.pid, host }));
      await assert.rejects(() => train(gpu, config(dir, { train: { steps: 1 } }), quiet), (e) => {
        assert.ok(e instanceof TnlError && e.kind === "io", String(e));
        assert.match(e.message, /in use by another tnl train/);
        return true;
      });
    } finally {
      live.kill();
      await live.status;
    }
    // A lock of a process that is not running: Linux pids stay below 2^22 (PID_MAX_LIMIT), so this one can
    // never be live (a pid that just ended could already be reused by another process on a busy machine).
    await Deno.writeTextFile(`${dir}/run/LOCK`, JSON.stringify({ pid: 2 ** 22 + 7, host }));
    const notes: string[] = [];
    const s = await train(gpu, config(dir, { train: { steps: 1, eval_every: 100 } }), {
      ...quiet,
      log: (l) => notes.push(l),
    });
    assert.equal(s.step, 1);
    assert.ok(notes.some((n) => /stale lock/.test(n)));
  });
});

Deno.test(
  "a huge learning rate: training stops naming the step, the last good checkpoint stays",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    await withData(async (dir) => {
      await assert.rejects(
        () =>
          train(
            gpu,
            config(dir, {
              train: {
                steps: 40,
                lr: 1e9,
                warmup_steps: 0,
                grad_clip: 0,
                save_every: 1,
                log_every: 1,
                eval_every: 100,
              },
            }),
            quiet,
          ),
        (e) => {
          assert.ok(e instanceof TnlError && e.kind === "diverged", String(e));
          assert.match(e.message, /not finite at step \d+.*last good checkpoint is .*ckpt-\d+/);
          return true;
        },
      );
      const ckpts = [];
      for await (const e of Deno.readDir(`${dir}/run`)) if (/^ckpt-\d+$/.test(e.name)) ckpts.push(e.name);
      for (const c of ckpts) {
        const { model } = await loadModel(gpu, `${dir}/run/${c}`); // refuses non-finite weights
        model.destroy();
      }
    });
  },
);

Deno.test("the learning-rate schedule: warm-up then cosine, linear or constant to min_lr", () => {
  const t = { lr: 1, min_lr: 0.1, warmup_steps: 10, schedule: "cosine" } as Parameters<
    typeof learningRate
  >[0];
  assert.equal(learningRate(t, 0, 100), 0.1);
  assert.equal(learningRate(t, 9, 100), 1);
  assert.equal(learningRate(t, 10, 100), 1);
  assert.ok(Math.abs(learningRate(t, 100, 100) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(t, 55, 100) - 0.55) < 1e-12);
  assert.ok(Math.abs(learningRate({ ...t, schedule: "linear" }, 55, 100) - 0.55) < 1e-12);
  assert.equal(learningRate({ ...t, schedule: "constant" }, 77, 100), 1);
});

Deno.test("config errors: all reported, one per line, syntax → unknown → types → missing, with file:line:col", () => {
  const bad = `model:
  preset: tnl-tiny
  decoder_atention_heads: 4
trian:
  steps: 3
train:
  batch_size: 0
  lr: .nan
  steps: 3
  tokens: 100
data:
  train: x.bin
`;
  assert.throws(() => parseTrainConfig(bad, "c.yaml"), (e) => {
    assert.ok(e instanceof TnlError && e.kind === "input");
    const lines = e.message.split("\n");
    assert.deepEqual(lines, [
      "c.yaml:3:3: unknown key model.decoder_atention_heads (did you mean model.decoder_attention_heads?)",
      "c.yaml:4:1: unknown key trian (did you mean train?)",
      "c.yaml:7:15: train.batch_size = 0: expected an integer ≥ 1",
      "c.yaml:8:7: train.lr = NaN: expected a finite number",
      "c.yaml:10:3: train: give either steps or tokens, not both",
      "c.yaml: missing key out_dir (the run directory)",
    ]);
    return true;
  });
  assert.throws(
    () => parseTrainConfig("model: {preset: x\n", "c.yaml"),
    (e) => e instanceof TnlError && /^c\.yaml:\d+:\d+: /.test(e.message),
  );
  assert.throws(
    () => parseTrainConfig("out_dir: a\nout_dir: b\n", "c.yaml"),
    (e) => e instanceof TnlError && /c\.yaml:2:1: Map keys must be unique/.test(e.message),
  );
});

Deno.test("tnl train runs from the CLI and prints the summary as JSON", async () => {
  await withData(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/cfg.yaml`,
      `model:\n  preset: tnl-tiny\ndata:\n  train: data-1.bin\ntrain:\n  batch_size: 2\n  seq_len: 8\n  steps: 2\nout_dir: run\n`,
    );
    const out = await tnl(["train", `${dir}/cfg.yaml`, "--json"]);
    assert.equal(out.code, 0, out.stderr);
    const s = JSON.parse(out.stdout);
    assert.equal(s.step, 2);
    assert.equal(s.out_dir, `${dir}/run`);
    assert.match(out.stderr, /params {4}/);
  });
});
