// Kernels of one decode step (batch of NB ≤ 8 sequences, one token each), bandwidth-bound: each weight and
// each state element is read once.
//   GEMV: y[b, o] = Σ_i x[b, i] · W[o, i] (+ beta·y[b, o]) for W: [out, in] row-major. A workgroup takes 8
//         output rows; 32 invocations per row stride through `in` (coalesced), then a 32-way reduction in
//         workgroup memory. NB accumulators per invocation, unrolled.
//   RECUR: the robust recurrence (spec §5.1) for one token: kv ← λ·kv + kᵀv, o = q·kv, per (b, h), with the
//         fp32 state kv: [B, H, dk, dv]. A workgroup per (b, h); invocation (p, j) takes column j and the
//         rows i ≡ p (mod P), P = 256 / dv; partial sums of o meet in workgroup memory.

struct Params {
  rows: u32,   // GEMV: out; RECUR: B·H
  cols: u32,   // GEMV: in;  RECUR: dk
  heads: u32,  // RECUR: H; GEMV: row stride of y (all outputs)
  dv: u32,     // RECUR: dv
  base_a: u32,
  base_b: u32,
  base_c: u32,
  base_d: u32,
  base_e: u32,
  base_f: u32,
  beta: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if GEMV
const NB: u32 = {{NB}}u;
@group(0) @binding(0) var<storage, read> x: array<f32>;         // x: [NB, in] f32
@group(0) @binding(1) var<storage, read> w: array<f32>;         // w: [out, in] f32
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // y: [NB, stride] f32 (this piece: columns 0..rows)
var<workgroup> part: array<f32, 2048>;                           // [NB][8 rows][32 lanes]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row_in_wg = lid / 32u;
  let lane = lid % 32u;
  let o = (wg.y * nwg.x + wg.x) * 8u + row_in_wg;
  var acc: array<f32, NB>;
  for (var b = 0u; b < NB; b++) { acc[b] = 0.0; }
  if (o < p.rows) {
    let wrow = p.base_b + o * p.cols;
    for (var i = lane; i < p.cols; i += 32u) {
      let wv = w[wrow + i];
      for (var b = 0u; b < NB; b++) { acc[b] = fma(wv, x[p.base_a + b * p.cols + i], acc[b]); }
    }
  }
  for (var b = 0u; b < NB; b++) { part[(b * 8u + row_in_wg) * 32u + lane] = acc[b]; }
  workgroupBarrier();
  for (var s = 16u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var b = 0u; b < NB; b++) {
        let k = (b * 8u + row_in_wg) * 32u + lane;
        part[k] += part[k + s];
      }
    }
    workgroupBarrier();
  }
  if (lane == 0u && o < p.rows) {
    for (var b = 0u; b < NB; b++) {
      var v = part[(b * 8u + row_in_wg) * 32u];
      let yi = p.base_c + b * p.heads + o;
      if (p.beta != 0.0) { v = fma(p.beta, y[yi], v); }
      y[yi] = v;
    }
  }
}
#endif

#if RECUR
@group(0) @binding(0) var<storage, read> q: array<f32>;          // q: [B, H, dk] f32 (this token)
@group(0) @binding(1) var<storage, read> k: array<f32>;          // k: [B, H, dk] f32
@group(0) @binding(2) var<storage, read> v: array<f32>;          // v: [B, H, dv] f32
@group(0) @binding(3) var<storage, read> decay: array<f32>;      // decay: [H] f32, λ = e^−s per head
@group(0) @binding(4) var<storage, read_write> kv: array<f32>;   // kv: [B, H, dk, dv] f32 state
@group(0) @binding(5) var<storage, read_write> o: array<f32>;    // o: [B, H, dv] f32
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let bh = wg.y * nwg.x + wg.x;
  if (bh >= p.rows) { return; }
  let parts = max(1u, 256u / p.dv);
  let j = lid % p.dv;
  let pi = lid / p.dv;
  let lambda = decay[p.base_d + bh % p.heads];
  var acc = 0.0;
  if (pi < parts && j < p.dv) {
    let vj = v[p.base_c + bh * p.dv + j];
    for (var i = pi; i < p.cols; i += parts) {
      let idx = p.base_e + (bh * p.cols + i) * p.dv + j;
      let s = fma(lambda, kv[idx], k[p.base_b + bh * p.cols + i] * vj);
      kv[idx] = s;
      acc = fma(q[p.base_a + bh * p.cols + i], s, acc);
    }
  }
  part[lid] = acc;
  workgroupBarrier();
  if (lid < p.dv) {
    var total = 0.0;
    for (var t = 0u; t < parts; t++) { total += part[t * p.dv + lid]; }
    o[p.base_f + bh * p.dv + lid] = total;
  }
}
#endif
