// `tnl bench model`: whole-model cases at a preset's shape with random weights — the training step
// (forward, backward, norm, AdamW in one pass), the prefill of a prompt, and decoding at given positions
// (tokens/s of a real generation: chunks of rounds, each read back).

import type { BenchCase, BenchShape } from "./bench.ts";
import { presetConfig, resolveDims } from "./config.ts";
import { type DecodeWeights, FIRST_CHUNK, Generator, runChunks } from "./generate.ts";
import { Activations, forwardBackward, TnlModel } from "./model.ts";
import { OptimizerState } from "./optimizer.ts";
import { Rng } from "./random.ts";
import type { SamplerSettings } from "../kernels/sample.ts";

export interface ModelBenchOptions {
  preset: string;
  batch: number;
  seq: number;
  vocab: number;
  /** prompt tokens of the prefill case */
  prefill?: number;
  /** positions the decode case starts at (a prompt of that many tokens is prefilled first) */
  positions?: number[];
  /** tokens drawn per decode repeat */
  decodeTokens?: number;
  /** the weights the decode case's GEMVs read (as tnl generate --weights); default f32 */
  weights?: DecodeWeights;
}

/** llama.cpp's default sampling chain: what a decode step costs in a real generation. */
const BENCH_SAMPLING: SamplerSettings = {
  temp: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1,
  repeatLastN: 0,
  seed: 1,
  banned: null,
  logprobs: false,
};

function randomIds(n: number, vocab: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => 1 + rng.int(vocab - 1));
}

export function modelBenchCases(o: ModelBenchOptions): BenchCase[] {
  const shape: BenchShape = { preset: o.preset, B: o.batch, T: o.seq, vocab: o.vocab };
  const dimsOf = () => resolveDims({ ...presetConfig(o.preset), vocab_size: o.vocab }, `preset ${o.preset}`);
  const prefillT = o.prefill ?? 4096;
  const positions = o.positions ?? [512, 1024, 4096, 16384, 65536];
  const decodeN = o.decodeTokens ?? 512;
  const weights = o.weights ?? "f32";
  return [{
    name: "train-step",
    group: "model",
    shapes: () => [shape],
    setup(gpu) {
      const dims = dimsOf();
      const model = TnlModel.randomOnGpu(gpu, dims, 1);
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
  }, {
    // One prompt through every layer (the lightning prefill entry writes each layer's state), logits of the
    // last position: the time to the first token, without sampling.
    name: "prefill",
    group: "model",
    shapes: () => [{ preset: o.preset, T: prefillT, vocab: o.vocab }],
    setup(gpu) {
      const dims = dimsOf();
      const model = TnlModel.randomOnGpu(gpu, dims, 3);
      const gen = new Generator(model, { batch: 1, sampling: BENCH_SAMPLING });
      const prompt = { ids: randomIds(prefillT, dims.vocab, 4) };
      // The layers' matmuls for every token, the LM head for the last one (the embedding is a lookup).
      const layers = model.layout.total - dims.vocab * dims.d * (dims.tied ? 1 : 2);
      return {
        encode: (step) => gen.encodePrefill(step, 0, prompt),
        flops: 2 * layers * prefillT + 2 * dims.vocab * dims.d,
        tokens: prefillT,
        dispose: () => {
          gen.destroy();
          model.destroy();
        },
      };
    },
  }, {
    // Batch 1 from `position` on: `tokens` draws as a generation makes them (runChunks: first chunk small,
    // then growing ×CHUNK_GROWTH; every chunk read back), timed by the wall clock. Each repeat restarts from the prefilled state.
    name: "decode",
    group: "model",
    shapes: () =>
      positions.map((p) => ({
        preset: o.preset,
        position: p,
        tokens: decodeN,
        vocab: o.vocab,
        ...(weights === "f16" ? { weights } : {}),
      })),
    async setup(gpu, s) {
      const dims = dimsOf();
      const model = TnlModel.randomOnGpu(gpu, dims, 3);
      const gen = new Generator(model, { batch: 1, sampling: BENCH_SAMPLING, weights });
      gen.prefill([{ ids: randomIds(Number(s.position), dims.vocab, 5) }]);
      const saved = gen.saveState();
      await gpu.idle();
      return {
        encode: () => {},
        tokens: decodeN,
        async measure(repeats, warmup) {
          const times: number[] = [];
          for (let i = 0; i < warmup + repeats; i++) {
            gen.restoreState(saved);
            const t0 = performance.now();
            let n = 0;
            await runChunks(gen, {
              first: FIRST_CHUNK,
              left: () => decodeN - n,
              take: (chunk) => (n += chunk.tokens.length) < decodeN,
            });
            if (i >= warmup) times.push(performance.now() - t0);
          }
          return times;
        },
        dispose: () => {
          for (const t of saved.copies) t.destroy();
          gen.destroy();
          model.destroy();
        },
      };
    },
  }];
}
