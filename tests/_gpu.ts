// Shared by the GPU tests: one device per test file. No adapter is a failure, never a skip.

import { type Gpu, openGpu } from "../core/gpu.ts";
import { errorStats } from "../core/stats.ts";
import assert from "node:assert/strict";

let shared: Promise<Gpu> | null = null;
/** TNL_REPORT_ERRORS=1 prints every comparison's measured error (for issue notes and tolerance reviews). */
const REPORT = Deno.env.get("TNL_REPORT_ERRORS") === "1";

export function testGpu(): Promise<Gpu> {
  shared ??= openGpu();
  return shared;
}

/** Deno's sanitizers count the long-lived device's resources against single tests. */
export const gpuTest = { sanitizeResources: false, sanitizeOps: false } as const;

/** ‖ours − ref‖/‖ref‖ ≤ rel, every value finite; reports the figures on failure. */
export function assertClose(
  ours: ArrayLike<number>,
  ref: ArrayLike<number>,
  rel: number,
  what: string,
): void {
  const e = errorStats(ours, ref);
  if (REPORT) {
    console.error(
      `error-report\t${what}\t${e.rel.toExponential(2)}\t${e.maxAbs.toExponential(2)}\t${
        e.maxRef.toExponential(2)
      }`,
    );
  }
  assert.equal(e.nonFinite, 0, `${what}: ${e.nonFinite} non-finite values`);
  assert.ok(
    e.rel <= rel,
    `${what}: ‖Δ‖/‖ref‖ = ${e.rel.toExponential(3)} > ${rel} (max |Δ| ${
      e.maxAbs.toExponential(3)
    }, max |ref| ${e.maxRef.toExponential(3)})`,
  );
}

/** The repository root (tests run from anywhere). */
export const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
