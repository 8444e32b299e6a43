// Every bad input and fault ends in a clear message and loses nothing: one test per case. Each runs the
// CLI as a user would and checks the exit code, that the message names the file/key/line/value at fault in
// one line per problem (no stack trace), and that no existing file was changed or lost.

import assert from "node:assert/strict";
import { EXIT_CODES } from "../core/errors.ts";
import { loadModel, saveModel } from "../core/checkpoint.ts";
import { HF_DEFAULTS, PRESETS, resolveDims } from "../core/config.ts";
import { TnlModel } from "../core/model.ts";
import { loadTokenizer } from "../core/tokenizer.ts";
import { openGpu } from "../core/gpu.ts";
import { writeTokenFile } from "../core/tokenfile.ts";
import { train } from "../core/train.ts";
import { parseTrainConfig } from "../core/train_config.ts";
import { TnlError } from "../core/errors.ts";
import { assertKept, errorLines, oneErrorLine, snapshot, tnl } from "./_cli.ts";
import { gpuTest, REPO_ROOT } from "./_gpu.ts";
import { makeZip, unzip } from "./_zip.ts";

const TINY = `${REPO_ROOT}/testdata/tnl-tiny`;
const IDS = `${TINY}/golden.safetensors`;

async function tmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "tnl-reliability-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** A copy of the tiny model directory, optionally with model.safetensors replaced. */
async function modelDir(dir: string, weights?: Uint8Array): Promise<string> {
  const m = `${dir}/model`;
  await Deno.mkdir(m, { recursive: true });
  await Deno.copyFile(`${TINY}/config.json`, `${m}/config.json`);
  await Deno.writeFile(`${m}/model.safetensors`, weights ?? await Deno.readFile(`${TINY}/model.safetensors`));
  return m;
}

/** model.safetensors split into its header (parsed) and data section. */
async function tinyWeights() {
  const bytes = await Deno.readFile(`${TINY}/model.safetensors`);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { bytes, header, data: bytes.subarray(8 + n) };
}

function withHeader(headerText: string, data: Uint8Array, lengthField?: bigint): Uint8Array {
  const h = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** Runs `tnl eval` on a model directory whose weights are `weights`; expects an input error naming `pattern`. */
async function evalRefuses(weights: Uint8Array, pattern: RegExp, code = EXIT_CODES.input) {
  await tmp(async (dir) => {
    const m = await modelDir(dir, weights);
    const before = await snapshot(dir);
    const r = await tnl(["eval", "--model", m, "--input-ids", IDS, "--json"]);
    assert.equal(r.code, code, r.stderr);
    const line = errorLines(r.stderr)[0];
    assert.match(line, /model\.safetensors/, "names the file");
    assert.match(line, pattern);
    assert.equal(r.stdout, "");
    await assertKept(dir, before);
  });
}

// ---------------------------------------------------------------- files

Deno.test("reliability: a missing file", async () => {
  const r = await tnl(["train", "/no/such/config.yaml"]);
  assert.equal(r.code, EXIT_CODES.io);
  assert.match(oneErrorLine(r.stderr), /cannot read \/no\/such\/config\.yaml: no such file/);
});

Deno.test("reliability: an unreadable file", async () => {
  await tmp(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.txt`, "some text");
    // Permission checks do not bind root: deny the read through Deno's permissions instead.
    const r = await tnl(["tokenize", "train", `${dir}/a.txt`, "--vocab-size", "300", "-o", `${dir}/t.json`], {
      flags: ["--allow-read", `--deny-read=${dir}/a.txt`, "--allow-write", "--allow-env", "--allow-run"],
    });
    assert.equal(r.code, EXIT_CODES.io, r.stderr);
    assert.match(oneErrorLine(r.stderr), /a\.txt: permission denied/);
  });
});

Deno.test("reliability: a directory where a file is expected", async () => {
  await tmp(async (dir) => {
    const r = await tnl(["train", dir]);
    assert.equal(r.code, EXIT_CODES.io);
    assert.match(oneErrorLine(r.stderr), /is a directory/);
  });
});

Deno.test("reliability: an empty corpus", async () => {
  await tmp(async (dir) => {
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    const r = await tnl([
      "tokenize",
      "train",
      `${dir}/empty.txt`,
      "--vocab-size",
      "300",
      "-o",
      `${dir}/t.json`,
    ]);
    assert.equal(r.code, EXIT_CODES.input);
    assert.match(oneErrorLine(r.stderr), /empty corpus: .*empty\.txt/);
    await writeTokenFile(`${dir}/empty.bin`, [], 64);
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      "model:\n  preset: tnl-tiny\ndata:\n  train: empty.bin\ntrain:\n  steps: 1\nout_dir: run\n",
    );
    const t = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(t.code, EXIT_CODES.input);
    assert.match(oneErrorLine(t.stderr), /data\.train: the data is empty \(.*empty\.bin\)/);
  });
});

Deno.test("reliability: an empty prompt file", async () => {
  await tmp(async (dir) => {
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    const r = await tnl(["generate", "--model", TINY, "-f", `${dir}/empty.txt`, "-n", "2"]);
    assert.notEqual(r.code, 0);
    assert.match(oneErrorLine(r.stderr), /empty/);
    assert.equal(r.stdout, "");
  });
});

// ---------------------------------------------------------------- training configs

async function configRefused(yaml: string, patterns: RegExp[], code = EXIT_CODES.input) {
  await tmp(async (dir) => {
    await writeTokenFile(`${dir}/d.bin`, Array.from({ length: 400 }, (_, i) => i % 64), 64);
    await Deno.writeTextFile(`${dir}/c.yaml`, yaml);
    const before = await snapshot(dir);
    const r = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(r.code, code, r.stderr);
    const lines = errorLines(r.stderr);
    assert.equal(lines.length, patterns.length, `one line per problem:\n${r.stderr}`);
    patterns.forEach((p, i) => assert.match(lines[i], p));
    await assertKept(dir, before);
  });
}

const GOOD = (over: string) =>
  `model:\n  preset: tnl-tiny\ndata:\n  train: d.bin\ntrain:\n  batch_size: 2\n  seq_len: 8\n  steps: 1\n${over}out_dir: run\n`;

Deno.test("reliability: invalid YAML names line and column", async () => {
  await configRefused("model: {preset: tnl-tiny\n", [/c\.yaml:\d+:\d+: .*(indented|end with)/]);
});

Deno.test("reliability: a duplicate key", async () => {
  await configRefused(GOOD("").replace("  steps: 1\n", "  steps: 1\n  steps: 2\n"), [
    /c\.yaml:9:3: Map keys must be unique/,
  ]);
});

Deno.test("reliability: an unknown key suggests the closest", async () => {
  await configRefused(GOOD("").replace("  steps: 1\n", "  steps: 1\n  lerning_rate: 1\n"), [
    /c\.yaml:9:3: unknown key train\.lerning_rate/,
  ]);
  await configRefused(GOOD("").replace("  steps: 1\n", "  steps: 1\n  warmup_step: 1\n"), [
    /did you mean train\.warmup_steps\?/,
  ]);
});

Deno.test("reliability: a wrong type", async () => {
  await configRefused(GOOD("").replace("batch_size: 2", "batch_size: two"), [
    /c\.yaml:6:15: train\.batch_size = "two": expected an integer/,
  ]);
});

Deno.test("reliability: negative or zero sizes", async () => {
  await configRefused(GOOD("").replace("batch_size: 2", "batch_size: -2"), [
    /train\.batch_size = -2: expected an integer ≥ 1/,
  ]);
  await configRefused(GOOD("").replace("preset: tnl-tiny", "preset: tnl-tiny\n  glu_dim: 0"), [
    /glu_dim = 0: must be at least 1/,
  ]);
});

Deno.test("reliability: heads not dividing the width", async () => {
  await configRefused(
    GOOD("").replace("preset: tnl-tiny", "preset: tnl-tiny\n  decoder_attention_heads: 5"),
    [
      /c\.yaml:3:3: model\.decoder_attention_heads = 5 does not divide hidden_dim = 64/,
    ],
  );
});

Deno.test("reliability: fewer than 2 layers", async () => {
  await configRefused(
    GOOD("").replace(
      "preset: tnl-tiny",
      "preset: tnl-tiny\n  decoder_layers: 1\n  linear_use_lrpe_list: [1]",
    ),
    [
      /model\.decoder_layers = 1: unsupported/,
    ],
  );
});

Deno.test("reliability: seq_len 0", async () => {
  await configRefused(GOOD("").replace("seq_len: 8", "seq_len: 0"), [
    /train\.seq_len = 0: expected an integer ≥ 1/,
  ]);
});

Deno.test("reliability: lr NaN", async () => {
  await configRefused(GOOD("").replace("  steps: 1\n", "  steps: 1\n  lr: .nan\n"), [
    /train\.lr = NaN: expected a finite number/,
  ]);
});

Deno.test("reliability: steps and tokens both set", async () => {
  await configRefused(GOOD("").replace("  steps: 1\n", "  steps: 1\n  tokens: 100\n"), [
    /give either steps or tokens, not both/,
  ]);
});

Deno.test("reliability: several errors in one config are all reported, in order", async () => {
  await configRefused(
    "model:\n  preset: tnl-tiny\n  decoder_layrs: 3\ndata:\n  train: d.bin\ntrain:\n  batch_size: 0\n  seq_len: x\n",
    [
      /unknown key model\.decoder_layrs \(did you mean model\.decoder_layers\?\)/,
      /train\.batch_size = 0/,
      /train\.seq_len = "x"/,
      /missing key out_dir/,
      /missing key train\.steps or train\.tokens/,
    ],
  );
});

Deno.test("reliability: out_dir inside a file", async () => {
  await tmp(async (dir) => {
    await writeTokenFile(`${dir}/d.bin`, Array.from({ length: 400 }, (_, i) => i % 64), 64);
    await Deno.writeTextFile(`${dir}/file`, "not a directory");
    await Deno.writeTextFile(`${dir}/c.yaml`, GOOD("").replace("out_dir: run", "out_dir: file/run"));
    const before = await snapshot(dir);
    const r = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(r.code, EXIT_CODES.io, r.stderr);
    assert.match(oneErrorLine(r.stderr), /file\/run/);
    await assertKept(dir, before);
  });
});

Deno.test("reliability: a model vocabulary smaller than the tokenizer's, and ids beyond the model's", async () => {
  await tmp(async (dir) => {
    await Deno.copyFile(`${REPO_ROOT}/testdata/tokenizers/hf-bytelevel-bpe-2k.json`, `${dir}/tok.json`);
    await Deno.writeTextFile(`${dir}/a.txt`, "some text to train on\n");
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      "model:\n  preset: tnl-tiny\n  vocab_size: 1000\ndata:\n  train: a.txt\n  tokenizer: tok.json\ntrain:\n  steps: 1\nout_dir: run\n",
    );
    const r = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(r.code, EXIT_CODES.input, r.stderr);
    assert.match(
      oneErrorLine(r.stderr),
      /vocab_size = 1000 is smaller than the vocabulary of the tokenizer or token files \(2000\)/,
    );
    // Token files made with another, larger tokenizer: an id beyond the model's vocabulary.
    await writeTokenFile(`${dir}/big.bin`, [1, 2, 3000, 4, 5, 6, 7, 8, 9, 10, 11], 4000);
    await Deno.writeTextFile(
      `${dir}/c2.yaml`,
      "model:\n  preset: tnl-tiny\ndata:\n  train: big.bin\n  tokenizer: tok.json\ntrain:\n  batch_size: 1\n  seq_len: 4\n  steps: 1\nout_dir: run\n",
    );
    const r2 = await tnl(["train", `${dir}/c2.yaml`]);
    assert.equal(r2.code, EXIT_CODES.input, r2.stderr);
    assert.match(
      oneErrorLine(r2.stderr),
      /data\.train: token 2 has id 3000, not below the model's vocabulary of 2000/,
    );
  });
});

// ---------------------------------------------------------------- safetensors

Deno.test("reliability: a truncated safetensors file", async () => {
  const { bytes } = await tinyWeights();
  await evalRefuses(bytes.subarray(0, bytes.length - 100), /truncat|bytes|end/i);
});

Deno.test("reliability: a header length beyond the file", async () => {
  const { header, data } = await tinyWeights();
  await evalRefuses(withHeader(JSON.stringify(header), data, 10n ** 9n), /header/i);
});

Deno.test("reliability: a header over 100 MB", async () => {
  const { header, data } = await tinyWeights();
  await evalRefuses(withHeader(JSON.stringify(header), data, 200_000_000n), /100|header/i);
});

Deno.test("reliability: a header that is not JSON", async () => {
  const { data } = await tinyWeights();
  await evalRefuses(withHeader("{not json", data), /JSON/);
});

Deno.test("reliability: a header that is not an object", async () => {
  const { data } = await tinyWeights();
  await evalRefuses(withHeader("[1, 2, 3]", data), /object/);
});

Deno.test("reliability: duplicate tensor names", async () => {
  const { header, data } = await tinyWeights();
  const text = JSON.stringify(header);
  const first = Object.keys(header).find((k) => k !== "__metadata__")!;
  const dup = text.replace("{", `{${JSON.stringify(first)}:${JSON.stringify(header[first])},`);
  await evalRefuses(withHeader(dup, data), /duplicate/i);
});

Deno.test("reliability: an unknown dtype", async () => {
  const { header, data } = await tinyWeights();
  header["lm_head.weight"].dtype = "F33";
  await evalRefuses(withHeader(JSON.stringify(header), data), /F33/);
});

Deno.test("reliability: shape × dtype ≠ byte range", async () => {
  const { header, data } = await tinyWeights();
  header["lm_head.weight"].shape = [255, 64];
  await evalRefuses(withHeader(JSON.stringify(header), data), /lm_head\.weight/);
});

Deno.test("reliability: overlapping or gapped offsets", async () => {
  const { header, data } = await tinyWeights();
  const names = Object.keys(header).filter((k) => k !== "__metadata__").sort((a, b) =>
    header[a].data_offsets[0] - header[b].data_offsets[0]
  );
  const overlap = structuredClone(header);
  overlap[names[1]].data_offsets = [
    overlap[names[1]].data_offsets[0] - 4,
    overlap[names[1]].data_offsets[1] - 4,
  ];
  await evalRefuses(withHeader(JSON.stringify(overlap), data), /overlap|gap|offset/i);
  const gap = structuredClone(header);
  const last = names.at(-1)!;
  gap[last].data_offsets = [gap[last].data_offsets[0] + 4, gap[last].data_offsets[1] + 4];
  await evalRefuses(
    withHeader(JSON.stringify(gap), new Uint8Array([...data, 0, 0, 0, 0])),
    /overlap|gap|offset/i,
  );
});

Deno.test("reliability: offsets beyond 2^53", async () => {
  const { header, data } = await tinyWeights();
  const text = JSON.stringify(header).replace(
    JSON.stringify(header["lm_head.weight"].data_offsets),
    "[9007199254740993,9007199254741093]",
  );
  await evalRefuses(withHeader(text, data), /2\^53|safe|offset/i);
});

Deno.test("reliability: NaN and Inf weights are refused for eval, generation and training, naming the tensor", async () => {
  const { bytes, header } = await tinyWeights();
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const bad = bytes.slice();
  const start = 8 + n + header["model.layers.1.channel_mixer.l3.weight"].data_offsets[0];
  new DataView(bad.buffer).setFloat32(start + 8, NaN, true);
  await evalRefuses(bad, /tensor model\.layers\.1\.channel_mixer\.l3\.weight in .* has NaN at index 2/);
  await tmp(async (dir) => {
    const m = await modelDir(dir, bad);
    const g = await tnl(["generate", "--model", m, "--prompt-ids", "1,2,3", "-n", "2"]);
    assert.equal(g.code, EXIT_CODES.input);
    assert.match(oneErrorLine(g.stderr), /l3\.weight in .* has NaN/);
    await writeTokenFile(`${dir}/d.bin`, Array.from({ length: 400 }, (_, i) => i % 64), 256);
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      `model:\n  init_from: model\ndata:\n  train: d.bin\ntrain:\n  batch_size: 1\n  seq_len: 8\n  steps: 1\nout_dir: run\n`,
    );
    const t = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(t.code, EXIT_CODES.input, t.stderr);
    assert.match(oneErrorLine(t.stderr), /l3\.weight in .* has NaN/);
  });
  const inf = bytes.slice();
  new DataView(inf.buffer).setFloat32(start, -Infinity, true);
  await evalRefuses(inf, /has -Infinity at index 0/);
});

Deno.test("reliability: a tensor missing, extra or of the wrong shape for the config", async () => {
  await tmp(async (dir) => {
    const m = await modelDir(dir);
    const cfg = JSON.parse(await Deno.readTextFile(`${m}/config.json`));
    await Deno.writeTextFile(
      `${m}/config.json`,
      JSON.stringify({ ...cfg, glu_dim: 96, linear_use_lrpe_list: [0, 0], decoder_layers: 2 }),
    );
    const before = await snapshot(dir);
    const r = await tnl(["eval", "--model", m, "--input-ids", IDS]);
    assert.equal(r.code, EXIT_CODES.input);
    const lines = errorLines(r.stderr);
    assert.ok(
      lines.some((l) => /l1\.weight has shape \[128,64\], the config needs \[96,64\]/.test(l)),
      r.stderr,
    );
    assert.ok(
      lines.some((l) => /unexpected tensor model\.layers\.0\.token_mixer\.lrpe\.theta/.test(l)),
      r.stderr,
    );
    await assertKept(dir, before);
    await Deno.writeTextFile(
      `${m}/config.json`,
      JSON.stringify({ ...cfg, decoder_layers: 3, linear_use_lrpe_list: [1, 0, 0] }),
    );
    const again = await snapshot(dir);
    const r2 = await tnl(["eval", "--model", m, "--input-ids", IDS]);
    assert.ok(
      errorLines(r2.stderr).some((l) =>
        /missing tensor model\.layers\.2\.token_mixer\.qkvu_proj\.weight/.test(l)
      ),
      r2.stderr,
    );
    await assertKept(dir, again);
  });
});

Deno.test("reliability: a PyTorch checkpoint whose pickle asks for another global is refused", async () => {
  await tmp(async (dir) => {
    const m = `${dir}/model`;
    await Deno.mkdir(m);
    await Deno.copyFile(`${REPO_ROOT}/testdata/tnl-tiny-torch/config.json`, `${m}/config.json`);
    const entries = await unzip(
      await Deno.readFile(`${REPO_ROOT}/testdata/tnl-tiny-torch/pytorch_model.bin`),
    );
    const pkl = entries.find((e) => e.name.endsWith("data.pkl"))!;
    // Rewrite the first global (collections OrderedDict) as posix system: a classic payload.
    const enc = new TextEncoder();
    const from = enc.encode("collections\nOrderedDict\n"), to = enc.encode("posix\nsystem\n");
    const at = pkl.data.findIndex((_, i) => from.every((b, j) => pkl.data[i + j] === b));
    assert.ok(at >= 0, "the pickle names collections.OrderedDict");
    pkl.data = new Uint8Array([...pkl.data.subarray(0, at), ...to, ...pkl.data.subarray(at + from.length)]);
    await Deno.writeFile(`${m}/pytorch_model.bin`, await makeZip(entries));
    const r = await tnl(["eval", "--model", m, "--input-ids", IDS]);
    assert.equal(r.code, EXIT_CODES.input, r.stderr);
    assert.match(oneErrorLine(r.stderr), /posix\.system/);
  });
});

// ---------------------------------------------------------------- checkpoints and training faults

const TRAIN = (steps: number, extra = "") =>
  `model:\n  preset: tnl-tiny\ndata:\n  train: d.bin\ntrain:\n  batch_size: 2\n  seq_len: 8\n  steps: ${steps}\n  log_every: 1\n  save_every: 1\n  warmup_steps: 1\n${extra}out_dir: run\n`;

async function trainDir(dir: string, steps: number, extra = "") {
  await writeTokenFile(`${dir}/d.bin`, Array.from({ length: 600 }, (_, i) => (i * 7) % 64), 64);
  await Deno.writeTextFile(`${dir}/c.yaml`, TRAIN(steps, extra));
}

Deno.test("reliability: a checkpoint directory without DONE is skipped with a note", async () => {
  await tmp(async (dir) => {
    await trainDir(dir, 2);
    assert.equal((await tnl(["train", `${dir}/c.yaml`])).code, 0);
    await Deno.remove(`${dir}/run/ckpt-000002/DONE`);
    await Deno.writeTextFile(`${dir}/c.yaml`, TRAIN(3));
    const r = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /skipping .*ckpt-000002: no DONE marker/);
    assert.match(r.stderr, /resuming from .*ckpt-000001/);
  });
});

Deno.test("reliability: resuming with a changed model config is refused unless --force", async () => {
  await tmp(async (dir) => {
    await trainDir(dir, 1);
    assert.equal((await tnl(["train", `${dir}/c.yaml`])).code, 0);
    const before = await snapshot(`${dir}/run`);
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      TRAIN(2).replace("preset: tnl-tiny", "preset: tnl-tiny\n  init_std: 0.05"),
    );
    const r = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(r.code, EXIT_CODES.input);
    assert.match(oneErrorLine(r.stderr), /model config differs .*--force/);
    await assertKept(`${dir}/run`, before);
    const f = await tnl(["train", `${dir}/c.yaml`, "--force"]);
    assert.equal(f.code, 0, f.stderr);
  });
});

Deno.test("reliability: two tnl train on one out_dir", async () => {
  await tmp(async (dir) => {
    await trainDir(dir, 400, "  eval_every: 1000\n");
    const first = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${REPO_ROOT}/main.ts`, "train", `${dir}/c.yaml`],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      for (let i = 0; i < 200; i++) {
        try {
          await Deno.stat(`${dir}/run/LOCK`);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const r = await tnl(["train", `${dir}/c.yaml`]);
      assert.equal(r.code, EXIT_CODES.io, r.stderr);
      assert.match(oneErrorLine(r.stderr), /in use by another tnl train \(pid \d+/);
    } finally {
      first.kill("SIGKILL");
      await first.output();
    }
  });
});

Deno.test(
  "reliability: SIGINT, even during a checkpoint write, leaves every checkpoint loadable; SIGKILL too",
  gpuTest,
  async () => {
    await tmp(async (dir) => {
      await trainDir(dir, 400, "  eval_every: 1000\n");
      for (const signal of ["SIGINT", "SIGKILL"] as const) {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", `${REPO_ROOT}/main.ts`, "train", `${dir}/c.yaml`],
          stdout: "null",
          stderr: "piped",
        }).spawn();
        // A checkpoint is written after every step: wait for two, then signal at some moment of the next.
        for (let i = 0; i < 600; i++) {
          const names = [];
          try {
            for await (const e of Deno.readDir(`${dir}/run`)) names.push(e.name);
          } catch { /* not yet */ }
          if (names.filter((n) => /^ckpt-\d+$/.test(n)).length >= 2) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        await new Promise((r) => setTimeout(r, 37));
        child.kill(signal);
        const out = await child.output();
        if (signal === "SIGINT") {
          assert.equal(out.code, 130, new TextDecoder().decode(out.stderr));
          assert.match(new TextDecoder().decode(out.stderr), /SIGINT: stopped after step \d+; saved/);
        }
        const gpu = await openGpu();
        try {
          for await (const e of Deno.readDir(`${dir}/run`)) {
            if (!/^ckpt-\d+$/.test(e.name)) continue;
            try {
              await Deno.stat(`${dir}/run/${e.name}/DONE`);
            } catch {
              continue; // an interrupted save: not a checkpoint
            }
            const { model } = await loadModel(gpu, `${dir}/run/${e.name}`);
            model.destroy();
          }
        } finally {
          gpu.close();
        }
        await Deno.remove(`${dir}/run/LOCK`).catch(() => {});
      }
    });
  },
);

Deno.test("reliability: a full disk while saving keeps the last good checkpoint and says so", async () => {
  await tmp(async (dir) => {
    await trainDir(dir, 2);
    assert.equal((await tnl(["train", `${dir}/c.yaml`])).code, 0);
    const before = await snapshot(`${dir}/run`);
    await Deno.writeTextFile(`${dir}/c.yaml`, TRAIN(3));
    const r = await tnl(["train", `${dir}/c.yaml`], { env: { TNL_FAULT_WRITE: "model.safetensors" } });
    assert.equal(r.code, EXIT_CODES.io, r.stderr);
    assert.match(
      oneErrorLine(r.stderr),
      /No space left on device.*the last good checkpoint is .*ckpt-000002/,
    );
    for (const [path, hash] of before) {
      if (path.startsWith("ckpt-")) assert.equal((await snapshot(`${dir}/run`)).get(path), hash, path);
    }
    const names = [];
    for await (const e of Deno.readDir(`${dir}/run`)) names.push(e.name);
    assert.ok(!names.some((n) => n.includes(".tmp")), `no temporary left: ${names}`);
  });
});

Deno.test("reliability: the loss becomes NaN (a huge lr): training stops naming the step, the last good checkpoint stays", async () => {
  await tmp(async (dir) => {
    await trainDir(dir, 30, "  lr: 1.0e+9\n  grad_clip: 0\n");
    const r = await tnl(["train", `${dir}/c.yaml`]);
    assert.equal(r.code, EXIT_CODES.diverged, r.stderr);
    assert.match(
      oneErrorLine(r.stderr),
      /training diverged: .*not finite at step \d+.*last good checkpoint is/,
    );
  });
});

// ---------------------------------------------------------------- generation and evaluation

Deno.test("reliability: token ids beyond the vocabulary", async () => {
  const r = await tnl(["generate", "--model", TINY, "--prompt-ids", "1,2,999", "-n", "2"]);
  assert.equal(r.code, EXIT_CODES.input);
  assert.match(oneErrorLine(r.stderr), /999/);
});

Deno.test("reliability: -n below -1 and sampling values out of range", async () => {
  for (
    const [flags, pattern] of [
      [["-n", "-2"], /-n/],
      [["--top-p", "1.5"], /top-p/],
      [["--top-p", "0"], /top-p/],
      [["--temp", "-1"], /temp/],
      [["--top-k", "-3"], /top-k/],
      [["--min-p", "2"], /min-p/],
    ] as const
  ) {
    const r = await tnl(["generate", "--model", TINY, "--prompt-ids", "1,2", ...flags]);
    assert.equal(r.code, EXIT_CODES.usage, `${flags.join(" ")}: ${r.stderr}`);
    assert.match(oneErrorLine(r.stderr), pattern);
  }
});

Deno.test(
  "reliability: invalid UTF-8 in the prompt bytes is kept as bytes by a byte-level tokenizer",
  gpuTest,
  async () => {
    await tmp(async (dir) => {
      // A random model with the tokenizer's vocabulary.
      const tokPath = `${REPO_ROOT}/testdata/tokenizers/hf-bytelevel-bpe-2k.json`;
      const cfg = { ...HF_DEFAULTS, ...PRESETS["tnl-tiny"], vocab_size: 2000 };
      const gpu = await openGpu();
      try {
        const model = TnlModel.init(gpu, resolveDims(cfg, "test"), 1);
        await Deno.mkdir(`${dir}/m`);
        await saveModel(model, cfg, `${dir}/m`);
        model.destroy();
      } finally {
        gpu.close();
      }
      await Deno.copyFile(tokPath, `${dir}/m/tokenizer.json`);
      const bytes = new Uint8Array([0x61, 0xff, 0xfe, 0x62]);
      await Deno.writeFile(`${dir}/p.txt`, bytes);
      const r = await tnl([
        "generate",
        "--model",
        `${dir}/m`,
        "-f",
        `${dir}/p.txt`,
        "-n",
        "2",
        "--temp",
        "0",
        "--json",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      const tok = await loadTokenizer(tokPath);
      assert.equal(
        j.timings.prompt_n,
        tok.encodeBytes!(bytes).length,
        `the prompt's bytes, each kept: ${r.stdout}`,
      );
    });
  },
);

// ---------------------------------------------------------------- GPU

Deno.test("reliability: a model over the device's buffer limit names the size needed and the limit", async () => {
  // tnl-7b's 6.8B parameters need a 27 GB buffer: refused before allocating anything.
  const r = await tnl([
    "bench",
    "model",
    "--preset",
    "tnl-7b",
    "--filter",
    "train-step",
    "--repeats",
    "1",
    "--warmup",
    "0",
  ]);
  assert.equal(r.code, EXIT_CODES.gpu, r.stderr);
  assert.match(
    oneErrorLine(r.stderr),
    /need a \d+-byte buffer; this device allows \d+ bytes per buffer \(maxBufferSize\)/,
  );
});

Deno.test(
  "reliability: the device lost mid-run: a clear error, the checkpoints intact",
  gpuTest,
  async () => {
    await tmp(async (dir) => {
      await trainDir(dir, 50, "  eval_every: 1000\n");
      const gpu = await openGpu();
      let steps = 0;
      const cfg = parseTrainConfig(await Deno.readTextFile(`${dir}/c.yaml`), `${dir}/c.yaml`);
      await assert.rejects(
        () =>
          train(gpu, cfg, {
            log: () => {},
            interactive: false,
            // The hook runs after every step: lose the device after the third.
            interrupted: () => {
              if (++steps === 3) gpu.device.destroy();
              return null;
            },
          }),
        (e) => {
          assert.ok(e instanceof TnlError && e.kind === "gpu", String(e));
          assert.match(e.message, /device lost/);
          return true;
        },
      );
      const check = await openGpu();
      try {
        for (const name of ["ckpt-000001", "ckpt-000002"]) {
          const { model } = await loadModel(check, `${dir}/run/${name}`);
          model.destroy();
        }
      } finally {
        check.close();
      }
    });
  },
);
