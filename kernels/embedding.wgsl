// Token embedding with the √D scale (spec §2.1), one workgroup per row.
//   FWD: x[n, :] = scale · emb[ids[n], :]
//   BWD: demb[tokens[u], :] = beta · demb[tokens[u], :] + scale · Σ_{i in [starts[u], starts[u+1])} dx[order[i], :]
//        One workgroup per distinct token u of the batch; `order` lists each token's positions in increasing
//        order (a stable bucket sort done where the ids are known), so every run sums in the same order: no
//        float atomics, the same bits every run. The pad token is left out of the buckets (padding_idx).

// An embedding matrix larger than one storage binding is bound in vocabulary slices [vstart, vstart + vcount):
// the forward then writes only the rows whose token lies in the slice, the backward takes the groups of
// the slice's tokens.

struct Params {
  rows: u32,   // FWD: positions N; BWD: distinct tokens U of this slice
  d: u32,
  vcount: u32, // rows of emb / demb bound
  vstart: u32, // token id of the first bound row
  base_a: u32, // FWD: ids;  BWD: order
  base_b: u32, // FWD: emb;  BWD: tokens
  base_c: u32, // FWD: x;    BWD: starts
  base_d: u32, // BWD: dx
  base_e: u32, // BWD: demb
  first: u32,  // BWD: the first group of this slice
  skip: u32,   // BWD: positions of each group handled by earlier rounds
  cap: u32,    // BWD: positions of each group handled by this round
  scale: f32,
  beta: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if FWD
@group(0) @binding(0) var<storage, read> ids: array<u32>;        // ids: [N] u32 (validated < vocab by the host)
@group(0) @binding(1) var<storage, read> emb: array<f32>;        // emb: [vcount, d] f32 (a slice of [vocab, d])
@group(0) @binding(2) var<storage, read_write> x: array<f32>;    // x: [N, d] f32
#else
@group(0) @binding(0) var<storage, read> order: array<u32>;      // order: [N'] u32, positions grouped by token
@group(0) @binding(1) var<storage, read> tokens: array<u32>;     // tokens: [U] u32, the token of each group
@group(0) @binding(2) var<storage, read> starts: array<u32>;     // starts: [U + 1] u32, group bounds in order
@group(0) @binding(3) var<storage, read> dx: array<f32>;         // dx: [N, d] f32
@group(0) @binding(4) var<storage, read_write> demb: array<f32>; // demb: [vcount, d] f32 (a slice of [vocab, d])
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wg.y * nwg.x + wg.x;
  if (w >= p.rows) { return; }
#if FWD
  let r = w;
  let id = ids[p.base_a + r];
  if (id < p.vstart || id - p.vstart >= p.vcount) { return; }
  let src = p.base_b + (id - p.vstart) * p.d;
  let dst = p.base_c + r * p.d;
  for (var c = lid; c < p.d; c += 256u) { x[dst + c] = p.scale * emb[src + c]; }
#else
  let r = p.first + w;
  // A round covers at most `cap` positions of each group (software adapters cap loop iterations).
  let g0 = starts[p.base_c + r];
  let g1 = starts[p.base_c + r + 1u];
  let s0 = min(g0 + p.skip, g1);
  let s1 = s0 + min(p.cap, g1 - s0); // no overflow when cap is "unbounded" (0xffffffff)
  let dst = p.base_e + (tokens[p.base_b + r] - p.vstart) * p.d;
  for (var c = lid; c < p.d; c += 256u) {
    var acc = 0.0;
    for (var i = s0; i < s1; i++) { acc += dx[p.base_d + order[p.base_a + i] * p.d + c]; }
    var v = p.scale * acc;
    if (p.beta != 0.0) { v = fma(p.beta, demb[dst + c], v); }
    demb[dst + c] = v;
  }
#endif
}
