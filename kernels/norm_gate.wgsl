// The token mixer's output stage (spec §2.3 steps 6–8), fused: heads merged back to E channels, SRMSNorm
// over all E channels of a token (not per head), then the multiplicative gate u ⊙ ·. One workgroup per token.
// Token n = b·T + t, channel c = h·e + j; o[b, h, t, j] lives at ((b·H + h)·T + t)·e + j.
//   FWD: on[n, c] = o[b, h, t, j] · rstd[n];  og[n, c] = u[n, c] · on[n, c]
//   BWD: du[n, c] = dog[n, c] · on[n, c];  don = dog ⊙ u;  do[b, h, t, j] = rstd · (don − on · mean(don ⊙ on))
// u is the last quarter of the fused projection qkvu [N, 4E]; du goes to the same columns of dqkvu.

struct Params {
  rows: u32,  // N = B·T
  t_len: u32, // T
  heads: u32, // H
  e: u32,     // head dim
  base_a: u32,
  base_b: u32,
  base_c: u32,
  base_d: u32,
  base_e: u32,
  base_f: u32,
  eps: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if FWD
@group(0) @binding(0) var<storage, read> o: array<f32>;            // o: [B, H, T, e] f32
@group(0) @binding(1) var<storage, read> qkvu: array<f32>;         // qkvu: [N, 4E] f32 (u = columns 3E..4E)
@group(0) @binding(2) var<storage, read_write> on: array<f32>;     // on: [N, E] f32, normalized o (saved)
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;   // rstd: [N] f32 (saved)
@group(0) @binding(4) var<storage, read_write> og: array<f32>;     // og: [N, E] f32, gated output
#else
@group(0) @binding(0) var<storage, read> dog: array<f32>;          // dog: [N, E] f32
@group(0) @binding(1) var<storage, read> on: array<f32>;           // on: [N, E] f32
@group(0) @binding(2) var<storage, read> rstd: array<f32>;         // rstd: [N] f32
@group(0) @binding(3) var<storage, read> qkvu: array<f32>;         // qkvu: [N, 4E] f32
@group(0) @binding(4) var<storage, read_write> dqkvu: array<f32>;  // dqkvu: [N, 4E] f32 (writes columns 3E..4E)
@group(0) @binding(5) var<storage, read_write> d_o: array<f32>;    // d_o: [B, H, T, e] f32
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
  let n = wg.y * nwg.x + wg.x;
  if (n >= p.rows) { return; }
  let big_e = p.heads * p.e;
  let b = n / p.t_len;
  let t = n % p.t_len;
  let urow = n * 4u * big_e + 3u * big_e;
#if FWD
  var ss = 0.0;
  for (var c = lid; c < big_e; c += 256u) {
    let v = o[p.base_a + ((b * p.heads + c / p.e) * p.t_len + t) * p.e + c % p.e];
    ss = fma(v, v, ss);
  }
  let r = inverseSqrt(wg_sum(ss, lid, sg_size) / f32(big_e) + p.eps);
  for (var c = lid; c < big_e; c += 256u) {
    let v = o[p.base_a + ((b * p.heads + c / p.e) * p.t_len + t) * p.e + c % p.e] * r;
    on[p.base_c + n * big_e + c] = v;
    og[p.base_e + n * big_e + c] = qkvu[p.base_b + urow + c] * v;
  }
  if (lid == 0u) { rstd[p.base_d + n] = r; }
#else
  var dot = 0.0;
  for (var c = lid; c < big_e; c += 256u) {
    let g = dog[p.base_a + n * big_e + c];
    let y = on[p.base_b + n * big_e + c];
    dot = fma(g * qkvu[p.base_d + urow + c], y, dot);
  }
  let mean_dot = wg_sum(dot, lid, sg_size) / f32(big_e);
  let r = rstd[p.base_c + n];
  for (var c = lid; c < big_e; c += 256u) {
    let g = dog[p.base_a + n * big_e + c];
    let y = on[p.base_b + n * big_e + c];
    let u = qkvu[p.base_d + urow + c];
    dqkvu[p.base_e + urow + c] = g * y;
    d_o[p.base_f + ((b * p.heads + c / p.e) * p.t_len + t) * p.e + c % p.e] = r * (g * u - y * mean_dot);
  }
#endif
}
