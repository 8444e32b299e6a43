// Every kernel's benchmark cases, in the order `tnl bench kernels` runs them.

import type { BenchCase } from "../core/bench.ts";
import { lightningBenchCases } from "./lightning.ts";
import { matmulBenchCases } from "./matmul.ts";
import { naiveLinearBenchCases } from "./naive_linear.ts";
import { opsBenchCases } from "./ops_bench.ts";
import { softmaxFlashBenchCases } from "./softmax_flash.ts";

export const kernelBenchCases: readonly BenchCase[] = [
  ...matmulBenchCases,
  ...opsBenchCases,
  ...lightningBenchCases,
  ...naiveLinearBenchCases,
  ...softmaxFlashBenchCases,
];
