// f32 → f16: dst[i] holds the f16 bits of src[2i] (low half) and src[2i + 1] (high half), each rounded to
// nearest, ties to even, exactly as core/half.ts's f32BitsToF16Bits (the float64-free reference): NaN stays
// a quiet NaN with its sign and top payload bits, magnitudes from 65520 up become infinity, and magnitudes
// below 2^-25 zero. The floats are read as their bits, so no arithmetic can flush or canonicalise them.

struct Params {
  pairs: u32,    // u32 words of dst to write
  src_base: u32, // element offset of src[0] inside its binding
  dst_base: u32, // word offset of dst[0] inside its binding
  _pad: u32,
}
@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> src: array<u32>;       // src: [2·pairs] f32, read as bits
@group(0) @binding(1) var<storage, read_write> dst: array<u32>; // dst: [pairs] u32, two f16 each

fn f16_bits(bits: u32) -> u32 {
  let sign = (bits >> 16u) & 0x8000u;
  let e = (bits >> 23u) & 0xffu;
  let mant = bits & 0x7fffffu;
  if (e == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u | (mant >> 13u), mant != 0u); }
  if (e > 142u) { return sign | 0x7c00u; } // ≥ 2^16: beyond every finite half
  if (e >= 113u) {
    // A normal half (the largest ones round up to infinity through the carry).
    var h = ((e - 112u) << 10u) | (mant >> 13u);
    let rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0u)) { h += 1u; }
    return sign | h;
  }
  if (e < 102u) { return sign; } // below half of the smallest subnormal
  // A subnormal half: the 24-bit significand in units of 2^-24.
  let m = mant | 0x800000u;
  let shift = 126u - e; // 14 .. 24
  var h = m >> shift;
  let rest = m & ((1u << shift) - 1u);
  let halfway = 1u << (shift - 1u);
  if (rest > halfway || (rest == halfway && (h & 1u) != 0u)) { h += 1u; }
  return sign | h;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= p.pairs) { return; }
  let s = p.src_base + 2u * i;
  dst[p.dst_base + i] = f16_bits(src[s]) | (f16_bits(src[s + 1u]) << 16u);
}
