// Subcommands whose implementation is still to come: they exist (with --help) so scripts can discover
// them, and say plainly that they are not available yet (exit code 7). None of them pretends to work.

import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { TnlError } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";

function planned(name: string, usage: string, description: string): CommandUnknownOpts {
  return new Command(name)
    .description(`${description} (not available yet)`)
    .usage(usage)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]")
    .action(() => {
      throw new TnlError("unavailable", `\`tnl ${name}\` is not available in tnl ${VERSION} yet`);
    });
}

export function plannedCommands(): CommandUnknownOpts[] {
  return [
    planned("train", "config.yaml [--fresh] [--json]", "train a model from a YAML config"),
  ];
}
