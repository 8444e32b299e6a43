// The YAML config of `tnl train`, strict: every error is reported, one per line, in this order: syntax
// (file:line:column), unknown keys (with the closest valid key), types and ranges, missing keys. Every
// `train:` key but `steps`/`tokens` has a default (README, "Training config").

import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from "yaml";
import {
  CONFIG_FIELDS,
  HF_DEFAULTS,
  type ModelDims,
  presetConfig,
  PRESETS,
  resolveDims,
  type TnlConfig,
} from "./config.ts";
import { ioError, TnlError } from "./errors.ts";
import { MQAR_POWER_A, mqarProblems, type MqarSettings } from "./mqar.ts";

export type Schedule = "cosine" | "linear" | "constant";

export interface TrainSettings {
  batch_size: number;
  seq_len: number;
  grad_accum: number;
  steps: number | null;
  tokens: number | null;
  lr: number;
  min_lr: number;
  warmup_steps: number;
  schedule: Schedule;
  weight_decay: number;
  betas: [number, number];
  eps: number;
  grad_clip: number;
  seed: number;
  eval_every: number;
  /** validation tokens per evaluation; null = all */
  eval_tokens: number | null;
  log_every: number;
  save_every: number;
  keep_last: number;
}

export const TRAIN_DEFAULTS: Omit<TrainSettings, "steps" | "tokens"> = {
  batch_size: 16,
  seq_len: 256,
  grad_accum: 1,
  lr: 3e-3,
  min_lr: 3e-4,
  warmup_steps: 100,
  schedule: "cosine",
  weight_decay: 0.1,
  betas: [0.9, 0.95],
  eps: 1e-8,
  grad_clip: 1.0,
  seed: 1234,
  eval_every: 200,
  eval_tokens: null,
  log_every: 10,
  save_every: 500,
  keep_last: 3,
};

export interface DataSettings {
  /** files or globs of the training split (empty with synthetic data) */
  train: string[];
  val: string[];
  tokenizer: string | null;
  /** sequences generated on the fly instead of files */
  synthetic: SyntheticData | null;
}

/** `data: {synthetic: mqar, ...}`: associative-recall sequences (core/mqar.ts). */
export interface SyntheticData {
  kind: "mqar";
  mqar: MqarSettings;
  /** seed of the training sequences (default train.seed); validation uses another stream of it */
  seed: number;
  /** validation sequences per evaluation (0: none) */
  valSamples: number;
}

/** Defaults of the synthetic data keys (seq_len: train.seq_len; seed: train.seed). */
export const SYNTHETIC_DEFAULTS = { vocab: 8192, pairs: 8, power_a: MQAR_POWER_A, val_samples: 256 };

export interface TrainConfig {
  /** the config file (paths inside are relative to its directory) */
  path: string;
  model: TnlConfig;
  /** model fields the config gave (a preset's and HF defaults fill the rest) */
  modelGiven: string[];
  preset: string | null;
  initFrom: string | null;
  data: DataSettings;
  train: TrainSettings;
  outDir: string;
}

type Kind =
  | { t: "int"; min?: number }
  | { t: "number"; min?: number; positive?: boolean; max?: number }
  | { t: "bool" }
  | { t: "string" }
  | { t: "enum"; values: string[] }
  | { t: "int[]" }
  | { t: "paths" }
  | { t: "betas" }
  | { t: "int|all" };

const TRAIN_KEYS: Record<keyof TrainSettings, Kind> = {
  batch_size: { t: "int", min: 1 },
  seq_len: { t: "int", min: 1 },
  grad_accum: { t: "int", min: 1 },
  steps: { t: "int", min: 1 },
  tokens: { t: "int", min: 1 },
  lr: { t: "number", positive: true },
  min_lr: { t: "number", min: 0 },
  warmup_steps: { t: "int", min: 0 },
  schedule: { t: "enum", values: ["cosine", "linear", "constant"] },
  weight_decay: { t: "number", min: 0 },
  betas: { t: "betas" },
  eps: { t: "number", positive: true },
  grad_clip: { t: "number", min: 0 },
  seed: { t: "int", min: 0 },
  eval_every: { t: "int", min: 1 },
  eval_tokens: { t: "int|all" },
  log_every: { t: "int", min: 1 },
  save_every: { t: "int", min: 1 },
  keep_last: { t: "int", min: 1 },
};

const DATA_KEYS: Record<string, Kind> = {
  train: { t: "paths" },
  val: { t: "paths" },
  tokenizer: { t: "string" },
  synthetic: { t: "enum", values: ["mqar"] },
  vocab: { t: "int", min: 4 },
  pairs: { t: "int", min: 1 },
  seq_len: { t: "int", min: 1 },
  seed: { t: "int", min: 0 },
  power_a: { t: "number", positive: true, max: 1 },
  val_samples: { t: "int", min: 0 },
};
const FILE_DATA_KEYS = ["train", "val", "tokenizer"];
const SYNTHETIC_KEYS = ["vocab", "pairs", "seq_len", "seed", "power_a", "val_samples"];

const MODEL_KEYS: Record<string, Kind> = {
  preset: { t: "enum", values: Object.keys(PRESETS) },
  init_from: { t: "string" },
  ...Object.fromEntries(
    Object.entries(CONFIG_FIELDS).map(([k, kind]) => [
      k,
      kind === "int"
        ? { t: "int" }
        : kind === "number"
        ? { t: "number" }
        : kind === "bool"
        ? { t: "bool" }
        : kind === "string"
        ? { t: "string" }
        : { t: "int[]" },
    ]),
  ),
};

const TOP_KEYS = ["model", "data", "train", "out_dir"];

type Entry = { key: Node; value: Node | null };

interface Problem {
  order: number; // 0 syntax, 1 unknown, 2 type/range, 3 missing
  line: number;
  col: number;
  text: string;
}

/** Reads and checks a training config; throws one TnlError listing every problem. */
export async function readTrainConfig(path: string): Promise<TrainConfig> {
  let text: string;
  try {
    const st = await Deno.stat(path);
    if (st.isDirectory) throw new TnlError("io", `cannot read ${path}: is a directory, expected a YAML file`);
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof TnlError) throw e;
    throw ioError("read", path, e);
  }
  return parseTrainConfig(text, path);
}

export function parseTrainConfig(text: string, path: string): TrainConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  const problems: Problem[] = [];
  const at = (node: Node | null | undefined) => {
    const off = node?.range?.[0];
    if (off === undefined) return { line: 0, col: 0 };
    const p = lc.linePos(off);
    return { line: p.line, col: p.col };
  };
  const add = (order: number, node: Node | null | undefined, msg: string) =>
    problems.push({ order, ...at(node), text: msg });
  for (const e of [...doc.errors, ...doc.warnings]) {
    const pos = e.linePos?.[0];
    problems.push({
      order: 0,
      line: pos?.line ?? 0,
      col: pos?.col ?? 0,
      text: e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, ""),
    });
  }
  const finish = (): never => {
    problems.sort((a, b) => a.order - b.order || a.line - b.line || a.col - b.col);
    throw new TnlError(
      "input",
      problems.map((p) => (p.line ? `${path}:${p.line}:${p.col}: ${p.text}` : `${path}: ${p.text}`)).join(
        "\n",
      ),
    );
  };
  if (problems.length) finish();
  const root = doc.contents;
  if (!isMap(root)) {
    add(2, root, "expected a mapping with the keys model, data, train, out_dir");
    finish();
  }
  const top = entries(root as YAMLMap, TOP_KEYS, "", add);
  const section = (name: string, keys: string[]): Map<string, Entry> => {
    const entry = top.get(name);
    if (!entry) return new Map();
    if (!isMap(entry.value)) {
      add(2, entry.value ?? entry.key, `${name}: expected a mapping`);
      return new Map();
    }
    return entries(entry.value as YAMLMap, keys, `${name}.`, add);
  };
  const modelNodes = section("model", Object.keys(MODEL_KEYS));
  const dataNodes = section("data", Object.keys(DATA_KEYS));
  const trainNodes = section("train", Object.keys(TRAIN_KEYS));

  // ---- types and ranges
  const values = new Map<string, unknown>();
  const check = (prefix: string, nodes: Map<string, Entry>, kinds: Record<string, Kind>) => {
    for (const [key, entry] of nodes) {
      const v = checkValue(`${prefix}${key}`, entry.value, kinds[key], add);
      if (v !== undefined) values.set(`${prefix}${key}`, v);
    }
  };
  check("model.", modelNodes, MODEL_KEYS);
  check("data.", dataNodes, DATA_KEYS);
  check("train.", trainNodes, TRAIN_KEYS);
  const outNode = top.get("out_dir");
  if (outNode) {
    const v = checkValue("out_dir", outNode.value, { t: "string" }, add);
    if (v !== undefined) values.set("out_dir", v);
  }
  const has = (k: string) => values.has(k);
  if (has("train.steps") && has("train.tokens")) {
    add(2, trainNodes.get("tokens")?.key, "train: give either steps or tokens, not both");
  }
  // ---- synthetic data: its own keys, no files; its seq_len is the training seq_len
  const synthetic = values.get("data.synthetic") as string | undefined;
  if (synthetic) {
    for (const k of FILE_DATA_KEYS) {
      if (dataNodes.has(k)) {
        add(2, dataNodes.get(k)!.key, `data.${k}: not with data.synthetic (sequences are generated)`);
      }
    }
    const dataLen = values.get("data.seq_len"), trainLen = values.get("train.seq_len");
    if (dataLen !== undefined && trainLen !== undefined && dataLen !== trainLen) {
      add(
        2,
        trainNodes.get("seq_len")?.key,
        `train.seq_len = ${trainLen} differs from data.seq_len = ${dataLen} (give one of them)`,
      );
    }
  } else {
    for (const k of SYNTHETIC_KEYS) {
      if (dataNodes.has(k)) add(2, dataNodes.get(k)!.key, `data.${k}: only with data.synthetic`);
    }
  }
  const lr = values.get("train.lr") as number | undefined ?? TRAIN_DEFAULTS.lr;
  const minLr = values.get("train.min_lr") as number | undefined ?? Math.min(TRAIN_DEFAULTS.min_lr, lr);
  if (minLr > lr) add(2, trainNodes.get("min_lr")?.key, `train.min_lr = ${minLr} is above train.lr = ${lr}`);

  // ---- the model: preset < fields; semantic checks of the resolved architecture
  const preset = (values.get("model.preset") as string | undefined) ?? null;
  let model: TnlConfig = preset ? presetConfig(preset) : { ...HF_DEFAULTS };
  const modelGiven: string[] = [];
  for (const key of Object.keys(CONFIG_FIELDS)) {
    if (values.has(`model.${key}`)) {
      modelGiven.push(key);
      model = { ...model, [key]: values.get(`model.${key}`) };
    }
  }
  if (!problems.some((p) => p.text.startsWith("model."))) {
    try {
      // The vocabulary may still come from the tokenizer: check the rest with a placeholder.
      resolveDims(
        modelGiven.includes("vocab_size") ? model : { ...model, vocab_size: Math.max(model.vocab_size, 3) },
        "model",
      );
    } catch (e) {
      if (!(e instanceof TnlError)) throw e;
      for (const line of e.message.split("\n")) {
        const key = /^model: (\w+)/.exec(line)?.[1] ?? /(\w+) = /.exec(line)?.[1];
        const node = key ? modelNodes.get(key)?.key : undefined;
        add(2, node ?? top.get("model")?.key, `model.${line.replace(/^model: /, "")}`);
      }
    }
  }

  // ---- missing keys
  if (!top.get("out_dir")) add(3, null, "missing key out_dir (the run directory)");
  if (!synthetic && (!top.get("data") || !dataNodes.get("train"))) {
    add(3, top.get("data")?.key ?? null, "missing key data.train (training files)");
  }
  if (
    !values.has("train.steps") && !values.has("train.tokens") &&
    !problems.some((p) => /steps or tokens/.test(p.text))
  ) {
    add(3, top.get("train")?.key ?? null, "missing key train.steps or train.tokens (how long to train)");
  }
  if (problems.length) finish();

  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
  const rel = (p: string) => (p.startsWith("/") ? p : dir + p);
  const train: TrainSettings = { ...TRAIN_DEFAULTS, steps: null, tokens: null };
  for (const key of Object.keys(TRAIN_KEYS) as (keyof TrainSettings)[]) {
    if (values.has(`train.${key}`)) {
      (train as unknown as Record<string, unknown>)[key] = values.get(`train.${key}`);
    }
  }
  if (!values.has("train.min_lr")) train.min_lr = Math.min(TRAIN_DEFAULTS.min_lr, train.lr / 10);
  let syntheticData: SyntheticData | null = null;
  if (synthetic) {
    const get = <T>(k: string, dflt: T) => (values.has(`data.${k}`) ? values.get(`data.${k}`) as T : dflt);
    if (values.has("data.seq_len")) train.seq_len = values.get("data.seq_len") as number;
    const mqar: MqarSettings = {
      vocab: get("vocab", SYNTHETIC_DEFAULTS.vocab),
      pairs: get("pairs", SYNTHETIC_DEFAULTS.pairs),
      seqLen: train.seq_len,
      powerA: get("power_a", SYNTHETIC_DEFAULTS.power_a),
    };
    const problems = mqarProblems(mqar);
    if (problems.length) {
      throw new TnlError("input", problems.map((p) => `${path}: data.${p}`).join("\n"));
    }
    syntheticData = {
      kind: "mqar",
      mqar,
      seed: get("seed", train.seed),
      valSamples: get("val_samples", SYNTHETIC_DEFAULTS.val_samples),
    };
  }
  return {
    path,
    model,
    modelGiven,
    preset,
    initFrom: values.has("model.init_from") ? rel(values.get("model.init_from") as string) : null,
    data: {
      train: ((values.get("data.train") as string[] | undefined) ?? []).map(rel),
      val: ((values.get("data.val") as string[] | undefined) ?? []).map(rel),
      tokenizer: values.has("data.tokenizer") ? rel(values.get("data.tokenizer") as string) : null,
      synthetic: syntheticData,
    },
    train,
    outDir: rel(values.get("out_dir") as string),
  };
}

/** The entries of a mapping; unknown keys are reported with the closest valid one. */
function entries(
  map: YAMLMap,
  keys: string[],
  prefix: string,
  add: (order: number, node: Node | null | undefined, msg: string) => void,
): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const item of map.items) {
    const keyNode = item.key as Node;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    if (!keys.includes(key)) {
      const near = closest(key, keys);
      add(1, keyNode, `unknown key ${prefix}${key}${near ? ` (did you mean ${prefix}${near}?)` : ""}`);
      continue;
    }
    out.set(key, { key: keyNode, value: (item.value as Node | null) ?? null });
  }
  return out;
}

function checkValue(
  name: string,
  node: Node | null,
  kind: Kind,
  add: (order: number, node: Node | null | undefined, msg: string) => void,
): unknown {
  const scalar = node && isScalar(node) ? node.value : undefined;
  const json = node?.toJSON?.() ?? scalar;
  const show = node ? (typeof json === "number" ? String(json) : JSON.stringify(json)) : "nothing";
  const bad = (expected: string) => {
    add(2, node, `${name} = ${show}: expected ${expected}`);
    return undefined;
  };
  switch (kind.t) {
    case "int": {
      if (typeof scalar !== "number" || !Number.isSafeInteger(scalar)) return bad("an integer");
      if (kind.min !== undefined && scalar < kind.min) return bad(`an integer ≥ ${kind.min}`);
      return scalar;
    }
    case "number": {
      if (typeof scalar !== "number" || !Number.isFinite(scalar)) return bad("a finite number");
      if (kind.positive && !(scalar > 0)) return bad("a number > 0");
      if (kind.min !== undefined && scalar < kind.min) return bad(`a number ≥ ${kind.min}`);
      if (kind.max !== undefined && scalar > kind.max) return bad(`a number ≤ ${kind.max}`);
      return scalar;
    }
    case "bool":
      return typeof scalar === "boolean" ? scalar : bad("true or false");
    case "string":
      return typeof scalar === "string" && scalar.length > 0 ? scalar : bad("a non-empty string");
    case "enum":
      return typeof scalar === "string" && kind.values.includes(scalar)
        ? scalar
        : bad(`one of ${kind.values.join(", ")}`);
    case "int|all": {
      if (scalar === "all") return null;
      if (typeof scalar !== "number" || !Number.isSafeInteger(scalar) || scalar < 1) {
        return bad("a positive integer or all");
      }
      return scalar;
    }
    case "int[]": {
      if (!node || !isSeq(node)) return bad("a list of integers");
      const xs = node.items.map((i) => (isScalar(i) ? i.value : undefined));
      return xs.every((x) => typeof x === "number" && Number.isSafeInteger(x))
        ? xs
        : bad("a list of integers");
    }
    case "betas": {
      if (!node || !isSeq(node) || node.items.length !== 2) return bad("[beta1, beta2]");
      const xs = node.items.map((i) => (isScalar(i) ? i.value : undefined));
      if (!xs.every((x) => typeof x === "number" && x >= 0 && x < 1)) return bad("two numbers in [0, 1)");
      return xs;
    }
    case "paths": {
      if (typeof scalar === "string" && scalar) return [scalar];
      if (node && isSeq(node)) {
        const xs = node.items.map((i) => (isScalar(i) ? i.value : undefined));
        if (xs.length && xs.every((x) => typeof x === "string" && x)) return xs;
      }
      return bad("a path or a list of paths");
    }
  }
}

/** The closest of `options` by edit distance, when close enough to be a typo. */
export function closest(word: string, options: string[]): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const o of options) {
    const d = editDistance(word, o);
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The model dimensions once the vocabulary is known (the config's, else the tokenizer's or the data's). */
export function trainDims(
  cfg: TrainConfig,
  vocabFromData: number | null,
): { config: TnlConfig; dims: ModelDims } {
  let config = cfg.model;
  if (!cfg.modelGiven.includes("vocab_size")) {
    if (vocabFromData === null) {
      throw new TnlError(
        "input",
        `${cfg.path}: model.vocab_size is not given and no tokenizer or token file tells it`,
      );
    }
    config = { ...config, vocab_size: vocabFromData };
  } else if (vocabFromData !== null && config.vocab_size < vocabFromData) {
    throw new TnlError(
      "input",
      `${cfg.path}: model.vocab_size = ${config.vocab_size} is smaller than the ${
        cfg.data.synthetic ? "data.vocab" : "vocabulary of the tokenizer or token files"
      } (${vocabFromData})`,
    );
  }
  return { config, dims: resolveDims(config, `${cfg.path}: model`) };
}
