// A one-line progress bar on stderr: redrawn in place (at most 10 times a second) when stderr is a
// terminal; otherwise silent until `done`, which prints one final line, so logs stay short.

export interface ProgressOptions {
  /** where lines go; defaults to stderr */
  write?: (text: string) => void;
  /** redraw in place; defaults to whether stderr is a terminal */
  interactive?: boolean;
  /** counts as bytes (shown as MB) rather than items */
  unit?: string;
}

const BAR_WIDTH = 28;

export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #write: (text: string) => void;
  readonly #interactive: boolean;
  readonly #unit: string;
  readonly #start = performance.now();
  #lastDraw = 0;
  #done = 0;
  #status = "";
  #finished = false;

  constructor(label: string, total: number, opts: ProgressOptions = {}) {
    this.#label = label;
    this.#total = Math.max(0, total);
    this.#write = opts.write ?? ((t) => Deno.stderr.writeSync(new TextEncoder().encode(t)));
    this.#interactive = opts.interactive ?? isStderrTerminal();
    this.#unit = opts.unit ?? "";
  }

  get interactive(): boolean {
    return this.#interactive;
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.#start) / 1000;
  }

  /** Sets the amount done (and a status shown after the bar); redraws when interactive and 100 ms have passed. */
  update(done: number, status?: string): void {
    this.#done = done;
    if (status !== undefined) this.#status = status;
    if (!this.#interactive || this.#finished) return;
    const now = performance.now();
    if (now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#write(`\r${this.line()}\x1b[K`);
  }

  /** Ends the bar with a final line (`note` appended). */
  finish(note = ""): void {
    if (this.#finished) return;
    this.#finished = true;
    const line = this.line() + (note ? `  ${note}` : "");
    this.#write(this.#interactive ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  /** The current line (no control characters). */
  line(): string {
    const frac = this.#total > 0 ? Math.min(1, this.#done / this.#total) : 1;
    const filled = Math.round(frac * BAR_WIDTH);
    const t = this.elapsedSeconds;
    const eta = frac > 0 && frac < 1 ? `, eta ${formatSeconds((t / frac) * (1 - frac))}` : "";
    const count = this.#unit ? `${this.#done}/${this.#total} ${this.#unit}` : `${this.#done}/${this.#total}`;
    return `${this.#label} [${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}] ${
      (frac * 100).toFixed(0).padStart(3)
    }% ${count} ${formatSeconds(t)}${eta}${this.#status ? `  ${this.#status}` : ""}`;
  }
}

function formatSeconds(s: number): string {
  return s < 60
    ? `${s.toFixed(1)}s`
    : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

function isStderrTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}
