// The model configuration: HuggingFace `TransnormerConfig` field names (config.json of the released
// checkpoints), presets, and the resolved dimensions the model code uses. config.json is read leniently
// (HF files carry many generic keys); the TNL fields are type-checked, and legal HF values that tnl does not
// implement are refused as "unsupported", never silently ignored.

import { ioError, TnlError } from "./errors.ts";

/** The TNL fields of HF `TransnormerConfig`, with its defaults. */
export interface TnlConfig {
  vocab_size: number;
  decoder_embed_dim: number;
  hidden_dim: number;
  decoder_layers: number;
  decoder_attention_heads: number;
  glu_dim: number;
  linear_use_lrpe_list: number[];
  linear_use_lrpe: number;
  linear_act_fun: string;
  norm_type: string;
  no_scale_embedding: boolean;
  bias: boolean;
  init_std: number;
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
  tie_word_embeddings: boolean;
}

export const HF_DEFAULTS: TnlConfig = {
  vocab_size: 64000,
  decoder_embed_dim: 1024,
  hidden_dim: 1024,
  decoder_layers: 24,
  decoder_attention_heads: 8,
  glu_dim: 2816,
  linear_use_lrpe_list: [],
  linear_use_lrpe: 0,
  linear_act_fun: "silu",
  norm_type: "simplermsnorm",
  no_scale_embedding: false,
  bias: false,
  init_std: 0.02,
  pad_token_id: 0,
  bos_token_id: 1,
  eos_token_id: 2,
  // tnl's rule (spec §2.8): a model made from a config is untied unless this is set true.
  tie_word_embeddings: false,
};

type FieldKind = "int" | "number" | "bool" | "string" | "int[]";
export const CONFIG_FIELDS: Record<keyof TnlConfig, FieldKind> = {
  vocab_size: "int",
  decoder_embed_dim: "int",
  hidden_dim: "int",
  decoder_layers: "int",
  decoder_attention_heads: "int",
  glu_dim: "int",
  linear_use_lrpe_list: "int[]",
  linear_use_lrpe: "int",
  linear_act_fun: "string",
  norm_type: "string",
  no_scale_embedding: "bool",
  bias: "bool",
  init_std: "number",
  pad_token_id: "int",
  bos_token_id: "int",
  eos_token_id: "int",
  tie_word_embeddings: "bool",
};

/** Architectures by name (spec §3): they fix the shape, not the vocabulary. */
export const PRESETS: Record<string, Partial<TnlConfig>> = {
  "tnl-tiny": arch(64, 2, 4, 128),
  "tnl-mini": arch(128, 4, 4, 352),
  "tnl-small": arch(256, 6, 4, 704),
  "tnl-medium": arch(512, 8, 8, 1408),
  "tnl-385m": arch(1024, 24, 8, 2816),
  "tnl-1b": arch(2048, 16, 16, 5632),
  "tnl-7b": arch(4096, 30, 32, 11008),
};

function arch(d: number, layers: number, heads: number, glu: number): Partial<TnlConfig> {
  return {
    decoder_embed_dim: d,
    hidden_dim: d,
    decoder_layers: layers,
    decoder_attention_heads: heads,
    glu_dim: glu,
    // LRPE-d in the first layer, decay only in the others: the released models' "Mix" setting.
    linear_use_lrpe_list: Array.from({ length: layers }, (_, l) => (l === 0 ? 1 : 0)),
    linear_act_fun: "swish",
  };
}

/** What the model code works with. */
export interface ModelDims {
  vocab: number;
  /** D: embedding width */
  d: number;
  /** E: token-mixer width */
  e: number;
  layers: number;
  heads: number;
  /** E / H */
  headDim: number;
  /** F */
  glu: number;
  /** LRPE per layer */
  lrpe: boolean[];
  /** √D, or 1 with no_scale_embedding */
  embedScale: number;
  padId: number;
  bosId: number;
  eosId: number;
  initStd: number;
  tied: boolean;
}

/**
 * Checks the TNL fields of `raw` (a parsed config.json or the model section of a training config) and
 * fills the missing ones from `base` (a preset over HF defaults). Unknown keys are the caller's business.
 * Every problem is collected; the error lists them all, one per line, each naming `source` and the key.
 */
export function parseConfig(
  raw: Record<string, unknown>,
  source: string,
  base: TnlConfig = HF_DEFAULTS,
): TnlConfig {
  const errors: string[] = [];
  const out = structuredClone(base) as unknown as Record<string, unknown>;
  for (const [key, kind] of Object.entries(CONFIG_FIELDS)) {
    if (!(key in raw) || raw[key] === undefined) continue;
    const v = raw[key];
    const bad = (expected: string) =>
      errors.push(`${source}: ${key} = ${JSON.stringify(v)}: expected ${expected}`);
    switch (kind) {
      case "int":
        if (typeof v !== "number" || !Number.isSafeInteger(v)) bad("an integer");
        else out[key] = v;
        break;
      case "number":
        if (typeof v !== "number" || !Number.isFinite(v)) bad("a finite number");
        else out[key] = v;
        break;
      case "bool":
        if (typeof v !== "boolean") bad("true or false");
        else out[key] = v;
        break;
      case "string":
        if (typeof v !== "string") bad("a string");
        else out[key] = v;
        break;
      case "int[]":
        if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isSafeInteger(x))) {
          bad("a list of integers");
        } else out[key] = [...v];
        break;
    }
  }
  if (errors.length) throw new TnlError("input", errors.join("\n"));
  return out as unknown as TnlConfig;
}

/**
 * The dimensions of a config, after checking it describes a model tnl implements exactly. Throws one
 * TnlError listing every problem (each line names `source` and the key).
 */
export function resolveDims(c: TnlConfig, source: string): ModelDims {
  const errors: string[] = [];
  const err = (m: string) => errors.push(`${source}: ${m}`);
  const positive = (key: keyof TnlConfig) => {
    const v = c[key] as number;
    if (!(v >= 1)) err(`${key} = ${v}: must be at least 1`);
    return v;
  };
  const vocab = positive("vocab_size");
  const d = positive("decoder_embed_dim");
  const e = positive("hidden_dim");
  const layers = c.decoder_layers;
  const heads = positive("decoder_attention_heads");
  if (!(layers >= 2)) {
    err(
      `decoder_layers = ${layers}: unsupported: TNL needs at least 2 layers (its decay rates divide by L − 1)`,
    );
  }
  const glu = c.glu_dim === -1 ? d : c.glu_dim;
  if (!(glu >= 1)) err(`glu_dim = ${c.glu_dim}: must be at least 1 (or -1 for decoder_embed_dim)`);
  if (heads >= 1 && e >= 1 && e % heads !== 0) {
    err(`decoder_attention_heads = ${heads} does not divide hidden_dim = ${e}: unsupported`);
  }
  const act = c.linear_act_fun.toLowerCase();
  if (act !== "swish" && act !== "silu") {
    err(
      `linear_act_fun = "${c.linear_act_fun}": unsupported (tnl implements "swish"/"silu", as the releases use)`,
    );
  }
  if (c.norm_type !== "simplermsnorm") {
    err(`norm_type = "${c.norm_type}": unsupported (tnl implements "simplermsnorm", as the releases use)`);
  }
  if (c.bias) err("bias = true: unsupported (no TransNormerLLM release has biases)");
  const list = c.linear_use_lrpe_list;
  let lrpe: boolean[];
  if (list.length === 0) lrpe = Array.from({ length: Math.max(layers, 0) }, () => c.linear_use_lrpe !== 0);
  else {
    if (list.length !== layers) {
      err(`linear_use_lrpe_list has ${list.length} entries for decoder_layers = ${layers}`);
    }
    lrpe = Array.from({ length: Math.max(layers, 0) }, (_, l) => (list[l] ?? 0) !== 0);
  }
  if (lrpe.some((x) => x) && e !== d) {
    err(
      `hidden_dim = ${e} ≠ decoder_embed_dim = ${d} with LRPE: unsupported (the official LRPE θ has E entries of D)`,
    );
  }
  for (const key of ["pad_token_id", "bos_token_id", "eos_token_id"] as const) {
    const v = c[key];
    if (v < 0 || (vocab >= 1 && v >= vocab)) err(`${key} = ${v}: outside the vocabulary of ${vocab}`);
  }
  if (!(c.init_std > 0)) err(`init_std = ${c.init_std}: must be positive`);
  if (errors.length) throw new TnlError("input", errors.join("\n"));
  return {
    vocab,
    d,
    e,
    layers,
    heads,
    headDim: e / heads,
    glu,
    lrpe,
    embedScale: c.no_scale_embedding ? 1 : Math.sqrt(d),
    padId: c.pad_token_id,
    bosId: c.bos_token_id,
    eosId: c.eos_token_id,
    initStd: c.init_std,
    tied: c.tie_word_embeddings,
  };
}

/** A preset's config over HF defaults; unknown names list the presets. */
export function presetConfig(name: string, source = "preset"): TnlConfig {
  const p = PRESETS[name];
  if (!p) {
    throw new TnlError(
      "input",
      `${source}: unknown preset '${name}'; presets: ${Object.keys(PRESETS).join(", ")}`,
    );
  }
  return { ...HF_DEFAULTS, ...structuredClone(p) };
}

/** Reads a model directory's config.json (lenient: unknown keys ignored). */
export async function readConfigJson(path: string): Promise<TnlConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw ioError("read", path, e);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new TnlError("input", `${path}: not valid JSON (${e instanceof Error ? e.message : e})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TnlError("input", `${path}: expected a JSON object`);
  }
  return parseConfig(raw as Record<string, unknown>, path);
}

/** The config.json tnl writes: HF TransnormerConfig fields plus what transformers needs to load it. */
export function configJson(c: TnlConfig, tied: boolean): Record<string, unknown> {
  return {
    architectures: ["TransnormerForCausalLM"],
    model_type: "transnormer",
    auto_map: {
      AutoConfig: "configuration_transnormer.TransnormerConfig",
      AutoModelForCausalLM: "modeling_transnormer.TransnormerForCausalLM",
    },
    ...c,
    tie_word_embeddings: tied,
    torch_dtype: "float32",
    use_cache: true,
  };
}

/** Parameters of the model (tied: the head is the embedding). */
export function parameterCount(m: ModelDims): number {
  const perLayer = 4 * m.e * m.d + m.d * m.e + 3 * m.glu * m.d;
  const theta = m.lrpe.filter((x) => x).length * m.e;
  return m.vocab * m.d * (m.tied ? 1 : 2) + m.layers * perLayer + theta;
}
