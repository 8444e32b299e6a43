// The one error type of tnl. Every failure a user can cause or meet is a TnlError whose kind fixes the
// process exit code (README, "Exit codes"). Anything else that escapes is a bug (exit 1).

export const EXIT_CODES = {
  internal: 1, // a bug in tnl: please report it
  usage: 2, // bad command line: unknown command or flag, missing or malformed argument
  input: 3, // bad input content: config, model, tokenizer, data (the message names file/key/line/value)
  io: 4, // a file or directory is missing, unreadable or unwritable
  "no-gpu": 5, // no WebGPU adapter (install a GPU driver or mesa-vulkan-drivers)
  gpu: 6, // GPU error: validation, out of memory, device lost, a size over a device limit
  unavailable: 7, // the subcommand or feature is not available in this version yet
  diverged: 8, // training stopped on a non-finite loss or gradient norm
  regression: 9, // `bench --compare` found a case slower than the threshold
  interrupted: 130, // SIGINT (SIGTERM gives 143)
} as const;

export type ErrorKind = keyof typeof EXIT_CODES;

export class TnlError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TnlError";
    this.kind = kind;
  }
  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}

/** Exit code for anything thrown: a TnlError's own code, 1 for everything else. */
export function exitCodeOf(err: unknown): number {
  return err instanceof TnlError ? err.exitCode : EXIT_CODES.internal;
}

/**
 * What the user sees: one line per problem of a TnlError ("error: ..."; a config with several problems has
 * several lines), or "internal error: ..." for a bug.
 */
export function oneLine(err: unknown): string {
  if (err instanceof TnlError) return err.message.split("\n").map((l) => `error: ${l}`).join("\n");
  const msg = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return `internal error: ${msg.split("\n")[0]} (run with --verbose for the stack)`;
}

/** Converts a filesystem error into a TnlError naming the path and the action. */
export function ioError(action: string, path: string, err: unknown): TnlError {
  let why = err instanceof Error ? err.message : String(err);
  if (err instanceof Deno.errors.NotFound) why = "no such file or directory";
  else if (err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.NotCapable) {
    why = "permission denied";
  } else if (err instanceof Deno.errors.IsADirectory) why = "is a directory, expected a file";
  return new TnlError("io", `cannot ${action} ${path}: ${why}`, { cause: err });
}
