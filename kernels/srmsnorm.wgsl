// SRMSNorm over the last dimension, no weight: y = x · rstd, rstd = 1 / sqrt(mean(x²) + eps).
// One 256-invocation workgroup per row (2-D grid of rows); row sums through reduce_lib's wg_sum.
//   FWD: x → y, rstd
//   BWD: dx = beta·dx + rstd · (dy − y · mean(dy ⊙ y))   (from the saved y and rstd; x is not needed)

struct Params {
  rows: u32,
  d: u32,
  base0: u32,   // FWD: x,  BWD: y
  base1: u32,   // FWD: y,  BWD: rstd
  base2: u32,   // FWD: rstd, BWD: dy
  base3: u32,   // BWD: dx
  stride0: u32, // row strides (elements) of the [rows, d] operands 0, 1 (FWD) / 0, 2, 3 (BWD)
  stride1: u32,
  stride2: u32,
  eps: f32,
  beta: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if FWD
@group(0) @binding(0) var<storage, read> x: array<f32>;          // x: [rows, d] f32 (row stride stride0)
@group(0) @binding(1) var<storage, read_write> y: array<f32>;    // y: [rows, d] f32 (row stride stride1)
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>; // rstd: [rows] f32
#else
@group(0) @binding(0) var<storage, read> y: array<f32>;          // y: [rows, d] f32, the forward output (stride0)
@group(0) @binding(1) var<storage, read> rstd: array<f32>;       // rstd: [rows] f32
@group(0) @binding(2) var<storage, read> dy: array<f32>;         // dy: [rows, d] f32 (row stride stride1)
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;   // dx: [rows, d] f32 (row stride stride2)
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32
#if SUBGROUPS
        , @builtin(subgroup_size) sg_size: u32
#endif
) {
#if !SUBGROUPS
  let sg_size = 1u;
#endif
  let row = wg.y * nwg.x + wg.x;
  if (row >= p.rows) { return; }
#if FWD
  let xr = p.base0 + row * p.stride0;
  var ss = 0.0;
  for (var c = lid; c < p.d; c += 256u) {
    let v = x[xr + c];
    ss = fma(v, v, ss);
  }
  let total = wg_sum(ss, lid, sg_size);
  let r = inverseSqrt(total / f32(p.d) + p.eps);
  let yr = p.base1 + row * p.stride1;
  for (var c = lid; c < p.d; c += 256u) {
    y[yr + c] = x[xr + c] * r;
  }
  if (lid == 0u) { rstd[p.base2 + row] = r; }
#else
  let yr = p.base0 + row * p.stride0;
  let dyr = p.base2 + row * p.stride1;
  var dot = 0.0;
  for (var c = lid; c < p.d; c += 256u) {
    dot = fma(dy[dyr + c], y[yr + c], dot);
  }
  let mean_dot = wg_sum(dot, lid, sg_size) / f32(p.d);
  let r = rstd[p.base1 + row];
  let dxr = p.base3 + row * p.stride2;
  for (var c = lid; c < p.d; c += 256u) {
    var v = r * (dy[dyr + c] - y[yr + c] * mean_dot);
    if (p.beta != 0.0) { v = fma(p.beta, dx[dxr + c], v); }
    dx[dxr + c] = v;
  }
#endif
}
