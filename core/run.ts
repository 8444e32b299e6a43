// The run directory of `tnl train`: a lock against two runs, checkpoints written so that an interrupt at any
// moment leaves the previous one loadable (temporary directory, fsync, rename, DONE last), metrics.jsonl
// appended row by row, run.json.

import { ioError, TnlError } from "./errors.ts";
import { writeFileAtomic } from "./files.ts";

export const DONE = "DONE";

export interface CheckpointInfo {
  dir: string;
  name: string;
  step: number;
}

/** A lock file (pid + host); a lock whose process is gone on this host is stale and taken over. */
export class RunLock {
  private constructor(readonly path: string) {}

  static async acquire(outDir: string, note: (s: string) => void): Promise<RunLock> {
    const path = `${outDir}/LOCK`;
    const host = hostName();
    try {
      const prev = JSON.parse(await Deno.readTextFile(path)) as { pid?: number; host?: string };
      if (prev.host === host && typeof prev.pid === "number" && processAlive(prev.pid)) {
        throw new TnlError(
          "io",
          `${outDir} is in use by another tnl train (pid ${prev.pid} on ${host}); if that is not so, remove ${path}`,
        );
      }
      if (prev.host !== host) {
        throw new TnlError(
          "io",
          `${outDir} is locked by a run on host ${prev.host} (pid ${prev.pid}); if it is not running, remove ${path}`,
        );
      }
      note(`note: taking over the stale lock of pid ${prev.pid} (no longer running)`);
    } catch (e) {
      if (e instanceof TnlError) throw e;
      if (!(e instanceof Deno.errors.NotFound)) {
        if (e instanceof SyntaxError) note(`note: replacing the unreadable lock ${path}`);
        else throw ioError("read", path, e);
      }
    }
    await writeFileAtomic(
      path,
      JSON.stringify({ pid: Deno.pid, host, started: new Date().toISOString() }) + "\n",
    );
    return new RunLock(path);
  }

  release(): void {
    try {
      const cur = JSON.parse(Deno.readTextFileSync(this.path)) as { pid?: number };
      if (cur.pid === Deno.pid) Deno.removeSync(this.path);
    } catch { /* already gone */ }
  }
}

function hostName(): string {
  try {
    return Deno.readTextFileSync("/etc/hostname").trim() || "localhost";
  } catch {
    try {
      return Deno.env.get("HOSTNAME") ?? "localhost";
    } catch {
      return "localhost";
    }
  }
}

function processAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    // /proc/<id> also exists for thread ids: a live process is one whose thread-group id is itself.
    // A zombie (exited, not yet reaped) is not running either.
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/^Tgid:\s*(\d+)/m.exec(status)?.[1]) === pid && !/^State:\s*[ZX]/m.test(status);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && procReadable()) return false;
  }
  // /proc is out of reach (Deno reads it only with --allow-all) or absent (not Linux): ask the shell's
  // `kill -0`, which fails with "No such process" for a pid that is not running. Where even that cannot
  // tell, keep the lock.
  try {
    const r = new Deno.Command("sh", {
      args: ["-c", 'kill -0 "$1"', "sh", String(pid)],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (r.success) return true;
    return !/no such process/i.test(new TextDecoder().decode(r.stderr));
  } catch {
    return true;
  }
}

function procReadable(): boolean {
  try {
    Deno.readTextFileSync("/proc/self/status");
    return true;
  } catch {
    return false;
  }
}

/** Complete checkpoints (ckpt-NNNNNN with DONE), oldest first; incomplete ones are noted and skipped. */
export async function listCheckpoints(outDir: string, note: (s: string) => void): Promise<CheckpointInfo[]> {
  const out: CheckpointInfo[] = [];
  try {
    for await (const e of Deno.readDir(outDir)) {
      const m = /^ckpt-(\d+)$/.exec(e.name);
      if (!e.isDirectory || !m) continue;
      const dir = `${outDir}/${e.name}`;
      try {
        await Deno.stat(`${dir}/${DONE}`);
      } catch {
        note(`note: skipping ${dir}: no ${DONE} marker (an interrupted save)`);
        continue;
      }
      out.push({ dir, name: e.name, step: Number(m[1]) });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw ioError("read directory", outDir, e);
  }
  return out.sort((a, b) => a.step - b.step);
}

export const checkpointName = (step: number) => `ckpt-${String(step).padStart(6, "0")}`;

/**
 * Writes a checkpoint: `write(tmpDir)` fills a temporary directory (files fsynced), which is renamed to
 * `name` (replacing an older one of that name only once the new one is complete), then DONE is written
 * last. A failure leaves earlier checkpoints as they were and removes the temporary directory.
 */
export async function writeCheckpoint(
  outDir: string,
  name: string,
  write: (tmpDir: string) => Promise<void>,
): Promise<string> {
  const final = `${outDir}/${name}`;
  const tmp = `${outDir}/.${name}.tmp-${Deno.pid}`;
  const old = `${outDir}/.${name}.old-${Deno.pid}`;
  try {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.mkdir(tmp, { recursive: true });
    await write(tmp);
    let replaced = false;
    try {
      await Deno.rename(final, old);
      replaced = true;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await Deno.rename(tmp, final);
    await writeFileAtomic(`${final}/${DONE}`, new Date().toISOString() + "\n");
    if (replaced) await Deno.remove(old, { recursive: true });
    return final;
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    // A half-replaced checkpoint of this name comes back.
    try {
      await Deno.stat(old);
      await Deno.remove(final, { recursive: true }).catch(() => {});
      await Deno.rename(old, final);
    } catch { /* nothing to restore */ }
    if (e instanceof TnlError) throw new TnlError(e.kind, `saving checkpoint ${final} failed: ${e.message}`);
    throw ioError(`save checkpoint into`, final, e);
  }
}

/** Appends JSON rows to metrics.jsonl, one write per row (the file is complete after every row). */
export class MetricsLog {
  constructor(readonly path: string) {}

  async append(row: Record<string, unknown>): Promise<void> {
    try {
      const f = await Deno.open(this.path, { append: true, create: true });
      try {
        await f.write(new TextEncoder().encode(JSON.stringify(row) + "\n"));
      } finally {
        f.close();
      }
    } catch (e) {
      throw ioError("append to", this.path, e);
    }
  }

  /** Rows logged so far (for resuming: rows after the resumed step are dropped). */
  async rows(): Promise<Record<string, unknown>[]> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw ioError("read", this.path, e);
    }
    const rows: Record<string, unknown>[] = [];
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        rows.push(JSON.parse(line));
      } catch { /* a torn last line of a killed run */ }
    }
    return rows;
  }

  /** Keeps the rows with step ≤ `step` (the others are redone after a resume). */
  async truncateAfter(step: number): Promise<Record<string, unknown>[]> {
    const rows = (await this.rows()).filter((r) => typeof r.step === "number" && r.step <= step);
    await writeFileAtomic(this.path, rows.map((r) => JSON.stringify(r) + "\n").join(""));
    return rows;
  }
}
