// File helpers with tnl's guarantees: errors name the path; writes are atomic (temporary name in the same
// directory, fsync, rename), so an interrupted write never leaves a half-written file behind; reads of big
// files go by byte range, never the whole file into memory.

import { ioError, TnlError } from "./errors.ts";

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await writeFileAtomicStreaming(path, (write) => write(bytes));
}

let tmpCounter = 0;

/**
 * Fault injection for the tests of what a failed write leaves behind (a full disk): with TNL_FAULT_WRITE set
 * to a substring, writes to paths containing it fail as a full disk does. Not for users.
 */
function injectedFault(path: string): Error | null {
  let pattern: string | undefined;
  try {
    pattern = Deno.env.get("TNL_FAULT_WRITE");
  } catch {
    return null;
  }
  return pattern && path.includes(pattern) ? new Error("No space left on device (os error 28)") : null;
}

/**
 * Writes `path` piece by piece: `fill` calls `write` as often as it likes (each call's bytes are written
 * before it resolves), then the file is synced and renamed into place. A TnlError thrown by `fill` passes
 * through unchanged; filesystem errors become io errors naming `path`. On any failure the temporary file
 * is removed and `path` is untouched.
 */
export async function writeFileAtomicStreaming(
  path: string,
  fill: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const base = path.slice(path.lastIndexOf("/") + 1);
  const tmp = `${dir}/.${base}.tmp-${Deno.pid}-${Date.now()}-${tmpCounter++}`;
  try {
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      await fill(async (bytes) => {
        const fault = injectedFault(path);
        if (fault) throw fault;
        let off = 0;
        while (off < bytes.length) off += await f.write(bytes.subarray(off));
      });
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      await Deno.remove(tmp);
    } catch { /* nothing to clean */ }
    if (e instanceof TnlError) throw e;
    throw ioError("write", path, e);
  }
}

/** Bytes that can be read by range: an open file or an array in memory. */
export interface ByteSource {
  /** The file path (or a label for bytes in memory), for messages. */
  readonly name: string;
  readonly size: number;
  /** `length` bytes from `offset`, in a fresh buffer of their own (the caller may keep or view it). */
  readAt(offset: number, length: number): Promise<Uint8Array>;
  close(): void;
}

/** An open file read by byte range. Reads are queued, so concurrent callers never interleave seek and read. */
export class RandomAccessFile implements ByteSource {
  #file: Deno.FsFile | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly name: string, file: Deno.FsFile, readonly size: number) {
    this.#file = file;
  }

  static async open(path: string): Promise<RandomAccessFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      throw ioError("open", path, e);
    }
    try {
      const st = await file.stat();
      if (!st.isFile) throw new Deno.errors.IsADirectory("not a regular file");
      return new RandomAccessFile(path, file, st.size);
    } catch (e) {
      file.close();
      throw ioError("open", path, e);
    }
  }

  readAt(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const run = this.#queue.then(() => this.#read(offset, length));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #read(offset: number, length: number): Promise<Uint8Array> {
    const file = this.#file;
    if (file === null) throw new TnlError("internal", `read of ${this.name} after close`);
    const out = new Uint8Array(length);
    try {
      await file.seek(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < length) {
        const n = await file.read(out.subarray(got));
        if (n === null) {
          throw new TnlError(
            "io",
            `cannot read ${this.name}: it ended at byte ${offset + got}, before ${
              offset + length
            } (changed while reading?)`,
          );
        }
        got += n;
      }
    } catch (e) {
      if (e instanceof TnlError) throw e;
      throw ioError("read", this.name, e);
    }
    return out;
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** Bytes in memory behind the same interface (tests, fuzzing, small files). */
export class MemorySource implements ByteSource {
  readonly size: number;
  constructor(readonly name: string, readonly bytes: Uint8Array) {
    this.size = bytes.length;
  }
  readAt(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    return Promise.resolve(this.bytes.slice(offset, offset + length));
  }
  close(): void {}
}

function checkRange(src: ByteSource, offset: number, length: number): void {
  // Callers validate ranges against the size first; reaching this is a bug, not bad input.
  if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0)) {
    throw new TnlError("internal", `bad read range ${offset}+${length} of ${src.name}`);
  }
  if (offset + length > src.size) {
    throw new TnlError("internal", `read ${offset}+${length} beyond the ${src.size} bytes of ${src.name}`);
  }
}
