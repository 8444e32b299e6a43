// Zero-shot multiple choice the way lm-evaluation-harness scores it: each choice is a continuation of the
// context, scored by the summed log-probability of its tokens given the context; `acc` takes the choice with
// the largest sum, `acc_norm` the largest sum per UTF-8 byte of the choice (the harness divides by
// characters: the same for ASCII). Tokenization as the harness: whitespace at the end of the context moves to
// the front of the continuation, then the context and the continuation are encoded separately.
// The task file is JSONL, one item per line: {"context": str, "choices": [str, ...], "label": int}.

import { ioError, TnlError } from "./errors.ts";
import { type ItemScore, type ScoreItem, Scorer, type ScorerOptions } from "./eval.ts";
import type { TnlModel } from "./model.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { IGNORE_INDEX } from "../kernels/cross_entropy.ts";

export interface ChoiceItem {
  context: string;
  choices: string[];
  label: number;
  /** 1-based line in the task file */
  line: number;
}

/** Parses a task file's text; every problem names the file and line. */
export function parseChoiceTask(text: string, path: string): ChoiceItem[] {
  const items: ChoiceItem[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const at = `${path}:${i + 1}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new TnlError("input", `${at}: not valid JSON (${e instanceof Error ? e.message : e})`);
    }
    if (typeof rec !== "object" || rec === null || Array.isArray(rec)) {
      throw new TnlError("input", `${at}: expected an object {"context", "choices", "label"}`);
    }
    const o = rec as Record<string, unknown>; // other keys (an id, a source) are kept out of the way
    if (typeof o.context !== "string") throw new TnlError("input", `${at}: "context" must be a string`);
    if (!Array.isArray(o.choices) || o.choices.length < 2 || !o.choices.every((c) => typeof c === "string")) {
      throw new TnlError("input", `${at}: "choices" must be a list of at least 2 strings`);
    }
    const label = o.label;
    if (typeof label !== "number" || !Number.isInteger(label)) {
      throw new TnlError("input", `${at}: "label" must be an integer, got ${JSON.stringify(label)}`);
    }
    if (label < 0 || label >= o.choices.length) {
      throw new TnlError(
        "input",
        `${at}: label ${label} is out of range for ${o.choices.length} choices (0..${o.choices.length - 1})`,
      );
    }
    o.choices.forEach((c, j) => {
      if (c === "") throw new TnlError("input", `${at}: choice ${j} is empty`);
    });
    items.push({ context: o.context, choices: o.choices as string[], label, line: i + 1 });
  }
  if (items.length === 0) throw new TnlError("input", `${path}: no items (the file is empty)`);
  return items;
}

/** Reads and parses a task file. */
export async function readChoiceTask(path: string): Promise<ChoiceItem[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw ioError("read", path, e);
  }
  return parseChoiceTask(text, path);
}

/**
 * The harness's split of a context and a continuation into token ids: trailing whitespace of the context
 * moves to the continuation; each part is encoded on its own; the context starts with `start` (BOS).
 */
export function encodePair(
  tok: Tokenizer,
  context: string,
  continuation: string,
  start: readonly number[],
): { context: number[]; continuation: number[] } {
  const trimmed = context.replace(/\s+$/u, "");
  const moved = context.slice(trimmed.length);
  return { context: [...start, ...tok.encode(trimmed)], continuation: tok.encode(moved + continuation) };
}

export interface ChoiceDetail {
  line: number;
  label: number;
  /** argmax of the summed log-probabilities */
  pred: number;
  /** argmax of the log-probabilities per byte */
  pred_norm: number;
  /** summed log-probability of each choice given the context */
  logprobs: number[];
  /** UTF-8 bytes of each choice */
  bytes: number[];
}

export interface ChoiceResult {
  acc: number;
  acc_norm: number;
  /** standard errors of the means, as the harness reports them (null for one item) */
  acc_stderr: number | null;
  acc_norm_stderr: number | null;
  items: number;
  details: ChoiceDetail[];
}

/** argmax, the first on ties (as numpy's). */
function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

function stderr(hits: readonly number[]): number | null {
  const n = hits.length;
  if (n < 2) return null;
  const mean = hits.reduce((a, b) => a + b, 0) / n;
  return Math.sqrt((mean * (1 - mean)) / (n - 1));
}

/**
 * Scores every choice of every item. `bos` starts each context (null: none; an empty context then starts
 * from `eos`, as the harness does).
 */
export async function evaluateChoices(
  model: TnlModel,
  tok: Tokenizer,
  items: readonly ChoiceItem[],
  opts: { bos: number | null; eos: number | null; path: string } & ScorerOptions,
): Promise<ChoiceResult> {
  const start = opts.bos === null ? [] : [opts.bos];
  const seqs: ScoreItem[] = [];
  for (const it of items) {
    it.choices.forEach((choice, j) => {
      const at = `${opts.path}:${it.line}: choice ${j}`;
      const pair = encodePair(tok, it.context, choice, start);
      if (pair.context.length === 0) {
        if (opts.eos === null) {
          throw new TnlError(
            "input",
            `${opts.path}:${it.line}: the context is empty and there is no BOS or EOS to start from`,
          );
        }
        pair.context.push(opts.eos);
      }
      if (pair.continuation.length === 0) throw new TnlError("input", `${at} encodes to no tokens`);
      const seq = [...pair.context, ...pair.continuation];
      const inputs = seq.slice(0, -1);
      const targets = new Int32Array(inputs.length).fill(IGNORE_INDEX);
      for (let t = pair.context.length - 1; t < inputs.length; t++) targets[t] = seq[t + 1];
      seqs.push({ inputs, targets, label: at });
    });
  }
  const scorer = new Scorer(model, opts);
  let scores: ItemScore[];
  try {
    scores = await scorer.score(seqs);
  } finally {
    scorer.destroy();
  }
  const enc = new TextEncoder();
  let k = 0;
  const details = items.map((it): ChoiceDetail => {
    const logprobs = it.choices.map(() => -scores[k++].nll);
    const bytes = it.choices.map((c) => enc.encode(c).length);
    return {
      line: it.line,
      label: it.label,
      pred: argmax(logprobs),
      pred_norm: argmax(logprobs.map((lp, j) => lp / bytes[j])),
      logprobs,
      bytes,
    };
  });
  const acc = details.map((d) => (d.pred === d.label ? 1 : 0));
  const accNorm = details.map((d) => (d.pred_norm === d.label ? 1 : 0));
  const mean = (xs: number[]) => xs.reduce((a: number, b) => a + b, 0) / xs.length;
  return {
    acc: mean(acc),
    acc_norm: mean(accNorm),
    acc_stderr: stderr(acc),
    acc_norm_stderr: stderr(accNorm),
    items: items.length,
    details,
  };
}
