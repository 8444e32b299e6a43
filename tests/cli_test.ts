import assert from "node:assert/strict";
import { EXIT_CODES } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";
import { REPO_ROOT } from "./_gpu.ts";
import { oneErrorLine, tnl } from "./_cli.ts";

Deno.test("tnl --help lists every subcommand; each subcommand has --help", async () => {
  const r = await tnl(["--help"]);
  assert.equal(r.code, 0);
  for (const c of ["tokenize", "train", "eval", "generate", "bench", "info"]) {
    assert.match(r.stdout, new RegExp(`\\b${c}\\b`));
  }
  for (
    const c of [["tokenize"], ["tokenize", "train"], ["train"], ["eval"], ["generate"], ["bench"], [
      "bench",
      "kernels",
    ], ["info"]]
  ) {
    const h = await tnl([...c, "--help"]);
    assert.equal(h.code, 0, `${c.join(" ")} --help: ${h.stderr}`);
    assert.match(h.stdout, /Usage: tnl/);
  }
});

Deno.test("tnl --version prints the version only", async () => {
  const r = await tnl(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), VERSION);
});

Deno.test("an unknown command or flag is a usage error (exit 2) in one line", async () => {
  const r = await tnl(["frobnicate"]);
  assert.equal(r.code, EXIT_CODES.usage);
  assert.match(oneErrorLine(r.stderr), /unknown command 'frobnicate'/);
  const f = await tnl(["info", "--no-such-flag"]);
  assert.equal(f.code, EXIT_CODES.usage);
  assert.match(oneErrorLine(f.stderr), /--no-such-flag/);
  const a = await tnl(["--adapter", "warp-drive", "info"]);
  assert.equal(a.code, EXIT_CODES.usage);
  assert.match(oneErrorLine(a.stderr), /warp-drive/);
  const e = await tnl(["info"], { env: { TNL_ADAPTER: "warp-drive" } });
  assert.equal(e.code, EXIT_CODES.usage);
  assert.match(oneErrorLine(e.stderr), /TNL_ADAPTER=warp-drive/);
});

Deno.test("tnl eval FILES with a missing model directory is an io error (exit 4) in one line", async () => {
  const r = await tnl(["eval", "--model", "no-such-model", "a.txt"]);
  assert.equal(r.code, EXIT_CODES.io);
  assert.match(oneErrorLine(r.stderr), /cannot read no-such-model\/config\.json: no such file/);
  assert.equal(r.stdout, "");
});

Deno.test("tnl info --json prints one JSON document with adapter, features, limits and a passing self-test", async () => {
  const r = await tnl(["info", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  for (const k of ["adapter", "features", "limits", "selfTest"]) assert.ok(k in j, `key ${k}`);
  assert.equal(typeof j.adapter.description, "string");
  assert.equal(typeof j.adapter.fallback, "boolean");
  for (const f of ["timestamp-query", "shader-f16", "subgroups"]) {
    assert.equal(typeof j.features[f], "boolean");
  }
  assert.ok(j.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20);
  assert.equal(j.selfTest.matmul.pass, true);
  assert.ok(j.selfTest.matmul.relError <= 1e-5);
  assert.ok(j.selfTest.matmul.speed.gflops > 0);
});

Deno.test("no WebGPU adapter: the install hint and exit code 5", async () => {
  // No D3D12 on Linux: wgpu finds no adapter for this backend.
  const r = await tnl(["info"], { env: { DENO_WEBGPU_BACKEND: "dx12" } });
  assert.equal(r.code, EXIT_CODES["no-gpu"]);
  assert.match(oneErrorLine(r.stderr), /no WebGPU adapter.*mesa-vulkan-drivers/);
});

Deno.test("tnl info reads no project file at run time (--deny-read of the repository)", async () => {
  const flags = ["--allow-read", `--deny-read=${REPO_ROOT}`, "--allow-write", "--allow-env", "--allow-run"];
  const tmp = await Deno.makeTempDir();
  try {
    const r = await tnl(["info"], { flags, cwd: tmp });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /self-test: .* PASS/);
    // Control: the same flags do forbid reading a project file.
    const probe = `${tmp}/probe.ts`;
    await Deno.writeTextFile(
      probe,
      `await Deno.readTextFile(${JSON.stringify(`${REPO_ROOT}/kernels/matmul.wgsl`)});`,
    );
    const c = await new Deno.Command(Deno.execPath(), { args: ["run", ...flags, probe], stderr: "piped" })
      .output();
    assert.notEqual(c.code, 0);
    assert.match(new TextDecoder().decode(c.stderr), /NotCapable|PermissionDenied|Requires read access/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("--verbose (or TNL_DEBUG=1) adds the stack trace to an error", async () => {
  const r = await tnl(["train", "no-such-config.yaml", "--verbose"]);
  assert.equal(r.code, EXIT_CODES.io);
  assert.match(r.stderr, / {4}at /);
  const d = await tnl(["train", "no-such-config.yaml"], { env: { TNL_DEBUG: "1" } });
  assert.match(d.stderr, / {4}at /);
});

Deno.test("tnl demo (a short run): corpus, tokenizer, training, evaluation before and after, a sample", async () => {
  const out = await Deno.makeTempDir();
  try {
    const r = await tnl([
      "demo",
      "--out",
      out,
      "--vocab",
      "300",
      "--steps",
      "2",
      "--eval-docs",
      "1",
      "--sample-tokens",
      "6",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    for (const k of ["before", "after"]) {
      assert.ok(j[k].loss > 0 && Number.isFinite(j[k].perplexity) && j[k].bits_per_byte > 0, k);
    }
    assert.equal(j.evaluated.documents, 1);
    assert.equal(j.steps, 2);
    assert.equal(j.sample.prompt, "The");
    assert.equal(typeof j.sample.text, "string");
    await Deno.stat(`${j.outputs.checkpoint}/DONE`);
    await Deno.stat(`${out}/tokenizer.json`);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
