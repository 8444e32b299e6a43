// `tnl generate`: text from a model, streamed to stdout as it is drawn. Flags follow llama.cpp's names;
// `--json` prints one document at the end with the text, token ids, log-probabilities and timings named
// as llama-server names them.

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { loadModel } from "../core/checkpoint.ts";
import { ioError, TnlError } from "../core/errors.ts";
import {
  continuationDecoder,
  type DecodeWeights,
  generate,
  Generator,
  type Prompt,
  type SequenceOutput,
  StopText,
} from "../core/generate.ts";
import { GEMV_MAX_BATCH } from "../kernels/decode.ts";
import { SAMPLER_MAX_WINDOW, type SamplerSettings } from "../kernels/sample.ts";
import { configuredBos, loadTokenizer, type Tokenizer, tokenizerFileIn } from "../core/tokenizer.ts";
import { type GlobalOptions, gpuFromOptions, note, writeOutput, writeStdout } from "./common.ts";

/** --weights: the type the decode GEMVs read. */
export function decodeWeights(value: string): DecodeWeights {
  if (value !== "f32" && value !== "f16") {
    throw new TnlError("usage", `--weights ${value}: expected f32 or f16`);
  }
  return value;
}

function intOption(flag: string, min: number, max: number, expected: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new TnlError("usage", `${flag} ${value}: expected ${expected}`);
    }
    return n;
  };
}

function numberOption(flag: string, ok: (x: number) => boolean, expected: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || !ok(n)) {
      throw new TnlError("usage", `${flag} ${value}: expected ${expected}`);
    }
    return n;
  };
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Token ids "1,2,3" (spaces allowed), checked against the vocabulary with the position of a bad one. */
function parsePromptIds(text: string, vocab: number): number[] {
  const parts = text.split(/[\s,]+/).filter((p) => p !== "");
  if (parts.length === 0) {
    throw new TnlError("usage", "--prompt-ids: no token ids given (the prompt is empty)");
  }
  return parts.map((p, i) => {
    if (!/^\d+$/.test(p)) {
      throw new TnlError("usage", `--prompt-ids: '${p}' at position ${i} is not a token id`);
    }
    const id = Number(p);
    if (id >= vocab) {
      throw new TnlError(
        "input",
        `--prompt-ids: id ${id} at position ${i} is outside the model's vocabulary of ${vocab} (ids 0..${
          vocab - 1
        })`,
      );
    }
    return id;
  });
}

/** A prompt file's bytes, exactly: a byte-level tokenizer keeps invalid UTF-8 as its bytes. */
async function readPromptBytes(path: string): Promise<Uint8Array> {
  try {
    if (path === "-") return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    const st = await Deno.stat(path);
    if (st.isDirectory) {
      throw new TnlError("io", `cannot read ${path}: is a directory, expected a prompt file`);
    }
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof TnlError) throw e;
    throw ioError("read", path === "-" ? "stdin" : path, e);
  }
}

/** Splits bytes into lines at \n (and \r\n). */
function byteLines(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i === b.length || b[i] === 0x0a) {
      const end = i > start && b[i - 1] === 0x0d ? i - 1 : i;
      out.push(b.subarray(start, end));
      start = i + 1;
    }
  }
  return out;
}

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function generateCommand(): CommandUnknownOpts {
  return new Command("generate")
    .description(
      "generate text from a model: prefill the prompt, decode token by token with sampling on the GPU, stream to stdout",
    )
    .requiredOption("--model <dir>", "model directory (tnl checkpoint or HuggingFace TransNormerLLM)")
    .argument("[prompt]", "the prompt text")
    .option(
      "-n, --n-predict <n>",
      "tokens to generate; -1 = until EOS",
      intOption("-n/--n-predict", -1, Number.MAX_SAFE_INTEGER, "-1 (until EOS) or a count ≥ 0"),
      256,
    )
    .option("--ignore-eos", "never draw the EOS token; continue to -n")
    .option(
      "--temp <t>",
      "temperature; 0 = greedy",
      numberOption("--temp", (x) => x >= 0, "a number ≥ 0"),
      0.8,
    )
    .option(
      "--top-k <k>",
      "keep the k most likely tokens; 0 = off",
      intOption("--top-k", 0, 2 ** 31, "an integer ≥ 0"),
      40,
    )
    .option(
      "--top-p <p>",
      "keep the most likely tokens up to probability mass p; 1 = off",
      numberOption("--top-p", (x) => x > 0 && x <= 1, "a number in (0, 1]"),
      0.95,
    )
    .option(
      "--min-p <p>",
      "keep tokens at least p × the most likely one's probability; 0 = off",
      numberOption("--min-p", (x) => x >= 0 && x <= 1, "a number in [0, 1]"),
      0.05,
    )
    .option(
      "--repeat-penalty <x>",
      "penalise tokens of the last --repeat-last-n positions; 1 = off",
      numberOption("--repeat-penalty", (x) => x > 0, "a number > 0"),
      1,
    )
    .option(
      "--repeat-last-n <n>",
      `positions the repeat penalty looks back (prompt included); 0 = off, at most ${SAMPLER_MAX_WINDOW}`,
      intOption("--repeat-last-n", 0, SAMPLER_MAX_WINDOW, `an integer in [0, ${SAMPLER_MAX_WINDOW}]`),
      64,
    )
    .option(
      "-s, --seed <n>",
      "random seed; -1 = random (printed to stderr)",
      intOption("-s/--seed", -1, 0xffffffff, "-1 or an integer in [0, 4294967295]"),
      -1,
    )
    .option(
      "--stop <str>",
      "stop when the text contains STR (excluded from the output); repeatable",
      collect,
      [],
    )
    .option("-f, --file <file>", "read the prompt from FILE (the whole file; '-' = stdin)")
    .option("--prompts <file>", "one prompt per line, generated as a batch (output: one completion per line)")
    .option("--prompt-ids <ids>", "token ids instead of text, e.g. 1,2,3 (nothing is prepended)")
    .option("--echo", "print each prompt before its continuation (text output)")
    .option("--json", "print one JSON document at the end: text, token ids, stop type, timings")
    .option("--logprobs", "with --json: each generated token's log-probability under the model")
    .option(
      "--weights <type>",
      "f32, or f16: decode from f16 copies of the weights (half the bytes per token; logits move by ~1e-4)",
      decodeWeights,
      "f32" as DecodeWeights,
    )
    .action(async (promptArg: string | undefined, opts, cmd) => {
      const globals = cmd.optsWithGlobals() as GlobalOptions;
      const sources = [
        promptArg !== undefined,
        opts.file !== undefined,
        opts.prompts !== undefined,
        opts.promptIds !== undefined,
      ].filter((x) => x).length;
      if (sources === 0) {
        throw new TnlError(
          "usage",
          'tnl generate: give a prompt ("text", -f FILE, --prompts FILE or --prompt-ids IDS)',
        );
      }
      if (sources > 1) {
        throw new TnlError(
          "usage",
          "tnl generate: give one prompt source: text, -f, --prompts or --prompt-ids",
        );
      }
      if (promptArg === "") throw new TnlError("usage", "tnl generate: the prompt is empty");
      if (opts.logprobs && !opts.json) throw new TnlError("usage", "--logprobs needs --json");
      if (opts.echo && opts.json) {
        throw new TnlError("usage", "--echo applies to text output; --json reports the continuation alone");
      }
      for (const s of opts.stop) {
        if (s === "") throw new TnlError("usage", "--stop: the stop string is empty");
      }

      // Prompt texts first, so a missing file is reported before the GPU opens.
      let texts: Uint8Array[] | null = null;
      if (promptArg !== undefined) texts = [new TextEncoder().encode(promptArg)];
      if (opts.file !== undefined) {
        const t = await readPromptBytes(opts.file);
        if (t.length === 0) throw new TnlError("input", `${opts.file}: the prompt file is empty`);
        texts = [t];
      }
      if (opts.prompts !== undefined) {
        const lines = byteLines(await readPromptBytes(opts.prompts));
        if (lines.length && lines.at(-1)!.length === 0) lines.pop();
        if (lines.length === 0) throw new TnlError("input", `${opts.prompts}: no prompts in the file`);
        const empty = lines.findIndex((l) => l.length === 0);
        if (empty >= 0) throw new TnlError("input", `${opts.prompts}: line ${empty + 1} is an empty prompt`);
        texts = lines;
      }

      const t0 = performance.now();
      const gpu = await gpuFromOptions(globals);
      try {
        const { model } = await loadModel(gpu, opts.model);
        const m = model.dims;
        const tokFile = await tokenizerFileIn(opts.model);
        const tokenizer: Tokenizer | null = tokFile ? await loadTokenizer(tokFile) : null;
        if (!tokenizer && (texts || opts.stop.length)) {
          throw new TnlError(
            "input",
            `${opts.model} has no tokenizer (tokenizer.json or a SentencePiece model): give --prompt-ids` +
              (opts.stop.length ? " and no --stop" : ""),
          );
        }
        let prompts: number[][];
        if (texts) {
          const bos = await configuredBos(opts.model, tokenizer, m.bosId);
          const tok = tokenizer!;
          const encode = (b: Uint8Array) =>
            tok.encodeBytes ? tok.encodeBytes(b) : tok.encode(new TextDecoder().decode(b));
          prompts = texts.map((t) => (bos === null ? [] : [bos]).concat(encode(t)));
          prompts.forEach((ids, i) => {
            if (ids.length === 0) throw new TnlError("input", `prompt ${i + 1} encodes to no tokens`);
            const bad = ids.findIndex((id) => id >= m.vocab);
            if (bad >= 0) {
              throw new TnlError(
                "input",
                `prompt ${i + 1}: the tokenizer gave id ${
                  ids[bad]
                } at position ${bad}, outside the model's ` +
                  `vocabulary of ${m.vocab}`,
              );
            }
          });
        } else {
          prompts = [parsePromptIds(opts.promptIds!, m.vocab)];
        }
        const loadMs = performance.now() - t0;

        const seed = opts.seed === -1 ? randomSeed() : opts.seed;
        if (opts.seed === -1 && opts.temp > 0) note(`seed: ${seed}`);
        const sampling: SamplerSettings = {
          temp: opts.temp,
          topK: opts.topK,
          topP: opts.topP,
          minP: opts.minP,
          repeatPenalty: opts.repeatPenalty,
          repeatLastN: opts.repeatPenalty === 1 ? 0 : opts.repeatLastN,
          seed,
          banned: opts.ignoreEos ? m.eosId : null,
          logprobs: Boolean(opts.logprobs),
        };
        const streaming = prompts.length === 1 && !opts.json && tokenizer !== null;
        // The text --echo prints before prompt i's continuation (with a tokenizer): the prompt as given, its
        // bytes, or its ids decoded. Without a tokenizer the prompt's ids go before the continuation's.
        const echoed = (i: number): Uint8Array =>
          texts ? texts[i] : new TextEncoder().encode(tokenizer!.decode(prompts[i]));
        if (streaming && opts.echo) await writeStdout(echoed(0));
        const eos = opts.ignoreEos ? null : m.eosId;
        const results: { out: SequenceOutput; text: StopText | null }[] = [];
        let prefillMs = 0, decodeMs = 0;
        const enc = new TextEncoder();
        for (let g0 = 0; g0 < prompts.length; g0 += GEMV_MAX_BATCH) {
          const group = prompts.slice(g0, g0 + GEMV_MAX_BATCH);
          const texts = group.map(() => (tokenizer ? new StopText(opts.stop) : null));
          const streams = group.map((ids) => (tokenizer ? continuationDecoder(tokenizer, ids) : null));
          const gen = new Generator(model, { batch: group.length, sampling, weights: opts.weights });
          let tPrefill = performance.now(), tDecode = 0;
          const write = async (s: string) => {
            if (s) await writeStdout(enc.encode(s));
          };
          try {
            const outs = await generate(gen, group.map((ids, i): Prompt => ({ ids, stream: g0 + i })), {
              maxTokens: opts.nPredict,
              eos,
              onPrefill: async () => {
                await gpu.idle();
                tDecode = performance.now();
                prefillMs += tDecode - tPrefill;
              },
              onToken: (s, token) => {
                const text = texts[s], stream = streams[s];
                if (!text || !stream || token === eos || token >= tokenizer!.vocabSize) return false;
                return text.push(stream.push(token));
              },
              onChunk: async () => {
                if (streaming) await write(texts[0]!.take());
              },
            });
            decodeMs += performance.now() - tDecode;
            outs.forEach((out, i) => {
              const text = texts[i];
              if (text && out.stop !== "word" && text.push(streams[i]!.flush())) out.stop = "word";
              results.push({ out, text });
            });
            tPrefill = performance.now();
          } finally {
            gen.destroy();
          }
          if (streaming) {
            const rest = texts[0]!.take(true);
            await write(rest + (texts[0]!.text.endsWith("\n") ? "" : "\n"));
          }
        }

        const promptN = prompts.reduce((n, p) => n + p.length, 0);
        const predictedN = results.reduce((n, r) => n + r.out.tokens.length, 0);
        const timings = {
          load_ms: round(loadMs),
          prompt_n: promptN,
          prompt_ms: round(prefillMs),
          prompt_per_token_ms: round(prefillMs / promptN),
          prompt_per_second: round((promptN * 1000) / prefillMs),
          predicted_n: predictedN,
          predicted_ms: round(decodeMs),
          predicted_per_token_ms: predictedN ? round(decodeMs / predictedN) : 0,
          predicted_per_second: predictedN ? round((predictedN * 1000) / decodeMs) : 0,
        };
        const resultJson = (r: (typeof results)[number], i: number) => ({
          content: r.text ? r.text.text : null,
          tokens: r.out.tokens,
          prompt_n: prompts[i].length,
          stop_type: r.out.stop,
          stopping_word: r.text?.stop ?? "",
          ...(opts.logprobs
            ? {
              logprobs: r.out.tokens.map((id, k) => ({
                id,
                token: tokenizer?.idToToken(id) ?? null,
                logprob: r.out.logprobs[k],
              })),
            }
            : {}),
        });
        if (opts.json) {
          const doc = prompts.length === 1 && opts.prompts === undefined
            ? { model: opts.model, seed, ...resultJson(results[0], 0), timings }
            : { model: opts.model, seed, results: results.map(resultJson), timings };
          await writeOutput("-", JSON.stringify(doc, null, 2));
        } else if (!streaming) {
          const dec = new TextDecoder();
          const lines = results.map((r, i) => {
            if (!r.text) return (opts.echo ? [...prompts[i], ...r.out.tokens] : r.out.tokens).join(" ");
            return (opts.echo ? dec.decode(echoed(i)) : "") + r.text.text;
          });
          await writeOutput("-", lines.join("\n"));
        }
        const stops = [...new Set(results.map((r) => r.out.stop))].join(", ");
        note(
          `load ${timings.load_ms.toFixed(0)} ms; prompt ${promptN} tokens in ${
            timings.prompt_ms.toFixed(1)
          } ms ` +
            `(${timings.prompt_per_second.toFixed(1)} tokens/s); generated ${predictedN} tokens in ` +
            `${timings.predicted_ms.toFixed(1)} ms (${
              timings.predicted_per_second.toFixed(1)
            } tokens/s); stop: ${stops}`,
        );
      } finally {
        gpu.close();
      }
    });
}
