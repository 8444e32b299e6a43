// What every subcommand shares: the global options, opening the GPU from them, and output helpers.

import { ADAPTER_CHOICES, type AdapterChoice, type Gpu, openGpu } from "../core/gpu.ts";
import { TnlError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/files.ts";

export interface GlobalOptions {
  adapter?: string;
  verbose?: true;
}

export async function gpuFromOptions(opts: GlobalOptions): Promise<Gpu> {
  let adapter: AdapterChoice | undefined;
  if (opts.adapter !== undefined) {
    if (!(ADAPTER_CHOICES as readonly string[]).includes(opts.adapter)) {
      throw new TnlError("usage", `--adapter ${opts.adapter}: expected one of ${ADAPTER_CHOICES.join(", ")}`);
    }
    adapter = opts.adapter as AdapterChoice;
  }
  return await openGpu({ adapter });
}

/** Progress and notes: stderr, so stdout carries only the command's result. */
export function note(line: string): void {
  console.error(line);
}

/** All of `bytes` to stdout (one write may take only part of them, e.g. into a full pipe). */
export async function writeStdout(bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
}

/** Writes `text` to FILE, or to stdout when FILE is "-". */
export async function writeOutput(file: string, text: string): Promise<void> {
  if (file === "-") {
    await writeStdout(new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n"));
  } else {
    await writeFileAtomic(file, text.endsWith("\n") ? text : text + "\n");
  }
}

/** Parses a positive integer option value, naming the flag on error. */
export function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
      throw new TnlError("usage", `${flag} ${value}: expected a positive integer`);
    }
    return n;
  };
}
