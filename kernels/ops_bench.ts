// Benchmark cases of the non-attention kernels, at the shapes of tnl-385m (D = 1024, F = 2816, V = 64000,
// B·T = 8192 tokens) and, with --quick, at small shapes. Inputs are random (generated on the GPU).

import type { BenchCase, BenchShape } from "../core/bench.ts";
import type { Gpu } from "../core/gpu.ts";
import { Tensor } from "../core/tensor.ts";
import { adamw } from "./adamw.ts";
import { crossEntropy } from "./cross_entropy.ts";
import { gluBackward, gluForward, randomTensor, siluBackward, siluForward } from "./elementwise.ts";
import { normGateBackward, normGateForward, qkvPrepBackward, qkvPrepForward } from "./token_mixer.ts";
import { embeddingBackward, embeddingBuckets, embeddingForward, uploadBuckets } from "./embedding.ts";
import { linearBackward, linearForward, lmHeadLoss } from "./layers.ts";
import { gradNorm, partialsFor } from "./reduce.ts";
import { srmsnormBackward, srmsnormForward } from "./srmsnorm.ts";
import { Rng } from "../core/random.ts";

const N = (s: BenchShape, k: string) => Number(s[k]);

/** Tensors of random values made on the GPU. */
function randomTensors(gpu: Gpu, specs: [number[], string][], seed: number): Tensor[] {
  return specs.map(([shape, label], i) => randomTensor(gpu, shape, label, seed + i));
}

const dispose = (ts: (Tensor | null)[]) => () => ts.forEach((t) => t?.destroy());

export const opsBenchCases: BenchCase[] = [
  {
    name: "srmsnorm-fwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ rows: 256, d: 256 }] : [{ rows: 8192, d: 1024 }, { rows: 8192, d: 4096 }]),
    setup(gpu, s) {
      const rows = N(s, "rows"), d = N(s, "d");
      const [x] = randomTensors(gpu, [[[rows, d], "x"]], 1);
      const y = Tensor.empty(gpu, [rows, d], "f32", "y"), rstd = Tensor.empty(gpu, [rows], "f32", "rstd");
      return {
        encode: (step) => srmsnormForward(step, x, y, rstd, rows, d),
        bytes: (2 * rows * d + rows) * 4,
        dispose: dispose([x, y, rstd]),
      };
    },
  },
  {
    name: "srmsnorm-bwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ rows: 256, d: 256 }] : [{ rows: 8192, d: 1024 }, { rows: 8192, d: 4096 }]),
    setup(gpu, s) {
      const rows = N(s, "rows"), d = N(s, "d");
      const [y, dy, rstd] = randomTensors(gpu, [[[rows, d], "y"], [[rows, d], "dy"], [[rows], "rstd"]], 2);
      const dx = Tensor.empty(gpu, [rows, d], "f32", "dx");
      return {
        encode: (step) => srmsnormBackward(step, y, rstd, dy, dx, rows, d),
        bytes: (3 * rows * d + rows) * 4,
        dispose: dispose([y, dy, rstd, dx]),
      };
    },
  },
  {
    name: "cross-entropy",
    group: "kernels",
    shapes: (quick) => (quick ? [{ rows: 64, vocab: 2000 }] : [{ rows: 1024, vocab: 64000 }]),
    setup(gpu, s) {
      const rows = N(s, "rows"), vocab = N(s, "vocab");
      const [logits] = randomTensors(gpu, [[[rows, vocab], "logits"]], 3);
      const rng = new Rng(3);
      const targets = Tensor.from(
        gpu,
        Int32Array.from({ length: rows }, () => rng.int(vocab)),
        [rows],
        "i32",
        "targets",
      );
      const loss = Tensor.empty(gpu, [rows], "f32", "loss");
      return {
        encode: (step) => crossEntropy(step, logits, targets, loss, rows, vocab, { gradScale: 1 / rows }),
        bytes: 2 * rows * vocab * 4,
        dispose: dispose([logits, targets, loss]),
      };
    },
  },
  {
    name: "linear-fwd",
    group: "kernels",
    shapes: (quick) =>
      quick ? [{ n: 256, in: 256, out: 384 }] : [
        { n: 8192, in: 1024, out: 4096 }, // qkvu projection
        { n: 8192, in: 1024, out: 1024 }, // out_proj
        { n: 8192, in: 1024, out: 5632 }, // SGLU l1 + l2
        { n: 8192, in: 2816, out: 1024 }, // SGLU l3
      ],
    setup(gpu, s) {
      const n = N(s, "n"), inF = N(s, "in"), outF = N(s, "out");
      const [x, w] = randomTensors(gpu, [[[n, inF], "x"], [[outF, inF], "w"]], 4);
      const y = Tensor.empty(gpu, [n, outF], "f32", "y");
      return {
        encode: (step) => linearForward(step, x, w, y, n, inF, outF),
        flops: 2 * n * inF * outF,
        dispose: dispose([x, w, y]),
      };
    },
  },
  {
    name: "linear-bwd",
    group: "kernels",
    shapes: (quick) =>
      quick
        ? [{ n: 256, in: 256, out: 384 }]
        : [{ n: 8192, in: 1024, out: 4096 }, { n: 8192, in: 2816, out: 1024 }],
    setup(gpu, s) {
      const n = N(s, "n"), inF = N(s, "in"), outF = N(s, "out");
      const [x, w, dy] = randomTensors(gpu, [[[n, inF], "x"], [[outF, inF], "w"], [[n, outF], "dy"]], 5);
      const dx = Tensor.empty(gpu, [n, inF], "f32", "dx"), dw = Tensor.empty(gpu, [outF, inF], "f32", "dw");
      return {
        encode: (step) => linearBackward(step, x, w, dy, dx, dw, n, inF, outF),
        flops: 4 * n * inF * outF,
        dispose: dispose([x, w, dy, dx, dw]),
      };
    },
  },
  {
    name: "lm-head-loss",
    group: "kernels",
    shapes: (quick) =>
      quick
        ? [{ n: 128, d: 128, vocab: 2000, chunk: 64 }]
        : [{ n: 8192, d: 1024, vocab: 64000, chunk: 1024 }],
    setup(gpu, s) {
      const n = N(s, "n"), d = N(s, "d"), vocab = N(s, "vocab"), chunk = N(s, "chunk");
      const [x, w] = randomTensors(gpu, [[[n, d], "x"], [[vocab, d], "w"]], 6);
      const rng = new Rng(6);
      const targets = Tensor.from(
        gpu,
        Int32Array.from({ length: n }, () => rng.int(vocab)),
        [n],
        "i32",
        "targets",
      );
      const loss = Tensor.empty(gpu, [n], "f32", "loss"),
        logits = Tensor.empty(gpu, [chunk, vocab], "f32", "logits");
      const dx = Tensor.empty(gpu, [n, d], "f32", "dx"), dw = Tensor.empty(gpu, [vocab, d], "f32", "dw");
      return {
        encode: (step) =>
          lmHeadLoss(step, { x, w, targets, loss, logits, n, d, vocab, gradScale: 1 / n, dx, dw }),
        flops: 6 * n * d * vocab,
        tokens: n,
        dispose: dispose([x, w, targets, loss, logits, dx, dw]),
      };
    },
  },
  {
    name: "embedding-fwdbwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ n: 512, d: 128, vocab: 2000 }] : [{ n: 8192, d: 1024, vocab: 64000 }]),
    setup(gpu, s) {
      const n = N(s, "n"), d = N(s, "d"), vocab = N(s, "vocab");
      const rng = new Rng(7);
      const hostIds = Uint32Array.from({ length: n }, () => 1 + rng.int(vocab - 1));
      const ids = Tensor.from(gpu, hostIds, [n], "u32", "ids");
      const buckets = uploadBuckets(gpu, embeddingBuckets(hostIds, vocab, 0));
      const [emb, dx] = randomTensors(gpu, [[[vocab, d], "emb"], [[n, d], "dx"]], 7);
      const x = Tensor.empty(gpu, [n, d], "f32", "x"), demb = Tensor.empty(gpu, [vocab, d], "f32", "demb");
      return {
        encode: (step) => {
          embeddingForward(step, ids, emb, x, n, d, vocab, Math.sqrt(d));
          embeddingBackward(step, buckets, dx, demb, d, vocab, Math.sqrt(d));
        },
        bytes: 4 * n * d * 4,
        dispose: dispose([ids, emb, dx, x, demb, buckets.order, buckets.tokens, buckets.starts]),
      };
    },
  },
  {
    name: "silu-fwdbwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ n: 65536 }] : [{ n: 8192 * 2048 }]),
    setup(gpu, s) {
      const n = N(s, "n");
      const [x, dy] = randomTensors(gpu, [[[n], "x"], [[n], "dy"]], 9);
      const y = Tensor.empty(gpu, [n], "f32", "y"), dx = Tensor.empty(gpu, [n], "f32", "dx");
      return {
        encode: (step) => {
          siluForward(step, x, y);
          siluBackward(step, x, dy, dx);
        },
        bytes: 5 * n * 4,
        dispose: dispose([x, dy, y, dx]),
      };
    },
  },
  {
    name: "glu-fwdbwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ rows: 256, f: 256 }] : [{ rows: 8192, f: 2816 }]),
    setup(gpu, s) {
      const rows = N(s, "rows"), f = N(s, "f");
      const [h, dg] = randomTensors(gpu, [[[rows, 2 * f], "h"], [[rows, f], "dg"]], 10);
      const g = Tensor.empty(gpu, [rows, f], "f32", "g"), dh = Tensor.empty(gpu, [rows, 2 * f], "f32", "dh");
      return {
        encode: (step) => {
          gluForward(step, h, g, rows, f);
          gluBackward(step, h, dg, dh, rows, f);
        },
        // forward reads h, writes g; backward reads h, dg and writes dh
        bytes: (2 + 1 + 2 + 1 + 2) * rows * f * 4,
        dispose: dispose([h, dg, g, dh]),
      };
    },
  },
  {
    name: "qkv-prep-lrpe-fwdbwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ b: 2, t: 128, h: 4, d: 32 }] : [{ b: 4, t: 2048, h: 8, d: 128 }]),
    setup(gpu, s) {
      const sh = { b: N(s, "b"), t: N(s, "t"), h: N(s, "h"), d: N(s, "d") };
      const n = sh.b * sh.t, e = sh.h * sh.d;
      const [qkvu, theta, dq, dk, dv] = randomTensors(gpu, [
        [[n, 4 * e], "qkvu"],
        [[sh.h, sh.d], "theta"],
        [[n * 2 * e], "dq"],
        [[n * 2 * e], "dk"],
        [[n * e], "dv"],
      ], 11);
      const q = Tensor.empty(gpu, [n * 2 * e], "f32", "q"), k = Tensor.empty(gpu, [n * 2 * e], "f32", "k");
      const v = Tensor.empty(gpu, [n * e], "f32", "v"), dqkvu = Tensor.empty(gpu, [n, 4 * e], "f32", "dqkvu");
      const terms = Tensor.empty(gpu, [n, e], "f32", "dθ terms");
      return {
        encode: (step) => {
          qkvPrepForward(step, sh, qkvu, theta, q, k, v);
          qkvPrepBackward(step, sh, qkvu, theta, dq, dk, dv, dqkvu, terms);
        },
        // forward: reads 3E, writes 5E per token; backward: reads 3E + 5E, writes 3E + E
        bytes: 20 * n * e * 4,
        dispose: dispose([qkvu, theta, dq, dk, dv, q, k, v, dqkvu, terms]),
      };
    },
  },
  {
    name: "norm-gate-fwdbwd",
    group: "kernels",
    shapes: (quick) => (quick ? [{ b: 2, t: 128, h: 4, d: 32 }] : [{ b: 4, t: 2048, h: 8, d: 128 }]),
    setup(gpu, s) {
      const sh = { b: N(s, "b"), t: N(s, "t"), h: N(s, "h"), d: N(s, "d") };
      const n = sh.b * sh.t, e = sh.h * sh.d;
      const [o, qkvu, dog] = randomTensors(gpu, [[[n * e], "o"], [[n, 4 * e], "qkvu"], [[n, e], "dog"]], 12);
      const on = Tensor.empty(gpu, [n, e], "f32", "on"), rstd = Tensor.empty(gpu, [n], "f32", "rstd");
      const og = Tensor.empty(gpu, [n, e], "f32", "og"),
        dqkvu = Tensor.empty(gpu, [n, 4 * e], "f32", "dqkvu");
      const dO = Tensor.empty(gpu, [n * e], "f32", "do");
      return {
        encode: (step) => {
          normGateForward(step, sh, o, qkvu, on, rstd, og);
          normGateBackward(step, sh, dog, on, rstd, qkvu, dqkvu, dO);
        },
        // forward: reads o twice and u, writes on, og; backward: reads dog, on, u twice, writes du, do
        bytes: 15 * n * e * 4,
        dispose: dispose([o, qkvu, dog, on, rstd, og, dqkvu, dO]),
      };
    },
  },
  {
    name: "adamw",
    group: "kernels",
    shapes: (quick) => (quick ? [{ params: 100_000 }] : [{ params: 100_000_000 }]),
    setup(gpu, s) {
      const n = N(s, "params");
      const [p, g] = randomTensors(gpu, [[[n], "params"], [[n], "grads"]], 8);
      const m = Tensor.empty(gpu, [n], "f32", "m"), v = Tensor.empty(gpu, [n], "f32", "v");
      const norm = Tensor.empty(gpu, [1], "f32", "norm");
      const flag = Tensor.from(gpu, new Uint32Array([0xffffffff]), [1], "u32", "flag");
      const partials = Tensor.empty(gpu, [partialsFor(n)], "f32", "partials");
      let t = 0;
      return {
        encode: (step) => {
          t++;
          gradNorm(step, g, norm, flag, t, partials);
          adamw(step, p, g, m, v, norm, {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weightDecay: 0.1,
            clip: 1,
            step: t,
          });
        },
        // grad norm reads g; AdamW reads p, g, m, v and writes p, m, v
        bytes: 8 * n * 4,
        dispose: dispose([p, g, m, v, norm, flag, partials]),
      };
    },
  },
];
