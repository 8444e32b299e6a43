// The token mixer's input stage (spec §2.3 steps 2–4), fused: the fused projection qkvu [N, 4E] is split
// into heads (channel c = h·d + j), SiLU is applied to q and k (not v, not u), and on LRPE layers q and k
// become [x ⊙ cos(θ_hj·pos), x ⊙ sin(θ_hj·pos)] of width 2d (spec §2.4), pos = t + offset.
// One invocation per (token n = b·T + t, channel c).
//   FWD: q, k: [B, H, T, dq] (dq = 2d with LRPE, else d), v: [B, H, T, d]
//   BWD: dqkvu[n, 0..3E) from dq, dk, dv; with LRPE also dθ terms per token, theta_terms[n, c] =
//        pos · (silu(q)·(b_q·cos − a_q·sin) + silu(k)·(b_k·cos − a_k·sin)) with [a, b] the two halves of
//        dq (dk), summed over tokens afterwards by a deterministic column sum.

struct Params {
  rows: u32,   // N = B·T
  t_len: u32,  // T
  heads: u32,  // H
  d: u32,      // head dim
  offset: u32, // position of t = 0
  base_a: u32,
  base_b: u32,
  base_c: u32,
  base_d: u32,
  base_e: u32,
  base_f: u32,
  base_g: u32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if FWD
@group(0) @binding(0) var<storage, read> qkvu: array<f32>;        // qkvu: [N, 4E] f32
@group(0) @binding(1) var<storage, read> theta: array<f32>;       // theta: [H, d] f32 (unused without LRPE)
@group(0) @binding(2) var<storage, read_write> q: array<f32>;     // q: [B, H, T, dq] f32
@group(0) @binding(3) var<storage, read_write> k: array<f32>;     // k: [B, H, T, dq] f32
@group(0) @binding(4) var<storage, read_write> v: array<f32>;     // v: [B, H, T, d] f32
#else
@group(0) @binding(0) var<storage, read> qkvu: array<f32>;        // qkvu: [N, 4E] f32
@group(0) @binding(1) var<storage, read> theta: array<f32>;       // theta: [H, d] f32
@group(0) @binding(2) var<storage, read> dq: array<f32>;          // dq: [B, H, T, dq] f32
@group(0) @binding(3) var<storage, read> dk: array<f32>;          // dk: [B, H, T, dq] f32
@group(0) @binding(4) var<storage, read> dv: array<f32>;          // dv: [B, H, T, d] f32
@group(0) @binding(5) var<storage, read_write> dqkvu: array<f32>; // dqkvu: [N, 4E] f32 (writes columns 0..3E)
#if LRPE
@group(0) @binding(6) var<storage, read_write> dtheta_terms: array<f32>; // dtheta_terms: [N, E] f32
#endif
#endif

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

// sincos(x): kernels/lrpe_lib.wgsl, prepended by the dispatcher.

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let big_e = p.heads * p.d;
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= p.rows * big_e) { return; }
  let n = i / big_e;
  let c = i % big_e;
  let h = c / p.d;
  let j = c % p.d;
  let b = n / p.t_len;
  let t = n % p.t_len;
  let row = p.base_a + n * 4u * big_e;
  let qr = qkvu[row + c];
  let kr = qkvu[row + big_e + c];
  let sq = qr * sigmoid(qr);
  let sk = kr * sigmoid(kr);
  let head_row = (b * p.heads + h) * p.t_len + t;
#if LRPE
  let pos = f32(t + p.offset);
  let ang = theta[p.base_b + c] * pos;
  let sc = sincos(ang);
  let dq_w = 2u * p.d;
#else
  let dq_w = p.d;
#endif
#if FWD
#if LRPE
  q[p.base_c + head_row * dq_w + j] = sq * sc.y;
  q[p.base_c + head_row * dq_w + p.d + j] = sq * sc.x;
  k[p.base_d + head_row * dq_w + j] = sk * sc.y;
  k[p.base_d + head_row * dq_w + p.d + j] = sk * sc.x;
#else
  q[p.base_c + head_row * dq_w + j] = sq;
  k[p.base_d + head_row * dq_w + j] = sk;
#endif
  v[p.base_e + head_row * p.d + j] = qkvu[row + 2u * big_e + c];
#else
  let sig_q = sigmoid(qr);
  let sig_k = sigmoid(kr);
#if LRPE
  let aq = dq[p.base_c + head_row * dq_w + j];
  let bq = dq[p.base_c + head_row * dq_w + p.d + j];
  let ak = dk[p.base_d + head_row * dq_w + j];
  let bk = dk[p.base_d + head_row * dq_w + p.d + j];
  let gq = aq * sc.y + bq * sc.x;
  let gk = ak * sc.y + bk * sc.x;
  dtheta_terms[p.base_g + n * big_e + c] = pos * (sq * (bq * sc.y - aq * sc.x) + sk * (bk * sc.y - ak * sc.x));
#else
  let gq = dq[p.base_c + head_row * dq_w + j];
  let gk = dk[p.base_d + head_row * dq_w + j];
#endif
  let out = p.base_f + n * 4u * big_e;
  dqkvu[out + c] = gq * sig_q * (1.0 + qr * (1.0 - sig_q));
  dqkvu[out + big_e + c] = gk * sig_k * (1.0 + kr * (1.0 - sig_k));
  dqkvu[out + 2u * big_e + c] = dv[p.base_e + head_row * p.d + j];
#endif
}
