// Causal decay mask applied in place to a materialised score matrix, for the naive linear-attention
// baseline (kernels/naive_linear.ts): S[g, i, j] ← S[g, i, j] · λ_g^(i−j) for i ≥ j, else 0, λ = e^(−s).
// One invocation per element; rows along y, heads along z.

struct Params {
  T: u32,
  H: u32,
  head0: u32, // global (batch·head) index of head g = 0
  base: u32,  // element offset of S[0, 0, 0] inside the bound range
}

@group(0) @binding(0) var<storage, read> slopes: array<f32>;     // slopes: [H] f32 (rate s; λ = e^−s)
@group(0) @binding(1) var<storage, read_write> S: array<f32>;    // S: [G, T, T] f32
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let j = wg.x * 256u + t;
  let i = wg.y;
  let g = wg.z;
  if (j >= p.T) { return; }
  let at = p.base + (g * p.T + i) * p.T + j;
  if (j > i) {
    S[at] = 0.0;
    return;
  }
  let s = slopes[(p.head0 + g) % p.H];
  S[at] = S[at] * exp(-s * f32(i - j));
}
