// What this build of tnl is: its version (from deno.json) and, where it can be found, the git commit.

import denoJson from "../deno.json" with { type: "json" };

export const VERSION: string = denoJson.version;

/** The commit of the checkout tnl runs from: $TNL_GIT_COMMIT, else `git rev-parse HEAD`, else null. */
export async function gitCommit(): Promise<string | null> {
  try {
    const fromEnv = Deno.env.get("TNL_GIT_COMMIT");
    if (fromEnv) return fromEnv;
  } catch { /* no env permission */ }
  try {
    const dir = new URL(".", import.meta.url);
    if (dir.protocol !== "file:") return null;
    const out = await new Deno.Command("git", {
      args: ["rev-parse", "HEAD"],
      cwd: dir,
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return null;
    const commit = new TextDecoder().decode(out.stdout).trim();
    return /^[0-9a-f]{40}$/.test(commit) ? commit : null;
  } catch {
    return null; // no git, no run permission, or a compiled binary
  }
}

export function runtimeVersions(): { deno: string; v8: string; typescript: string } {
  return { deno: Deno.version.deno, v8: Deno.version.v8, typescript: Deno.version.typescript };
}
