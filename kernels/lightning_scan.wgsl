// Exclusive scan over the chunks of each head for the block-parallel variant of kernels/lightning.wgsl,
// in place: slot z holds chunk z's own contribution to the state (decayed to the first row after the
// chunk) and becomes the state at chunk z's first row,
//   kv_start(0) = 0,  kv_start(z + 1) = λ^L · kv_start(z) + contribution(z)    (L = chunk rows)
// The last slot holds no contribution (nothing is read from it). With INIT the sequence continues from a
// caller's state kv_{t0−1} (the state after the token before row 0): kv_start(0) = λ · kv_init.
// One invocation per state element, sequential over chunks; loads are issued four chunks ahead of the
// dependent chain.

struct Params {
  n: u32,         // elements per slot: dk·dv
  nchunks: u32,
  chunk_len: u32,
  H: u32,
  head0: u32,     // global (batch·head) index of this dispatch's first head
  base: u32,      // element offset of the first head's slot 0 inside the bound range
  init_base: u32, // element offset of the first head's initial state inside its bound range (INIT)
}

@group(0) @binding(0) var<storage, read> slopes: array<f32>;      // slopes: [H] f32
@group(0) @binding(1) var<storage, read_write> kv: array<f32>;    // kv: [heads, nchunks, dk, dv] f32
#if INIT
@group(0) @binding(2) var<storage, read> kv_init: array<f32>;     // kv_init: [heads, dk, dv] f32
#endif
@group(1) @binding(0) var<uniform> p: Params;

// expm1(x) for x ≤ 0 (as in lightning.wgsl).
fn expm1_neg(x: f32) -> f32 {
  if (x > -0.25) {
    var r = 1.0 + x * (1.0 / 8.0);
    r = 1.0 + x * (1.0 / 7.0) * r;
    r = 1.0 + x * (1.0 / 6.0) * r;
    r = 1.0 + x * (1.0 / 5.0) * r;
    r = 1.0 + x * (1.0 / 4.0) * r;
    r = 1.0 + x * (1.0 / 3.0) * r;
    r = 1.0 + x * 0.5 * r;
    return x * r;
  }
  return exp(x) - 1.0;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let idx = wg.x * 64u + t;
  if (idx >= p.n) { return; }
  let head = wg.y;
  let rate = slopes[(p.head0 + head) % p.H];
  let em = expm1_neg(-rate * f32(p.chunk_len));
  let stride = p.n;
  var at = p.base + head * p.nchunks * p.n + idx;
#if INIT
  let x0 = kv_init[p.init_base + head * p.n + idx];
  var prefix = fma(expm1_neg(-rate), x0, x0);
#else
  var prefix = 0.0;
#endif
  var z = 0u;
  for (; z + 4u <= p.nchunks; z += 4u) {
    let c0 = kv[at];
    let c1 = kv[at + stride];
    let c2 = kv[at + 2u * stride];
    let c3 = kv[at + 3u * stride];
    kv[at] = prefix;
    prefix = fma(em, prefix, prefix) + c0;
    kv[at + stride] = prefix;
    prefix = fma(em, prefix, prefix) + c1;
    kv[at + 2u * stride] = prefix;
    prefix = fma(em, prefix, prefix) + c2;
    kv[at + 3u * stride] = prefix;
    prefix = fma(em, prefix, prefix) + c3;
    at += 4u * stride;
  }
  for (; z < p.nchunks; z++) {
    let c = kv[at];
    kv[at] = prefix;
    prefix = fma(em, prefix, prefix) + c;
    at += stride;
  }
}
