// Elementwise kernels over n elements (one invocation each, 2-D grid of 256-wide workgroups so that any n
// fits under the 65535-workgroups-per-dimension limit). One OP per variant:
//   FILL       out = value
//   RAND       out = uniform in [alpha, beta) from a hash of (index + base1, seed f): benchmark inputs
//   AXPY       y = alpha·x + beta·y                 (residual adds, gradient accumulation; beta = 0 never reads y)
//   SUMK       y = alpha·Σ_{s < f} x[s·n + i] + beta·y   (the partial products of a split-K matmul)
//   SILU_FWD   y = x·σ(x)
//   SILU_BWD   dx = alpha·dy·σ(x)·(1 + x·(1 − σ(x))) + beta·dx
//   MUL_FWD    y = a ⊙ b                            (the output gate u ⊙ o)
//   MUL_BWD    da = dy ⊙ b + beta·da, db = dy ⊙ a + beta·db
//   GLU_FWD    g[r, c] = h[r, c] · h[r, F + c]       (SGLU's product of the two projections, h = [x·W1ᵀ | x·W2ᵀ])
//   GLU_BWD    dh[r, c] = dg[r, c] · h[r, F + c], dh[r, F + c] = dg[r, c] · h[r, c]

struct Params {
  n: u32,      // elements (GLU: rows · F)
  f: u32,      // GLU: F, the width of each half
  base0: u32,  // element offsets of the operands inside their bindings
  base1: u32,
  base2: u32,
  base3: u32,
  base4: u32,
  alpha: f32,
  beta: f32,
  value: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if FILL
@group(0) @binding(0) var<storage, read_write> out: array<f32>;  // out: [n] f32
#endif
#if RAND
@group(0) @binding(0) var<storage, read_write> out: array<f32>;  // out: [n] f32

// PCG-style integer hash (Jarzynski & Olano 2020).
fn pcg_hash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
#endif
#if AXPY
@group(0) @binding(0) var<storage, read> x: array<f32>;          // x: [n] f32
@group(0) @binding(1) var<storage, read_write> y: array<f32>;    // y: [n] f32
#endif
#if SUMK
@group(0) @binding(0) var<storage, read> x: array<f32>;          // x: [f, n] f32, f partial results
@group(0) @binding(1) var<storage, read_write> y: array<f32>;    // y: [n] f32
#endif
#if SILU_FWD
@group(0) @binding(0) var<storage, read> x: array<f32>;          // x: [n] f32
@group(0) @binding(1) var<storage, read_write> y: array<f32>;    // y: [n] f32
#endif
#if SILU_BWD
@group(0) @binding(0) var<storage, read> x: array<f32>;          // x: [n] f32 (the input of the forward)
@group(0) @binding(1) var<storage, read> dy: array<f32>;         // dy: [n] f32
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;   // dx: [n] f32
#endif
#if MUL_FWD
@group(0) @binding(0) var<storage, read> a: array<f32>;          // a: [n] f32
@group(0) @binding(1) var<storage, read> b: array<f32>;          // b: [n] f32
@group(0) @binding(2) var<storage, read_write> y: array<f32>;    // y: [n] f32
#endif
#if MUL_BWD
@group(0) @binding(0) var<storage, read> a: array<f32>;          // a: [n] f32
@group(0) @binding(1) var<storage, read> b: array<f32>;          // b: [n] f32
@group(0) @binding(2) var<storage, read> dy: array<f32>;         // dy: [n] f32
@group(0) @binding(3) var<storage, read_write> da: array<f32>;   // da: [n] f32
@group(0) @binding(4) var<storage, read_write> db: array<f32>;   // db: [n] f32
#endif
#if GLU_FWD
@group(0) @binding(0) var<storage, read> h: array<f32>;          // h: [rows, 2F] f32
@group(0) @binding(1) var<storage, read_write> g: array<f32>;    // g: [rows, F] f32
#endif
#if GLU_BWD
@group(0) @binding(0) var<storage, read> h: array<f32>;          // h: [rows, 2F] f32
@group(0) @binding(1) var<storage, read> dg: array<f32>;         // dg: [rows, F] f32
@group(0) @binding(2) var<storage, read_write> dh: array<f32>;   // dh: [rows, 2F] f32
#endif

fn sigmoid(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= p.n) { return; }
#if FILL
  out[p.base0 + i] = p.value;
#endif
#if RAND
  let h = pcg_hash((i + p.base1) ^ pcg_hash(p.f));
  out[p.base0 + i] = p.alpha + (p.beta - p.alpha) * (f32(h >> 8u) * (1.0 / 16777216.0));
#endif
#if AXPY
  var r = p.alpha * x[p.base0 + i];
  if (p.beta != 0.0) { r = fma(p.beta, y[p.base1 + i], r); }
  y[p.base1 + i] = r;
#endif
#if SUMK
  var acc = 0.0;
  for (var s = 0u; s < p.f; s++) { acc += x[p.base0 + s * p.n + i]; }
  var r = p.alpha * acc;
  if (p.beta != 0.0) { r = fma(p.beta, y[p.base1 + i], r); }
  y[p.base1 + i] = r;
#endif
#if SILU_FWD
  let v = x[p.base0 + i];
  y[p.base1 + i] = v * sigmoid(v);
#endif
#if SILU_BWD
  let v = x[p.base0 + i];
  let s = sigmoid(v);
  var r = p.alpha * dy[p.base1 + i] * s * (1.0 + v * (1.0 - s));
  if (p.beta != 0.0) { r = fma(p.beta, dx[p.base2 + i], r); }
  dx[p.base2 + i] = r;
#endif
#if MUL_FWD
  y[p.base2 + i] = a[p.base0 + i] * b[p.base1 + i];
#endif
#if MUL_BWD
  let d = dy[p.base2 + i];
  var ra = d * b[p.base1 + i];
  var rb = d * a[p.base0 + i];
  if (p.beta != 0.0) {
    ra = fma(p.beta, da[p.base3 + i], ra);
    rb = fma(p.beta, db[p.base4 + i], rb);
  }
  da[p.base3 + i] = ra;
  db[p.base4 + i] = rb;
#endif
#if GLU_FWD
  let r = i / p.f;
  let c = i % p.f;
  let row = p.base0 + r * 2u * p.f;
  g[p.base1 + i] = h[row + c] * h[row + p.f + c];
#endif
#if GLU_BWD
  let r = i / p.f;
  let c = i % p.f;
  let row = p.base0 + r * 2u * p.f;
  let d = dg[p.base1 + i];
  let out_row = p.base2 + r * 2u * p.f;
  dh[out_row + c] = d * h[row + p.f + c];
  dh[out_row + p.f + c] = d * h[row + c];
#endif
}
