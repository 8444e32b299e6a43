import assert from "node:assert/strict";
import { loadModel } from "../core/checkpoint.ts";
import { TnlError } from "../core/errors.ts";
import { evaluateMqar } from "../core/eval.ts";
import { mqarGapWeights, MqarSampler, mqarValues } from "../core/mqar.ts";
import { train, type TrainOptions } from "../core/train.ts";
import { parseTrainConfig } from "../core/train_config.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";
import { gpuTest, testGpu } from "./_gpu.ts";
import { tnl } from "./_cli.ts";

const quiet: TrainOptions = { log: () => {}, interactive: false };

Deno.test("MQAR sequences: pairs, then each key queried once with its value as the only targets", () => {
  const s = { vocab: 64, pairs: 5, seqLen: 40, powerA: 0.01 };
  const sampler = new MqarSampler(s, 3);
  const gaps: number[] = [];
  for (let n = 0; n < 200; n++) {
    const { inputs, targets } = sampler.next(1);
    assert.equal(inputs.length, 40);
    const keys = new Map<number, number>();
    for (let i = 0; i < s.pairs; i++) {
      const k = inputs[2 * i], v = inputs[2 * i + 1];
      assert.ok(k >= 1 && k < 32, `key ${k} in 1..31`);
      assert.ok(v >= 32 && v < 64, `value ${v} in 32..63`);
      assert.ok(!keys.has(k), "distinct keys");
      keys.set(k, v);
    }
    assert.equal(new Set(keys.values()).size, s.pairs, "distinct values");
    const queried = new Set<number>();
    targets.forEach((y, t) => {
      if (y === IGNORE_INDEX) return;
      assert.ok(t >= 2 * s.pairs && (t - 2 * s.pairs) % 2 === 0, `query at ${t}`);
      assert.equal(y, keys.get(inputs[t]), "the target is the queried key's value");
      queried.add(inputs[t]);
      gaps.push((t - 2 * s.pairs) / 2);
    });
    assert.equal(queried.size, s.pairs, "every key queried once");
    assert.ok(inputs.every((x) => x < 64));
  }
  // The power law favours short gaps: of 15 slots, the first 3 take far more than their uniform 1/5.
  const near = gaps.filter((g) => g < 3).length / gaps.length;
  assert.ok(near > 0.3, `share of gaps < 3: ${near}`);
  assert.equal(mqarGapWeights(s).length, 15);
  assert.equal(mqarValues(64), 32);
  // Seeded: the same seed gives the same batch; the RNG state is the data position.
  const a = new MqarSampler(s, 9), b = new MqarSampler(s, 9);
  a.next(3);
  b.rng.state = a.rng.state;
  assert.deepEqual(a.next(2), b.next(2));
  assert.notDeepEqual(new MqarSampler(s, 9).next(1), new MqarSampler(s, 10).next(1));
});

function config(dir: string, data: string, train = "") {
  return `model:
  preset: tnl-tiny
data:
${data}
train:
  batch_size: 4
  steps: 6
  warmup_steps: 2
  eval_every: 3
  log_every: 2
  save_every: 3
${train}
out_dir: ${dir}/run
`;
}

Deno.test("the synthetic data config is strict", () => {
  const parse = (data: string, trainKeys = "") =>
    parseTrainConfig(config("/tmp/x", data, trainKeys), "c.yaml");
  const c = parse("  synthetic: mqar\n  vocab: 64\n  pairs: 3\n  seq_len: 24\n  seed: 5");
  assert.deepEqual(c.data.synthetic, {
    kind: "mqar",
    mqar: { vocab: 64, pairs: 3, seqLen: 24, powerA: 0.01 },
    seed: 5,
    valSamples: 256,
  });
  assert.equal(c.train.seq_len, 24, "data.seq_len is the training length");
  assert.equal(parse("  synthetic: mqar", "  seq_len: 64").data.synthetic!.mqar.seqLen, 64);
  const bad: [string, string, RegExp][] = [
    ["  synthetic: mqar\n  train: a.bin", "", /data\.train: not with data\.synthetic/],
    ["  train: a.bin\n  pairs: 4", "", /data\.pairs: only with data\.synthetic/],
    [
      "  synthetic: mqar\n  seq_len: 32",
      "  seq_len: 64",
      /train\.seq_len = 64 differs from data\.seq_len = 32/,
    ],
    ["  synthetic: mqar\n  pair: 4", "", /unknown key data\.pair \(did you mean data\.pairs\?\)/],
    ["  synthetic: zoology", "", /data\.synthetic = "zoology": expected one of mqar/],
    [
      "  synthetic: mqar\n  vocab: 16\n  pairs: 9\n  seq_len: 64",
      "",
      /data\.pairs = 9: a vocabulary of 16 has only 7 keys/,
    ],
    [
      "  synthetic: mqar\n  pairs: 9\n  seq_len: 30",
      "",
      /data\.seq_len = 30: 9 pairs need at least 36 tokens/,
    ],
  ];
  for (const [data, trainKeys, message] of bad) {
    assert.throws(
      () => parse(data, trainKeys),
      (e) => e instanceof TnlError && e.kind === "input" && message.test(e.message),
      data,
    );
  }
});

Deno.test(
  "an interrupted MQAR run resumes exactly (the RNG state is the data position)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const data = "  synthetic: mqar\n  vocab: 32\n  pairs: 2\n  seq_len: 12\n  val_samples: 8";
    const rows = async (interruptAt: number | null) => {
      const dir = await Deno.makeTempDir();
      try {
        const cfg = parseTrainConfig(config(dir, data), `${dir}/c.yaml`);
        if (interruptAt !== null) {
          let n = 0;
          const s = await train(gpu, cfg, {
            ...quiet,
            interrupted: () => (++n >= interruptAt ? "SIGINT" : null),
          });
          assert.equal(s.step, interruptAt);
        }
        const s = await train(gpu, cfg, quiet);
        assert.equal(s.step, 6);
        return (await Deno.readTextFile(`${dir}/run/metrics.jsonl`)).trim().split("\n").map((l) => {
          const { elapsed_s: _e, tokens_per_s: _t, ...rest } = JSON.parse(l);
          return rest;
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    };
    const straight = await rows(null);
    assert.ok(straight.some((r) => "val_loss" in r) && straight.some((r) => "loss" in r));
    assert.deepEqual(await rows(4), straight);
  },
);

Deno.test(
  "MQAR: a tiny model trained a few hundred steps recalls far above chance (tnl train, tnl eval --task mqar)",
  gpuTest,
  async () => {
    const gpu = await testGpu();
    const dir = await Deno.makeTempDir();
    try {
      // Sizes for a software adapter: 250 steps of 16 sequences of 16 tokens (2 pairs) take about 30 s.
      const yaml = `model:
  preset: tnl-tiny
data:
  synthetic: mqar
  vocab: 64
  pairs: 2
  seq_len: 16
  seed: 1
  val_samples: 0
train:
  batch_size: 16
  steps: 250
  lr: 5.0e-3
  warmup_steps: 20
  weight_decay: 0.0
  log_every: 50
  save_every: 250
out_dir: ${dir}/run
`;
      const t0 = performance.now();
      const summary = await train(gpu, parseTrainConfig(yaml, `${dir}/mqar.yaml`), quiet);
      const trainS = (performance.now() - t0) / 1000;
      const { model } = await loadModel(gpu, summary.checkpoint!);
      try {
        for (const seqLen of [16, 32]) {
          const r = await evaluateMqar(model, { vocab: 64, pairs: 2, seqLen, powerA: 0.01 }, {
            samples: 256,
            seed: 77,
          });
          console.log(
            `MQAR vocab 64, 2 pairs, trained at 16 tokens (${
              trainS.toFixed(0)
            } s): at ${seqLen} tokens accuracy ` +
              `${r.accuracy.toFixed(3)}, chance ${r.chance.toFixed(4)} (${
                (r.accuracy / r.chance).toFixed(1)
              }× chance)`,
          );
          assert.equal(r.answers, 512);
          assert.ok(
            r.accuracy >= 5 * r.chance,
            `accuracy ${r.accuracy} at ${seqLen} tokens < 5 × ${r.chance}`,
          );
        }
      } finally {
        model.destroy();
      }
      // The CLI reports the same figure.
      const out = await tnl([
        "eval",
        "--model",
        summary.checkpoint!,
        "--task",
        "mqar",
        "--pairs",
        "2",
        "--seq-len",
        "16",
        "--samples",
        "256",
        "--seed",
        "77",
        "--json",
      ]);
      assert.equal(out.code, 0, out.stderr);
      const j = JSON.parse(out.stdout);
      assert.equal(j.chance, 1 / 32);
      assert.ok(j.accuracy >= 5 / 32);
      for (
        const k of ["accuracy", "chance", "loss", "answers", "samples", "pairs", "seq_len", "vocab", "seed"]
      ) {
        assert.ok(k in j, k);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
