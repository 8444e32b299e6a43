// tnl: train, evaluate and run TransNormerLLM on WebGPU. The CLI: subcommands from cmd/, every error
// mapped to one line on stderr and a documented exit code (README, "Exit codes").

import { Command, CommanderError, type CommandUnknownOpts, Option } from "@commander-js/extra-typings";
import { benchCommand } from "./cmd/bench.ts";
import { demoCommand } from "./cmd/demo.ts";
import { evalCommand } from "./cmd/eval.ts";
import { trainCommand } from "./cmd/train.ts";
import { generateCommand } from "./cmd/generate.ts";
import { infoCommand } from "./cmd/info.ts";
import { dataCommand, tokenizeCommand } from "./cmd/tokenize.ts";
import { EXIT_CODES, exitCodeOf, oneLine } from "./core/errors.ts";
import { ADAPTER_CHOICES } from "./core/gpu.ts";
import { VERSION } from "./core/version.ts";

export function buildCli(): CommandUnknownOpts {
  const program = new Command("tnl")
    .description("TransNormerLLM on WebGPU: tokenize, train, eval, generate, bench")
    .version(VERSION, "-V, --version")
    .addOption(
      new Option(
        "--adapter <kind>",
        "WebGPU adapter preference (default: $TNL_ADAPTER, else high-performance)",
      )
        .choices(ADAPTER_CHOICES),
    )
    .option("--verbose", "print stack traces with errors (also TNL_DEBUG=1)")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => Deno.stdout.writeSync(new TextEncoder().encode(s)),
      writeErr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
    });
  const subcommands: CommandUnknownOpts[] = [
    tokenizeCommand(),
    dataCommand(),
    infoCommand(),
    benchCommand(),
    trainCommand(),
    demoCommand(),
    evalCommand(),
    generateCommand(),
  ];
  for (const c of subcommands) {
    program.addCommand(c);
    inherit(program, c);
  }
  return program;
}

/** addCommand does not pass settings down: exit override and output go to every level. */
function inherit(parent: CommandUnknownOpts, c: CommandUnknownOpts): void {
  c.copyInheritedSettings(parent);
  for (const sub of c.commands) inherit(c, sub);
}

/** Runs the CLI on `args`; returns the exit code. */
export async function runCli(args: string[]): Promise<number> {
  const verbose = args.includes("--verbose") || envFlag("TNL_DEBUG");
  try {
    await buildCli().parseAsync(args, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (help, version, or a usage error).
      return err.exitCode === 0 ? 0 : EXIT_CODES.usage;
    }
    console.error(oneLine(err));
    if (verbose && err instanceof Error && err.stack) console.error(err.stack);
    return exitCodeOf(err);
  }
}

function envFlag(name: string): boolean {
  try {
    const v = Deno.env.get(name);
    return v !== undefined && v !== "" && v !== "0";
  } catch {
    return false;
  }
}

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
