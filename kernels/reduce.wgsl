// Deterministic reductions (fixed summation order: the same bits every run).
//   PARTIAL: partials[first + w] = Σ over chunk w of f(x), chunk = 256 · ITEMS consecutive elements,
//            f(x) = x or x² (SQUARE). One workgroup per chunk.
//   FINAL:   t = Σ partials[0 .. n) by one workgroup; NORM: out[0] = sqrt(t), and when t is not finite and
//            flag[0] is still 0xffffffff, flag[0] = p.step (the first step whose gradient norm was not finite);
//            otherwise out[0] = beta·out[0] + alpha·t.
//   COLSUM:  out[c] = beta·out[c] + alpha·Σ_{r in chunk} x[r, c] for a chunk of `rows_per` rows per
//            workgroup row (grid y) — run once into partials, then once more over the partials.

struct Params {
  n: u32,        // PARTIAL: elements; FINAL: partials; COLSUM: rows
  cols: u32,     // COLSUM
  rows_per: u32, // COLSUM: rows summed by one workgroup row
  base_in: u32,
  base_out: u32,
  first: u32,    // PARTIAL: index of this dispatch's first partial
  step: u32,     // FINAL NORM: the step number recorded in the flag
  alpha: f32,
  beta: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;            // PARTIAL: [n]; FINAL: partials [n]; COLSUM: [n, cols] f32
@group(0) @binding(1) var<storage, read_write> out: array<f32>;    // PARTIAL: partials; FINAL: [1]; COLSUM: [chunks, cols] f32
#if NORM
@group(0) @binding(2) var<storage, read_write> flag: array<u32>;   // flag: [1] u32, 0xffffffff until a non-finite norm
#endif

const ITEMS: u32 = 16u;

#if COLSUM
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wg.x * 256u + lid;
  if (c >= p.cols) { return; }
  let r0 = wg.y * p.rows_per;
  let r1 = min(r0 + p.rows_per, p.n);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { s += x[p.base_in + r * p.cols + c]; }
  let o = p.base_out + wg.y * p.cols + c;
  var v = p.alpha * s;
  if (p.beta != 0.0) { v = fma(p.beta, out[o], v); }
  out[o] = v;
}
#else
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
#if PARTIAL
  let w = wg.y * nwg.x + wg.x;
  let start = w * 256u * ITEMS;
  var s = 0.0;
  for (var i = 0u; i < ITEMS; i++) {
    let e = start + i * 256u + lid;
    if (e < p.n) {
      let v = x[p.base_in + e];
#if SQUARE
      s = fma(v, v, s);
#else
      s += v;
#endif
    }
  }
  let total = wg_sum(s, lid, sg_size);
  if (lid == 0u) { out[p.base_out + p.first + w] = total; }
#else
  var s = 0.0;
  for (var i = lid; i < p.n; i += 256u) { s += x[p.base_in + i]; }
  let total = wg_sum(s, lid, sg_size);
  if (lid == 0u) {
#if NORM
    out[p.base_out] = sqrt(total);
    if (non_finite(total) && flag[0] == 0xffffffffu) { flag[0] = p.step; }
#else
    var v = p.alpha * total;
    if (p.beta != 0.0) { v = fma(p.beta, out[p.base_out], v); }
    out[p.base_out] = v;
#endif
  }
#endif
}
#endif
