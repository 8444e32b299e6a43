// AdamW step over a flat parameter vector, as torch.optim.AdamW (single-tensor path) after
// torch.nn.utils.clip_grad_norm_, all on the GPU:
//   coef = min(1, clip / (norm + 1e-6))  (clip = 0: no clipping);  g = coef · grad
//   p ← p · (1 − lr·wd)   (elements [0, decay_end) only: tensors with ≥ 2 dimensions)
//   m ← m + (1 − β1)·(g − m);  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 − β_i^step
// A non-finite gradient norm skips the whole update (the norm kernel has recorded the step in its flag).

struct Params {
  n: u32,
  decay_end: u32, // elements of this dispatch that get weight decay: [0, decay_end)
  base_p: u32,
  base_g: u32,
  base_m: u32,
  base_v: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  wd: f32,
  bc1: f32,
  bc2_sqrt: f32,
  clip: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read_write> param: array<f32>; // param: [n] f32
@group(0) @binding(1) var<storage, read> grad: array<f32>;        // grad: [n] f32
@group(0) @binding(2) var<storage, read_write> m: array<f32>;     // m: [n] f32, first moment
@group(0) @binding(3) var<storage, read_write> v: array<f32>;     // v: [n] f32, second moment
@group(0) @binding(4) var<storage, read> norm: array<f32>;        // norm: [1] f32, global gradient L2 norm

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let total = norm[0];
  if (non_finite(total)) { return; }
  var coef = 1.0;
  if (p.clip > 0.0) { coef = min(1.0, p.clip / (total + 1e-6)); }
  let g = grad[p.base_g + i] * coef;
  var w = param[p.base_p + i];
  if (i < p.decay_end) { w = w * (1.0 - p.lr * p.wd); }
  let mi = fma(1.0 - p.beta1, g - m[p.base_m + i], m[p.base_m + i]);
  let vi = fma(p.beta2, v[p.base_v + i], (1.0 - p.beta2) * g * g);
  m[p.base_m + i] = mi;
  v[p.base_v + i] = vi;
  let denom = sqrt(vi) / p.bc2_sqrt + p.eps;
  param[p.base_p + i] = w - (p.lr / p.bc1) * (mi / denom);
}
