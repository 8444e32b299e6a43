// Running the CLI as a user does, for end-to-end tests: exit code, stdout, stderr; and checks that a
// command left existing files as they were.

import assert from "node:assert/strict";
import { REPO_ROOT } from "./_gpu.ts";

export const PERMS = ["--allow-read", "--allow-write", "--allow-env", "--allow-run"];

export interface CliResult {
  code: number;
  stdout: string;
  /** stdout as bytes (binary outputs) */
  bytes: Uint8Array;
  stderr: string;
}

export async function tnl(
  args: string[],
  opts: { env?: Record<string, string>; flags?: string[]; cwd?: string; stdin?: Uint8Array } = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(opts.flags ?? PERMS), `${REPO_ROOT}/main.ts`, ...args],
    env: { NO_COLOR: "1", ...opts.env },
    cwd: opts.cwd ?? REPO_ROOT,
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin) {
    const w = child.stdin.getWriter();
    await w.write(opts.stdin);
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    bytes: out.stdout,
    stderr: dec.decode(out.stderr),
  };
}

/** The error lines of stderr ("error: ..."), checked to carry no stack trace. */
export function errorLines(stderr: string): string[] {
  assert.ok(!/^\s+at /m.test(stderr), `no stack trace without --verbose:\n${stderr}`);
  return stderr.trim().split("\n").filter((l) => l.startsWith("error"));
}

/** The one error line of stderr. */
export function oneErrorLine(stderr: string): string {
  const lines = errorLines(stderr);
  assert.equal(lines.length, 1, `exactly one error line, got:\n${stderr}`);
  return lines[0];
}

/** Every file under dir with its bytes' hash, to check a command changed and lost nothing. */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile) {
        const h = await crypto.subtle.digest("SHA-256", await Deno.readFile(p));
        out.set(
          p.slice(dir.length + 1),
          Array.from(new Uint8Array(h), (b) => b.toString(16).padStart(2, "0")).join(""),
        );
      }
    }
  };
  await walk(dir);
  return out;
}

/** Asserts that every file of `before` is still there with the same bytes (new files are allowed). */
export async function assertKept(dir: string, before: Map<string, string>): Promise<void> {
  const now = await snapshot(dir);
  for (const [path, hash] of before) {
    assert.ok(now.has(path), `${path} was lost`);
    assert.equal(now.get(path), hash, `${path} was changed`);
  }
}
