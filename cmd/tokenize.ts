// `tnl tokenize train|encode|decode`: train a byte-level BPE (HuggingFace tokenizer.json), encode a file
// to ids (stdout) or a token file (-o), decode ids back to text. `tnl data brown`: the Brown Corpus splits.

import { Command } from "@commander-js/extra-typings";
import { ByteLevelBpe } from "../core/bpe.ts";
import { trainBpeFromFiles } from "../core/bpe_train.ts";
import { BROWN_PACKAGE, BROWN_VERSION, defaultBrownSource, writeBrown } from "../core/brown.ts";
import { ioError, TnlError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/files.ts";
import { Progress } from "../core/progress.ts";
import {
  encodeBytesTo,
  type EncodeOptions,
  readTokenFileWithHeader,
  TOKEN_FILE_MAGIC,
  TokenFileWriter,
} from "../core/tokenfile.ts";
import { loadTokenizer, type Tokenizer } from "../core/tokenizer.ts";
import { note, positiveInt, writeStdout } from "./common.ts";

async function readInput(path: string): Promise<Uint8Array> {
  try {
    if (path === "-") return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    return await Deno.readFile(path);
  } catch (e) {
    throw ioError("read", path === "-" ? "stdin" : path, e);
  }
}

function nonNegativeInt(flag: string) {
  return (value: string): number => (value.trim() === "0" ? 0 : positiveInt(flag)(value));
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(2)} MB`;
}

/** Encodes FILE (or stdin) to a token file, or to ids on stdout; returns the token count. */
export async function encodeFile(
  tok: Tokenizer,
  input: string,
  output: string | null,
  opts: EncodeOptions,
): Promise<number> {
  const bytes = await readInput(input);
  const progress = bytes.length > 4e6
    ? new Progress(`encode ${input}`, bytes.length, { unit: "bytes" })
    : null;
  if (output === null) {
    const parts: string[] = [];
    let count = 0;
    await encodeBytesTo(tok, bytes, opts, (ids) => {
      if (ids.length > 0) parts.push(ids.join(" "));
      count += ids.length;
    }, (done) => progress?.update(done));
    progress?.finish();
    await writeStdout(new TextEncoder().encode(parts.join(" ") + "\n"));
    return count;
  }
  const writer = await TokenFileWriter.create(output, tok.vocabSize);
  try {
    await encodeBytesTo(tok, bytes, opts, (ids) => writer.write(ids), (done) => progress?.update(done));
  } catch (e) {
    await writer.abort();
    throw e;
  }
  await writer.close();
  progress?.finish();
  return writer.count;
}

/** Ids from the command line ("1 2 3", "1,2,3", "[1, 2, 3]"), a token file, or a text file of ids. */
async function readIds(arg: string): Promise<number[]> {
  const parse = (text: string, where: string) => {
    const parts = text.replace(/[[\],]/g, " ").trim().split(/\s+/).filter((p) => p.length > 0);
    return parts.map((p) => {
      if (!/^\d+$/.test(p)) throw new TnlError("input", `${where}: "${p}" is not a token id`);
      return Number(p);
    });
  };
  if (arg !== "-" && /^[\s\d,[\]]*$/.test(arg)) return parse(arg, "ids");
  const bytes = await readInput(arg);
  const magic = new TextEncoder().encode(TOKEN_FILE_MAGIC);
  if (bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b)) {
    return Array.from((await readTokenFileWithHeader(arg)).ids);
  }
  return parse(new TextDecoder().decode(bytes), arg === "-" ? "stdin" : arg);
}

export function tokenizeCommand(): Command {
  const tokenize = new Command("tokenize").description(
    "train byte-level BPE tokenizers; encode and decode with them or SentencePiece models",
  );

  tokenize.command("train")
    .description("train a byte-level BPE tokenizer (HuggingFace tokenizer.json; <pad>=0 <s>=1 </s>=2)")
    .argument("<files...>", "training text files (UTF-8; invalid bytes are kept as bytes)")
    .requiredOption(
      "--vocab-size <n>",
      "total vocabulary: 3 special + 256 byte tokens + merges",
      positiveInt("--vocab-size"),
    )
    .requiredOption("-o, --output <file>", "where to write the tokenizer.json")
    .option(
      "--min-frequency <k>",
      "never merge a pair seen fewer than K times (default 0)",
      nonNegativeInt("--min-frequency"),
    )
    .action(async (files: string[], opts) => {
      if (opts.vocabSize < 259) {
        throw new TnlError(
          "usage",
          `--vocab-size ${opts.vocabSize}: must be at least 259 (3 special tokens + 256 byte tokens)`,
        );
      }
      const t0 = performance.now();
      let progress: Progress | null = null;
      const tok = await trainBpeFromFiles(files, {
        vocabSize: opts.vocabSize,
        minFrequency: opts.minFrequency ?? 0,
        onCounted: (pieces, distinct, bytes) =>
          note(`counted ${pieces} words (${distinct} distinct) in ${mb(bytes)} from ${files.length} file(s)`),
        onProgress: (done) => {
          progress ??= new Progress("train", opts.vocabSize - 259);
          progress.update(done);
        },
      });
      progress ??= new Progress("train", opts.vocabSize - 259);
      const merges = tok.spec.merges.length;
      progress.finish(`${merges} merges`);
      await writeFileAtomic(opts.output, tok.toJsonText());
      if (tok.vocabSize < opts.vocabSize) {
        note(
          `the corpus has no more pairs${opts.minFrequency ? ` seen ${opts.minFrequency}+ times` : ""}: ` +
            `vocabulary ${tok.vocabSize} < --vocab-size ${opts.vocabSize}`,
        );
      }
      note(
        `wrote ${opts.output}: ${tok.vocabSize} tokens (3 special, 256 bytes, ${merges} merges) in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
    });

  tokenize.command("encode")
    .description("encode a file's bytes exactly: ids on stdout (one line), or a token file with -o")
    .argument("<file>", "input text file, or - for stdin")
    .requiredOption("--tokenizer <path>", "tokenizer.json, SentencePiece model, or a directory holding one")
    .option("-o, --output <file>", 'write a token file (README, "Token files") instead of printing ids')
    .option("--docs", "blank-line-separated documents, each followed by </s>")
    .option("--bos", "add BOS before the input (before each document with --docs)")
    .option("--eos", "add EOS after the input")
    .action(async (file: string, opts) => {
      const tok = await loadTokenizer(opts.tokenizer);
      const t0 = performance.now();
      const n = await encodeFile(tok, file, opts.output ?? null, {
        docs: Boolean(opts.docs),
        bos: Boolean(opts.bos),
        eos: Boolean(opts.eos),
      });
      if (opts.output) {
        note(`wrote ${opts.output}: ${n} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
    });

  tokenize.command("decode")
    .description('decode ids ("1 2 3", a token file, or a file of ids; - for stdin) to text on stdout')
    .argument("<ids-or-file>", "ids, a token file, or a text file of ids")
    .requiredOption("--tokenizer <path>", "tokenizer.json, SentencePiece model, or a directory holding one")
    .option("-o, --output <file>", "write the text to FILE instead of stdout")
    .action(async (arg: string, opts) => {
      const tok = await loadTokenizer(opts.tokenizer);
      const ids = await readIds(arg);
      // Byte-level BPE gives back the exact bytes (invalid UTF-8 included); otherwise the text.
      const bytes = tok instanceof ByteLevelBpe
        ? tok.decodeBytes(ids)
        : new TextEncoder().encode(tok.decode(ids));
      if (opts.output) await writeFileAtomic(opts.output, bytes);
      else await writeStdout(bytes);
    });

  return tokenize;
}

export function dataCommand(): Command {
  const data = new Command("data").description("prepare corpora");
  data.command("brown")
    .description(
      `the Brown Corpus (${BROWN_PACKAGE}@${BROWN_VERSION}) as {train,val,test}.txt, split by file index`,
    )
    .option(
      "--source <dir>",
      `the ${BROWN_PACKAGE} package files (default: node_modules/${BROWN_PACKAGE} of this checkout)`,
    )
    .option("--out <dir>", "output directory", "data/brown")
    .option("--tokenizer <path>", "also write {train,val,test}.bin: each document's ids followed by </s>")
    .action(async (opts) => {
      const source = opts.source ?? defaultBrownSource();
      const written = await writeBrown(source, opts.out);
      for (const w of written) note(`wrote ${w.path}: ${w.documents} documents, ${w.bytes} bytes`);
      if (opts.tokenizer) {
        const tok = await loadTokenizer(opts.tokenizer);
        for (const w of written) {
          const bin = w.path.replace(/\.txt$/, ".bin");
          const n = await encodeFile(tok, w.path, bin, { docs: true });
          note(`wrote ${bin}: ${n} tokens`);
        }
      }
    });
  return data;
}
