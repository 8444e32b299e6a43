// `tnl train`: the training loop. One compute pass per optimizer step (forward and backward of every
// micro-batch, gradient norm, clipping, AdamW); losses accumulate on the GPU and are read every `log_every`
// steps; checkpoints resume exactly (parameters, moments, data position, the partial loss sum).

import { loadModel, saveModel } from "./checkpoint.ts";
import { parameterCount, type TnlConfig } from "./config.ts";
import { checkVocab, loadTokens, type TokenStream, validationWindows, WindowSampler } from "./data.ts";
import { ioError, TnlError } from "./errors.ts";
import { writeFileAtomic } from "./files.ts";
import type { Gpu } from "./gpu.ts";
import { Activations, BatchInputs, forward, forwardBackward, TnlModel } from "./model.ts";
import { OptimizerState } from "./optimizer.ts";
import { Progress } from "./progress.ts";
import { MqarSampler, mqarValidationSeed } from "./mqar.ts";
import { checkpointName, listCheckpoints, MetricsLog, RunLock, writeCheckpoint } from "./run.ts";
import { SafetensorsFile, writeSafetensors } from "./safetensors.ts";
import { lineChart } from "./svg.ts";
import { Tensor } from "./tensor.ts";
import { loadTokenizer, type Tokenizer, tokenizerFile } from "./tokenizer.ts";
import { type TrainConfig, trainDims, type TrainSettings } from "./train_config.ts";
import { gitCommit, runtimeVersions, VERSION } from "./version.ts";
import { axpy } from "../kernels/elementwise.ts";
import { FLAG_CLEAR } from "../kernels/reduce.ts";

export interface TrainOptions {
  /** start over although checkpoints exist (refused unless `overwrite`) */
  fresh?: boolean;
  /** with `fresh`: move existing checkpoints and logs to out_dir/old-<time>/ */
  overwrite?: boolean;
  /** resume although the model config changed */
  force?: boolean;
  /** progress and notes (stderr) */
  log: (line: string) => void;
  /** set when SIGINT/SIGTERM arrived: the loop finishes the step, saves and returns */
  interrupted?: () => "SIGINT" | "SIGTERM" | null;
  /** interactive progress bar (default: when stderr is a terminal) */
  interactive?: boolean;
}

export interface TrainSummary {
  out_dir: string;
  step: number;
  steps: number;
  tokens: number;
  train_loss: number | null;
  val_loss: number | null;
  best_val_loss: number | null;
  best_step: number | null;
  elapsed_s: number;
  tokens_per_s: number;
  checkpoint: string | null;
  resumed_from: string | null;
  finished: boolean;
  interrupted: "SIGINT" | "SIGTERM" | null;
  already_finished: boolean;
}

interface RunState {
  step: number;
  tokens: number;
  rng: number[];
  /** sum of the per-step losses since the last train row (f32, restored exactly) */
  loss_sum: number;
  loss_count: number;
  best_val_loss: number | null;
  best_step: number | null;
  elapsed_s: number;
  config_hash: string;
}

/** lr at 0-based step s: linear warm-up lr·(s+1)/warmup, then the schedule down to min_lr at the last step. */
export function learningRate(t: TrainSettings, s: number, total: number): number {
  if (s < t.warmup_steps) return (t.lr * (s + 1)) / t.warmup_steps;
  if (t.schedule === "constant") return t.lr;
  const p = Math.min(1, (s - t.warmup_steps) / Math.max(1, total - t.warmup_steps));
  if (t.schedule === "linear") return t.lr - (t.lr - t.min_lr) * p;
  return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + Math.cos(Math.PI * p));
}

/** Total optimizer steps of a config (`tokens` is rounded up to whole steps). */
export function totalSteps(t: TrainSettings): number {
  if (t.steps !== null) return t.steps;
  return Math.ceil((t.tokens ?? 0) / (t.batch_size * t.seq_len * t.grad_accum));
}

function hashText(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const c of new TextEncoder().encode(s)) h = ((h ^ BigInt(c)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, "0");
}

/** What a resume must not change: the model's architecture and vocabulary. */
export function modelHash(c: TnlConfig): string {
  const keys = Object.keys(c).sort() as (keyof TnlConfig)[];
  return hashText(JSON.stringify(keys.map((k) => [k, c[k]])));
}

async function ensureDir(dir: string): Promise<void> {
  try {
    const st = await Deno.stat(dir);
    if (!st.isDirectory) throw new TnlError("io", `out_dir ${dir} is a file, not a directory`);
  } catch (e) {
    if (e instanceof TnlError) throw e;
    if (!(e instanceof Deno.errors.NotFound)) throw ioError("use", dir, e);
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e2) {
      throw ioError("create out_dir", dir, e2);
    }
  }
}

export async function train(gpu: Gpu, cfg: TrainConfig, opts: TrainOptions): Promise<TrainSummary> {
  const log = opts.log;
  const out = cfg.outDir.replace(/\/$/, "");
  await ensureDir(out);
  const lock = await RunLock.acquire(out, log);
  try {
    return await run(gpu, cfg, opts, out);
  } finally {
    lock.release();
  }
}

async function run(gpu: Gpu, cfg: TrainConfig, opts: TrainOptions, out: string): Promise<TrainSummary> {
  const log = opts.log;
  const t = cfg.train;
  const metrics = new MetricsLog(`${out}/metrics.jsonl`);
  let checkpoints = await listCheckpoints(out, log);
  if (opts.fresh && checkpoints.length) {
    if (!opts.overwrite) {
      throw new TnlError(
        "usage",
        `--fresh: ${out} has checkpoints (newest ${
          checkpoints.at(-1)!.name
        }); add --overwrite to move them to ${out}/old-<time>/`,
      );
    }
    const old = `${out}/old-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    await Deno.mkdir(old);
    for await (const e of Deno.readDir(out)) {
      if (/^(ckpt-\d+|ckpt-best|metrics\.jsonl|run\.json|loss\.svg)$/.test(e.name)) {
        await Deno.rename(`${out}/${e.name}`, `${old}/${e.name}`);
      }
    }
    log(`moved the previous run to ${old}`);
    checkpoints = [];
  }
  const resume = checkpoints.at(-1) ?? null;

  // ---- data and model
  const synthetic = cfg.data.synthetic;
  const tokenizerPath = cfg.data.tokenizer ? await tokenizerFile(cfg.data.tokenizer) : null;
  const tokenizer: Tokenizer | null = tokenizerPath ? await loadTokenizer(tokenizerPath) : null;
  const trainData = synthetic ? null : await loadTokens(cfg.data.train, tokenizer, `${cfg.path}: data.train`);
  const valData: TokenStream | null = !synthetic && cfg.data.val.length
    ? await loadTokens(cfg.data.val, tokenizer, `${cfg.path}: data.val`)
    : null;
  const vocabFromData = synthetic
    ? synthetic.mqar.vocab
    : tokenizer
    ? tokenizer.vocabSize
    : trainData!.vocabHint;
  let config: TnlConfig;
  let model: TnlModel;
  let state: RunState;
  const steps = totalSteps(t);
  if (resume) {
    const loaded = await loadModel(gpu, resume.dir);
    model = loaded.model;
    config = loaded.config;
    const want = trainDims(cfg, vocabFromData).config;
    state = JSON.parse(await Deno.readTextFile(`${resume.dir}/state.json`)) as RunState;
    if (
      state.config_hash !== modelHash({ ...want, tie_word_embeddings: config.tie_word_embeddings }) &&
      !opts.force
    ) {
      model.destroy();
      throw new TnlError(
        "input",
        `${cfg.path}: the model config differs from the one ${resume.dir} was trained with; resume with --force, or start over with --fresh --overwrite`,
      );
    }
    log(`resuming from ${resume.dir} (step ${state.step})`);
  } else if (cfg.initFrom) {
    const loaded = await loadModel(gpu, cfg.initFrom);
    model = loaded.model;
    config = loaded.config;
    for (const key of cfg.modelGiven) {
      const a = JSON.stringify(cfg.model[key as keyof TnlConfig]),
        b = JSON.stringify(config[key as keyof TnlConfig]);
      if (a !== b) {
        model.destroy();
        throw new TnlError(
          "input",
          `${cfg.path}: model.${key} = ${a}, but init_from ${cfg.initFrom} has ${b}`,
        );
      }
    }
    state = freshState(config);
    log(`initialised from ${cfg.initFrom}`);
  } else {
    const r = trainDims(cfg, vocabFromData);
    config = r.config;
    model = TnlModel.init(gpu, r.dims, t.seed);
    state = freshState(config);
  }
  const dims = model.dims;
  if (tokenizer && tokenizer.vocabSize > dims.vocab) {
    throw new TnlError(
      "input",
      `${cfg.path}: the model's vocabulary (${dims.vocab}) is smaller than the tokenizer's (${tokenizer.vocabSize})`,
    );
  }
  if (trainData) checkVocab(trainData, dims.vocab, `${cfg.path}: data.train`);
  if (valData) checkVocab(valData, dims.vocab, `${cfg.path}: data.val`);
  if (synthetic && synthetic.mqar.vocab > dims.vocab) {
    // A model from init_from or a checkpoint keeps its own vocabulary.
    throw new TnlError(
      "input",
      `${cfg.path}: data.vocab = ${synthetic.mqar.vocab} is larger than the model's vocabulary of ${dims.vocab}`,
    );
  }

  const summary = (extra: Partial<TrainSummary>): TrainSummary => ({
    out_dir: out,
    step: state.step,
    steps,
    tokens: state.tokens,
    train_loss: null,
    val_loss: null,
    best_val_loss: state.best_val_loss,
    best_step: state.best_step,
    elapsed_s: state.elapsed_s,
    tokens_per_s: 0,
    checkpoint: resume?.dir ?? null,
    resumed_from: resume?.dir ?? null,
    finished: state.step >= steps,
    interrupted: null,
    already_finished: false,
    ...extra,
  });
  if (resume && state.step >= steps) {
    log(`${out}: this run already finished (step ${state.step} of ${steps}); nothing to do`);
    model.destroy();
    return summary({ already_finished: true });
  }

  // ---- GPU state
  const B = t.batch_size, T = t.seq_len, accum = t.grad_accum;
  const acts = new Activations(gpu, dims, B, T, true);
  const inputs = Array.from(
    { length: accum },
    (_, i) => (i === 0 ? acts.input : new BatchInputs(gpu, dims, B, T, `micro ${i}`)),
  );
  const opt = new OptimizerState(gpu, model);
  const stats = Tensor.empty(gpu, [2], "f32", "train stats"); // [0] Σ step losses since the last row, [1] last norm
  const lossSum = Tensor.part(stats, 0, [1], "loss sum"), lastNorm = Tensor.part(stats, 1, [1], "last norm");
  const stepLoss = Tensor.part(acts.loss, 0, [1], "step loss");
  const sampler = synthetic
    ? new MqarSampler(synthetic.mqar, synthetic.seed)
    : new WindowSampler(trainData!.ids, T, t.seed, `${cfg.path}: data.train`);
  if (resume) {
    const o = await SafetensorsFile.open(`${resume.dir}/optimizer.safetensors`);
    try {
      opt.m.write(await o.readF32("adam.m"));
      opt.v.write(await o.readF32("adam.v"));
    } finally {
      o.close();
    }
    sampler.rng.state = state.rng;
    gpu.write(stats.buffer, new Float32Array([state.loss_sum, 0]));
    await metrics.truncateAfter(state.step);
  } else {
    await writeFileAtomic(`${out}/metrics.jsonl`, "");
  }
  // Validation: batches of B sequences (windows of the val split, or fixed synthetic sequences).
  const windows = valData ? validationWindows(valData.ids, T, t.eval_tokens) : [];
  const valSynthetic = synthetic && synthetic.valSamples > 0
    ? new MqarSampler(synthetic.mqar, mqarValidationSeed(synthetic.seed)).next(synthetic.valSamples)
    : null;
  const valSequences = valSynthetic ? synthetic!.valSamples : windows.length;
  const valPredicted = valSynthetic
    ? valSynthetic.targets.reduce((a, y) => a + (y === -100 ? 0 : 1), 0)
    : windows.length * T;
  const valBatch = (w0: number): { ids: Uint32Array; targets: Int32Array } => {
    const ids = new Uint32Array(B * T), targets = new Int32Array(B * T).fill(-100);
    for (let b = 0; b < B && w0 + b < valSequences; b++) {
      if (valSynthetic) {
        ids.set(valSynthetic.inputs.subarray((w0 + b) * T, (w0 + b + 1) * T), b * T);
        targets.set(valSynthetic.targets.subarray((w0 + b) * T, (w0 + b + 1) * T), b * T);
        continue;
      }
      const s = windows[w0 + b];
      ids.set(valData!.ids.subarray(s, s + T), b * T);
      for (let i = 0; i < T; i++) targets[b * T + i] = valData!.ids[s + i + 1];
    }
    return { ids, targets };
  };
  const tokensPerStep = B * T * accum;
  // Positions with a target per step: every one of text windows; the answers of synthetic sequences.
  const predictedPerStep = synthetic ? B * accum * synthetic.mqar.pairs : tokensPerStep;
  const runInfo = {
    tnl: VERSION,
    git_commit: await gitCommit(),
    runtime: runtimeVersions(),
    adapter: gpu.adapter,
    features: gpu.features,
    started: new Date().toISOString(),
    resumed_from: resume?.dir ?? null,
    config: { ...cfg, model: config },
  };
  await writeFileAtomic(`${out}/run.json`, JSON.stringify(runInfo, null, 2) + "\n");

  // ---- the parameter table
  const params = parameterCount(dims);
  log(
    [
      `model     ${
        cfg.preset ?? "custom"
      }: D=${dims.d} E=${dims.e} L=${dims.layers} H=${dims.heads} d=${dims.headDim} F=${dims.glu} V=${dims.vocab}` +
      ` LRPE [${dims.lrpe.map(Number).join(",")}] ${dims.tied ? "tied" : "untied"} head`,
      `params    ${(params / 1e6).toFixed(2)}M (${params})`,
      `train     B=${B} T=${T} grad_accum=${accum}: ${tokensPerStep} tokens/step, ${steps} steps (${
        (steps * tokensPerStep / 1e6).toFixed(2)
      }M tokens); lr ${t.lr} → ${t.min_lr} ${t.schedule}, warm-up ${t.warmup_steps}, wd ${t.weight_decay}, clip ${t.grad_clip}, seed ${t.seed}`,
      synthetic
        ? `data      synthetic mqar: vocab ${synthetic.mqar.vocab}, ${synthetic.mqar.pairs} pairs, seq_len ${T}, ` +
          `seed ${synthetic.seed}; val ${synthetic.valSamples} sequences (${valPredicted} answers)`
        : `data      train ${trainData!.ids.length} tokens (${trainData!.files.length} file${
          trainData!.files.length > 1 ? "s" : ""
        })` +
          (valData
            ? `, val ${valData.ids.length} tokens → ${windows.length} windows of ${T + 1}`
            : ", no validation split"),
      `device    ${gpu.adapter.description}${gpu.adapter.fallback ? " (software)" : ""}`,
      `out_dir   ${out}`,
    ].join("\n"),
  );

  // ---- helpers
  const hasVal = valSequences > 0;
  const evaluate = async (): Promise<number | null> => {
    if (!hasVal) return null;
    for (let w0 = 0; w0 < valSequences; w0 += B) {
      const { ids, targets } = valBatch(w0);
      acts.input.set(ids, { targets, train: false, what: `${cfg.path}: data.val` });
      gpu.run(
        "eval",
        (step) => forward(step, model, acts, { lossScale: 1 / valPredicted, accumulateLoss: w0 > 0 }),
      );
    }
    return (await acts.loss.readF32())[0];
  };
  const trainRows: [number, number][] = [], valRows: [number, number][] = [];
  for (const r of await metrics.rows()) {
    if (typeof r.loss === "number") trainRows.push([r.step as number, r.loss]);
    if (typeof r.val_loss === "number") valRows.push([r.step as number, r.val_loss]);
  }
  const plot = async () => {
    await writeFileAtomic(
      `${out}/loss.svg`,
      lineChart({
        header: [`tnl train: ${out}`, `${cfg.preset ?? "custom"} model, ${dims.vocab} tokens of vocabulary`],
        title: "Loss",
        x: { label: "optimizer step", log: false },
        y: { label: "loss (nats per token)", log: false },
        series: [{ name: "train", points: trainRows }, { name: "val", points: valRows }],
      }),
    );
  };
  const save = async (name: string): Promise<string> => {
    try {
      return await saveCheckpoint(name);
    } catch (e) {
      if (!(e instanceof TnlError)) throw e;
      const good = (await listCheckpoints(out, () => {})).at(-1)?.dir ?? "none";
      throw new TnlError(e.kind, `${e.message}; the last good checkpoint is ${good}`);
    }
  };
  const saveCheckpoint = async (name: string): Promise<string> => {
    const [sum] = await stats.readF32();
    const st: RunState = { ...state, rng: sampler.rng.state, loss_sum: sum };
    return await writeCheckpoint(out, name, async (dir) => {
      await saveModel(model, config, dir);
      await writeSafetensors(`${dir}/optimizer.safetensors`, [
        { name: "adam.m", dtype: "F32", shape: [model.layout.total], data: () => opt.m.readF32() },
        { name: "adam.v", dtype: "F32", shape: [model.layout.total], data: () => opt.v.readF32() },
      ], { step: String(state.step) });
      if (tokenizerPath) {
        const file = tokenizerPath.endsWith(".json") ? "tokenizer.json" : "tokenizer.model";
        await writeFileAtomic(`${dir}/${file}`, await Deno.readFile(tokenizerPath));
        const special = (
          id: number | null,
        ) => (id === null || !tokenizer ? null : tokenizer.idToToken(id) ?? null);
        await writeFileAtomic(
          `${dir}/tokenizer_config.json`,
          JSON.stringify(
            {
              add_bos_token: true,
              add_eos_token: false,
              bos_token: special(tokenizer!.specialIds.eos) ?? "</s>",
              eos_token: special(tokenizer!.specialIds.eos) ?? "</s>",
              pad_token: special(tokenizer!.specialIds.pad),
              unk_token: special(tokenizer!.specialIds.unk),
              model_max_length: 1e30,
            },
            null,
            2,
          ) + "\n",
        );
      }
      await writeFileAtomic(`${dir}/state.json`, JSON.stringify(st, null, 2) + "\n");
    });
  };
  const prune = async () => {
    const all = await listCheckpoints(out, () => {});
    for (const c of all.slice(0, Math.max(0, all.length - t.keep_last))) {
      await Deno.remove(c.dir, { recursive: true });
    }
  };
  const readFlag = async () => (await opt.flag.read())[0];

  // ---- the loop
  const progress = new Progress("train", steps, { interactive: opts.interactive });
  const startWall = performance.now(), startElapsed = state.elapsed_s, startStep = state.step;
  let windowStart = performance.now(), windowTokens = 0;
  let lastTrainLoss: number | null = null,
    lastVal: number | null = null,
    lastCkpt: string | null = resume?.dir ?? null;
  let savedStep = resume ? state.step : -1;
  let interrupted: "SIGINT" | "SIGTERM" | null = null;
  const stopOnDivergence = async (what: string) => {
    const good = (await listCheckpoints(out, () => {})).at(-1)?.dir ?? "none";
    throw new TnlError("diverged", `training diverged: ${what}; the last good checkpoint is ${good}`);
  };
  if (!resume && hasVal) {
    lastVal = await evaluate();
    if (lastVal !== null) {
      await metrics.append({ step: 0, val_loss: lastVal });
      valRows.push([0, lastVal]);
      log(`step 0: val loss ${lastVal.toFixed(4)} (ln V = ${Math.log(dims.vocab).toFixed(4)})`);
      await plot();
    }
  }
  while (state.step < steps) {
    const s = state.step;
    const lr = learningRate(t, s, steps);
    gpu.run(`train step ${s + 1}`, (step) => {
      for (let i = 0; i < accum; i++) {
        const { inputs: ids, targets } = sampler.next(B);
        inputs[i].set(ids, { targets, what: `${cfg.path}: data.train` });
        forwardBackward(step, model, acts, opt.grads, {
          input: inputs[i],
          lossScale: 1 / predictedPerStep,
          accumulate: i > 0,
          accumulateLoss: i > 0,
        });
      }
      opt.update(step, {
        lr,
        beta1: t.betas[0],
        beta2: t.betas[1],
        eps: t.eps,
        weightDecay: t.weight_decay,
        clip: t.grad_clip,
        step: s + 1,
      });
      axpy(step, stepLoss, lossSum, 1, 1);
      axpy(step, opt.norm, lastNorm, 1, 0);
    });
    state.step++;
    state.tokens += tokensPerStep;
    state.loss_count++;
    windowTokens += tokensPerStep;
    const now = performance.now();
    state.elapsed_s = startElapsed + (now - startWall) / 1000;
    const last = state.step === steps;
    interrupted = opts.interrupted?.() ?? null;
    if (state.step % t.log_every === 0 || last) {
      const [sum, norm] = await stats.readF32();
      const flag = await readFlag();
      if (flag !== FLAG_CLEAR) await stopOnDivergence(`the gradient norm was not finite at step ${flag}`);
      const loss = sum / state.loss_count;
      if (!Number.isFinite(loss)) await stopOnDivergence(`the loss was not finite by step ${state.step}`);
      const tps = windowTokens / ((now - windowStart) / 1000);
      const row = {
        step: state.step,
        loss,
        lr,
        grad_norm: norm,
        tokens_per_s: Math.round(tps),
        elapsed_s: Number(state.elapsed_s.toFixed(3)),
      };
      await metrics.append(row);
      trainRows.push([state.step, loss]);
      lastTrainLoss = loss;
      const status = `loss ${loss.toFixed(4)} lr ${lr.toExponential(2)} norm ${norm.toFixed(3)} ${
        Math.round(tps)
      } tok/s`;
      progress.update(state.step, status);
      if (!progress.interactive) log(`step ${state.step}/${steps}: ${status}`);
      gpu.write(stats.buffer, new Float32Array([0]));
      state.loss_count = 0;
      windowStart = performance.now();
      windowTokens = 0;
    }
    if (hasVal && (state.step % t.eval_every === 0 || last)) {
      lastVal = await evaluate();
      if (lastVal !== null) {
        if (!Number.isFinite(lastVal)) {
          await stopOnDivergence(`the validation loss was not finite at step ${state.step}`);
        }
        await metrics.append({ step: state.step, val_loss: lastVal });
        valRows.push([state.step, lastVal]);
        if (!progress.interactive || last) log(`step ${state.step}: val loss ${lastVal.toFixed(4)}`);
        if (state.best_val_loss === null || lastVal < state.best_val_loss) {
          state.best_val_loss = lastVal;
          state.best_step = state.step;
          if ((await readFlag()) !== FLAG_CLEAR) await stopOnDivergence("a gradient norm was not finite");
          await save("ckpt-best");
        }
        await plot();
      }
    }
    if (state.step % t.save_every === 0 || last || interrupted) {
      if ((await readFlag()) !== FLAG_CLEAR) await stopOnDivergence("a gradient norm was not finite");
      lastCkpt = await save(checkpointName(state.step));
      savedStep = state.step;
      await prune();
    }
    if (interrupted) {
      log(`\n${interrupted}: stopped after step ${state.step}; saved ${lastCkpt}`);
      break;
    }
  }
  progress.finish();
  if (savedStep !== state.step) lastCkpt = await save(checkpointName(state.step));
  await plot();
  const wall = (performance.now() - startWall) / 1000;
  const result = summary({
    train_loss: lastTrainLoss,
    val_loss: lastVal,
    elapsed_s: state.elapsed_s,
    tokens_per_s: ((state.step - startStep) * tokensPerStep) / Math.max(wall, 1e-9),
    checkpoint: lastCkpt,
    interrupted,
    finished: state.step >= steps,
  });
  stats.destroy();
  opt.destroy();
  for (const i of inputs.slice(1)) i.destroy();
  acts.destroy();
  model.destroy();
  return result;
}

function freshState(config: TnlConfig): RunState {
  return {
    step: 0,
    tokens: 0,
    rng: [],
    loss_sum: 0,
    loss_count: 0,
    best_val_loss: null,
    best_step: null,
    elapsed_s: 0,
    config_hash: modelHash(config),
  };
}
