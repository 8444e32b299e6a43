// Device copy dst = src with 16-byte loads and stores, one vec4 per invocation (2-D grid of 256-wide
// workgroups so that any size fits under the 65535-workgroups-per-dimension limit). It is the bandwidth
// probe of `tnl bench`: the fastest plain read-and-write a kernel does, which memory-bound kernels are
// measured against. The last vec4 may be partial: only its first `n % 4` lanes are written, so elements
// after the tensor are never touched.

struct Params {
  n: u32,     // f32 elements to copy
  base0: u32, // vec4 offset of src inside its binding
  base1: u32, // vec4 offset of dst inside its binding
  _pad: u32,
}
@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;        // src: [ceil(n / 4)] vec4<f32>
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;  // dst: [ceil(n / 4)] vec4<f32>

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  let first = i * 4u;
  if (first >= p.n) { return; }
  let v = src[p.base0 + i];
  let left = p.n - first;
  if (left >= 4u) {
    dst[p.base1 + i] = v;
    return;
  }
  dst[p.base1 + i].x = v.x;
  if (left > 1u) { dst[p.base1 + i].y = v.y; }
  if (left > 2u) { dst[p.base1 + i].z = v.z; }
}
