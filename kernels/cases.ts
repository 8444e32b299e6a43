// Every kernel's benchmark cases, in the order `tnl bench kernels` runs them.

import type { BenchCase } from "../core/bench.ts";
import { matmulBenchCases } from "./matmul.ts";
import { opsBenchCases } from "./ops_bench.ts";

export const kernelBenchCases: readonly BenchCase[] = [...matmulBenchCases, ...opsBenchCases];
