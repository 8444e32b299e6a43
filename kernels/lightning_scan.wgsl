// Exclusive scan of state contributions along the sequence, in place, for the block-parallel variant of
// kernels/lightning.wgsl and the chunked one of kernels/lightning_chunk.wgsl. Step z of the scan reads the
// contribution of span z (decayed to the first row after the span) from its slot and leaves the state at
// the span's first row there:
//   kv_start(0) = 0,  kv_start(z + 1) = λ^L · kv_start(z) + contribution(z)    (L = rows per span)
// Span z's slot is min(z·G + G − 1, slots − 1): with G = 1 every slot (one span per chunk); with G chunks
// per span (the chunked variant) the last slot of each group of G, where the group's total sits. The last
// span's contribution is never read into anything that is stored. With INIT the sequence continues from a
// caller's state kv_{t0−1} (the state after the token before row 0): kv_start(0) = λ · kv_init.
// One invocation per state element (VEC: per 4 consecutive elements, n % 4 == 0, without INIT), sequential
// over spans; loads are issued four spans ahead of the dependent chain.

struct Params {
  n: u32,         // elements per slot: dk·dv
  spans: u32,     // scan steps per head
  span_len: u32,  // rows per span (L)
  H: u32,
  head0: u32,     // global (batch·head) index of this dispatch's first head
  base: u32,      // element offset of the first head's slot 0 inside the bound range
  group: u32,     // G: slots per span
  slots: u32,     // slots per head
  init_base: u32, // element offset of the first head's initial state inside its bound range (INIT)
}

@group(0) @binding(0) var<storage, read> slopes: array<f32>;      // slopes: [H] f32
#if VEC
alias V = vec4<f32>;
@group(0) @binding(1) var<storage, read_write> kv: array<vec4<f32>>; // kv: [heads, slots, dk, dv] f32
const PER: u32 = 4u; // elements per invocation
#else
alias V = f32;
@group(0) @binding(1) var<storage, read_write> kv: array<f32>;    // kv: [heads, slots, dk, dv] f32
const PER: u32 = 1u;
#endif
#if INIT
@group(0) @binding(2) var<storage, read> kv_init: array<f32>;     // kv_init: [heads, dk, dv] f32
#endif
@group(1) @binding(0) var<uniform> p: Params;


// Element offset of span z's slot (relative to the head's slot 0).
fn slot(z: u32) -> u32 {
  return min(z * p.group + p.group - 1u, p.slots - 1u) * p.n;
}

// The PER elements at element offset `at` (a multiple of PER).
fn load(at: u32) -> V {
  return kv[at / PER];
}

fn store(at: u32, v: V) {
  kv[at / PER] = v;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let idx = (wg.x * 64u + t) * PER;
  if (idx >= p.n) { return; }
  let head = wg.y;
  let rate = slopes[(p.head0 + head) % p.H];
  let em = V(expm1_neg(-rate * f32(p.span_len)));
  let at = p.base + head * p.slots * p.n + idx;
#if INIT
  let x0 = kv_init[p.init_base + head * p.n + idx];
  var prefix = fma(expm1_neg(-rate), x0, x0);
#else
  var prefix = V(0.0);
#endif
  var z = 0u;
  for (; z + 4u <= p.spans; z += 4u) {
    let s0 = at + slot(z);
    let s1 = at + slot(z + 1u);
    let s2 = at + slot(z + 2u);
    let s3 = at + slot(z + 3u);
    let c0 = load(s0);
    let c1 = load(s1);
    let c2 = load(s2);
    let c3 = load(s3);
    store(s0, prefix);
    prefix = fma(em, prefix, prefix) + c0;
    store(s1, prefix);
    prefix = fma(em, prefix, prefix) + c1;
    store(s2, prefix);
    prefix = fma(em, prefix, prefix) + c2;
    store(s3, prefix);
    prefix = fma(em, prefix, prefix) + c3;
  }
  for (; z < p.spans; z++) {
    let s0 = at + slot(z);
    let c = load(s0);
    store(s0, prefix);
    prefix = fma(em, prefix, prefix) + c;
  }
}
