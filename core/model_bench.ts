// `tnl bench model`: whole-model cases at a preset's shape with random weights — the training step
// (forward, backward, gradient norm, clipping, AdamW in one pass) as tokens/s.

import type { BenchCase, BenchShape } from "./bench.ts";
import { presetConfig, resolveDims } from "./config.ts";
import { Activations, forwardBackward, TnlModel } from "./model.ts";
import { OptimizerState } from "./optimizer.ts";
import { Rng } from "./random.ts";

export interface ModelBenchOptions {
  preset: string;
  batch: number;
  seq: number;
  vocab: number;
}

export function modelBenchCases(o: ModelBenchOptions): BenchCase[] {
  const shape: BenchShape = { preset: o.preset, B: o.batch, T: o.seq, vocab: o.vocab };
  return [{
    name: "train-step",
    group: "model",
    shapes: () => [shape],
    setup(gpu) {
      const dims = resolveDims({ ...presetConfig(o.preset), vocab_size: o.vocab }, `preset ${o.preset}`);
      const model = TnlModel.init(gpu, dims, 1);
      const acts = new Activations(gpu, dims, o.batch, o.seq, true);
      const rng = new Rng(2);
      const predicted = acts.setBatch(
        Array.from({ length: o.batch * o.seq }, () => 1 + rng.int(dims.vocab - 1)),
      );
      const opt = new OptimizerState(gpu, model);
      let t = 0;
      const n = model.layout.total;
      return {
        encode: (step) => {
          forwardBackward(step, model, acts, opt.grads, { lossScale: 1 / predicted });
          opt.update(step, {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weightDecay: 0.1,
            clip: 1,
            step: ++t,
          });
        },
        // matmul FLOPs of forward (2·params·tokens) and backward (twice that), as usually counted
        flops: 6 * (n - dims.vocab * dims.d * (dims.tied ? 0 : 1)) * o.batch * o.seq,
        tokens: o.batch * o.seq,
        dispose: () => {
          opt.destroy();
          acts.destroy();
          model.destroy();
        },
      };
    },
  }];
}
