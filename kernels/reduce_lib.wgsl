// Workgroup reductions for 256-invocation workgroups, shared by the row kernels. With SUBGROUPS, each
// subgroup reduces in registers and one partial per subgroup goes through workgroup memory (the device
// check at open time guarantees subgroups are consecutive runs of local_invocation_index); without it,
// a tree in workgroup memory. Every invocation gets the total. Must be called in uniform control flow.

const RED_WG: u32 = 256u;
var<workgroup> red_scratch: array<f32, 256>;

#if SUBGROUPS
fn wg_sum(x: f32, lid: u32, sg_size: u32) -> f32 {
  let s = subgroupAdd(x);
  if (lid % sg_size == 0u) { red_scratch[lid / sg_size] = s; }
  workgroupBarrier();
  var total = 0.0;
  let n = RED_WG / sg_size;
  for (var i = 0u; i < n; i++) { total += red_scratch[i]; }
  workgroupBarrier();
  return total;
}

fn wg_max(x: f32, lid: u32, sg_size: u32) -> f32 {
  let s = subgroupMax(x);
  if (lid % sg_size == 0u) { red_scratch[lid / sg_size] = s; }
  workgroupBarrier();
  var total = red_scratch[0];
  let n = RED_WG / sg_size;
  for (var i = 1u; i < n; i++) { total = max(total, red_scratch[i]); }
  workgroupBarrier();
  return total;
}
#else
fn wg_sum(x: f32, lid: u32, sg_size: u32) -> f32 {
  red_scratch[lid] = x;
  workgroupBarrier();
  for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_scratch[lid] += red_scratch[lid + s]; }
    workgroupBarrier();
  }
  let total = red_scratch[0];
  workgroupBarrier();
  return total;
}

fn wg_max(x: f32, lid: u32, sg_size: u32) -> f32 {
  red_scratch[lid] = x;
  workgroupBarrier();
  for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_scratch[lid] = max(red_scratch[lid], red_scratch[lid + s]); }
    workgroupBarrier();
  }
  let total = red_scratch[0];
  workgroupBarrier();
  return total;
}
#endif

// True for ±inf and NaN (WGSL has no isinf/isnan; compilers may assume finite floats in comparisons).
fn non_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}
