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
import { gemv, type GemvForm, recurrentStep } from "./decode.ts";
import { convertToF16 } from "./copy.ts";
import { type SamplerSettings, sampleTokens } from "./sample.ts";
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
  {
    // The decode GEMVs of tnl-385m at batch 1, 24 dependent dispatches per repeat (one per layer, as in a
    // decode round): the time per dispatch is the median / 24; GB/s counts the weights read.
    name: "gemv",
    group: "kernels",
    shapes: (quick) =>
      (quick ? [{ in: 256, out: 1000, op: "norm", nb: 1, dispatches: 4 }] : [
        { in: 1024, out: 4096, op: "norm", nb: 1, dispatches: 24 },
        { in: 1024, out: 5632, op: "norm", nb: 1, dispatches: 24 },
        { in: 1024, out: 1024, op: "norm-prod", nb: 1, dispatches: 24 },
        { in: 2816, out: 1024, op: "prod", nb: 1, dispatches: 24 },
        { in: 1024, out: 64000, op: "norm", nb: 1, dispatches: 4 },
        { in: 1024, out: 4096, op: "norm", nb: 8, dispatches: 24 },
      ]).flatMap((s) => [{ ...s, form: "auto" }, { ...s, form: "tree" }, { ...s, form: "auto", w: "f16" }]),
    setup(gpu, s) {
      const inF = N(s, "in"), out = N(s, "out"), nb = N(s, "nb"), n = N(s, "dispatches");
      const op = String(s.op);
      const [a, b, w32] = randomTensors(gpu, [[[nb, inF], "a"], [[nb, inF], "b"], [[out, inF], "w"]], 9);
      const y = Tensor.empty(gpu, [nb, out], "f32", "y");
      // w=f16: the weights as f16 (tnl generate --weights f16)
      const half = s.w === "f16";
      const w = half ? Tensor.empty(gpu, [out, inF], "f16", "w16") : w32;
      if (half) gpu.run("gemv bench weights", (step) => convertToF16(step, w32, w));
      return {
        encode: (step) => {
          for (let i = 0; i < n; i++) {
            gemv(step, {
              a,
              b: op.endsWith("prod") ? b : undefined,
              w,
              y,
              nb,
              out,
              in: inF,
              norm: op.startsWith("norm"),
              beta: 1,
              form: s.form as GemvForm,
            });
          }
        },
        bytes: n * (out * inF * (half ? 2 : 4) + nb * (2 * inF + 2 * out) * 4),
        dispose: dispose(half ? [a, b, w32, w, y] : [a, b, w, y]),
      };
    },
  },
  {
    // The recurrent step of one decode token (tnl-385m: H 8, d 128; LRPE doubles the state rows), 24
    // dependent dispatches per repeat; GB/s counts the state read and written.
    name: "recurrent-step",
    group: "kernels",
    shapes: (quick) =>
      quick ? [{ B: 1, H: 2, d: 32, lrpe: 1, dispatches: 4 }] : [
        { B: 1, H: 8, d: 128, lrpe: 0, dispatches: 24 },
        { B: 1, H: 8, d: 128, lrpe: 1, dispatches: 24 },
        { B: 8, H: 8, d: 128, lrpe: 0, dispatches: 24 },
        // other column slices per workgroup than the default 16 (the vec4 form's row groups: 1024 / cols)
        ...[8, 32, 64].map((cols) => ({ B: 1, H: 8, d: 128, lrpe: 0, dispatches: 24, cols })),
      ],
    setup(gpu, s) {
      const B = N(s, "B"), H = N(s, "H"), d = N(s, "d"), n = N(s, "dispatches"), lrpe = N(s, "lrpe") === 1;
      const dk = lrpe ? 2 * d : d;
      const [qkvu, theta, kv] = randomTensors(gpu, [[[B, 4 * H * d], "qkvu"], [[H, d], "theta"], [[
        B,
        H,
        dk,
        d,
      ], "kv"]], 10);
      const seq = Tensor.from(gpu, new Uint32Array(B * 4).fill(7), [B, 4], "u32", "seq");
      const decay = Tensor.from(gpu, new Float32Array(H).fill(0.99), [H], "f32", "decay");
      const o = Tensor.empty(gpu, [B, H, d], "f32", "o");
      return {
        encode: (step) => {
          for (let i = 0; i < n; i++) {
            recurrentStep(step, {
              qkvu,
              theta: lrpe ? theta : null,
              seq,
              decay,
              kv,
              o,
              B,
              H,
              d,
              columns: s.cols === undefined ? undefined : N(s, "cols"),
            });
          }
        },
        bytes: n * B * H * (2 * dk * d + 4 * d) * 4,
        dispose: dispose([qkvu, theta, kv, seq, decay, o]),
      };
    },
  },
  {
    // One draw per dispatch over the vocabulary of tnl-385m, batch 1: greedy, and llama.cpp's default chain
    // (temp 0.8, top-k 40, top-p 0.95, min-p 0.05); 16 dependent dispatches per repeat.
    name: "sample",
    group: "kernels",
    shapes: (quick) =>
      (quick ? [{ vocab: 1000, dispatches: 4 }] : [{ vocab: 64000, dispatches: 16 }]).flatMap((s) => [
        { ...s, chain: "greedy" },
        { ...s, chain: "llama" },
      ]),
    setup(gpu, s) {
      const vocab = N(s, "vocab"), n = N(s, "dispatches");
      const [logits] = randomTensors(gpu, [[[1, vocab], "logits"]], 11);
      const hist = Tensor.from(gpu, new Uint32Array(1), [1, 1], "u32", "hist");
      const seq = Tensor.from(gpu, new Uint32Array([1, 0, 0, 0]), [1, 4], "u32", "seq");
      const cur = Tensor.empty(gpu, [1], "u32", "cur");
      const out = Tensor.empty(gpu, [n, 1, 2], "u32", "out");
      const info = Tensor.empty(gpu, [1, 4], "f32", "info");
      const greedy = s.chain === "greedy";
      const settings: SamplerSettings = {
        temp: greedy ? 0 : 0.8,
        topK: greedy ? 0 : 40,
        topP: greedy ? 1 : 0.95,
        minP: greedy ? 0 : 0.05,
        repeatPenalty: 1,
        repeatLastN: 0,
        seed: 1,
        banned: null,
        logprobs: false,
      };
      return {
        encode: (step) => {
          for (let i = 0; i < n; i++) {
            sampleTokens(step, { logits, hist, seq, cur, out, info, nseq: 1, vocab, histW: 1 }, settings, i);
          }
        },
        bytes: n * vocab * 4,
        dispose: dispose([logits, hist, seq, cur, out, info]),
      };
    },
  },
];
