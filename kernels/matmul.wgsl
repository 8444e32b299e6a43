// C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]   (fp32, fp32 accumulation; beta = 0 never reads C)
// op(A) = A, or Aᵀ when TRANS_A; op(B) likewise. Row-major storage with leading dimensions lda/ldb/ldc.
//
// Tiling: a 256-invocation workgroup computes a 128×128 tile of C, stepping through K 8 at a time.
// Tiles of op(A) and op(B) are staged k-major in workgroup memory (As[k][m], Bs[k][n]) so that every
// invocation reads them as vec4. Invocation (tx, ty) = (t % 16, t / 16) owns the 8×8 outputs at rows
// {ty·4 + i, 64 + ty·4 + i} and columns {tx·4 + j, 64 + tx·4 + j}, i, j < 4: 16 vec4 accumulators in
// registers (no indexed arrays, which would spill). The next K tile is fetched into registers while the
// current one is multiplied.
//
// Variants (preprocessor): TRANS_A, TRANS_B; VEC_A / VEC_B / VEC_C bind the matrix as vec4 for 16-byte
// loads/stores, allowed when its leading dimension and offsets are multiples of 4 (and, for a matrix
// read along K, K too); otherwise scalar loads with exact bounds checks.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  lda: u32,
  ldb: u32,
  ldc: u32,
  a_off: u32,   // element (0, 0) of batch 0, counted from the start of the binding
  b_off: u32,
  c_off: u32,
  a_batch: u32, // elements between consecutive batches
  b_batch: u32,
  c_batch: u32,
  alpha: f32,
  beta: f32,
}

#if VEC_A
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;        // A: [batch, M, K] ([batch, K, M] if TRANS_A) f32
#else
@group(0) @binding(0) var<storage, read> A: array<f32>;              // A: [batch, M, K] ([batch, K, M] if TRANS_A) f32
#endif
#if VEC_B
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;        // B: [batch, K, N] ([batch, N, K] if TRANS_B) f32
#else
@group(0) @binding(1) var<storage, read> B: array<f32>;              // B: [batch, K, N] ([batch, N, K] if TRANS_B) f32
#endif
#if VEC_C
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;  // C: [batch, M, N] f32
#else
@group(0) @binding(2) var<storage, read_write> C: array<f32>;        // C: [batch, M, N] f32
#endif
@group(1) @binding(0) var<uniform> p: Params;

var<workgroup> As: array<vec4<f32>, 256>; // [k: 8][m: 128 as 32 × vec4]
var<workgroup> Bs: array<vec4<f32>, 256>; // [k: 8][n: 128 as 32 × vec4]

fn a_at(i: u32) -> f32 {
#if VEC_A
  return A[i >> 2u][i & 3u];
#else
  return A[i];
#endif
}

fn b_at(i: u32) -> f32 {
#if VEC_B
  return B[i >> 2u][i & 3u];
#else
  return B[i];
#endif
}

// The 4 values of op(A)'s tile that invocation t fetches for the K tile starting at k0.
fn load_a(t: u32, m0: u32, k0: u32, base: u32) -> vec4<f32> {
#if TRANS_A
  // A is [K, M]: invocation t reads 4 consecutive m of row k0 + t/32.
  let k = k0 + t / 32u;
  let m = m0 + (t % 32u) * 4u;
  if (k >= p.K) { return vec4<f32>(0.0); }
  let i = base + k * p.lda + m;
#if VEC_A
  if (m < p.M) { return A[i >> 2u]; } // columns past M are never stored
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (m < p.M) { v.x = A[i]; }
  if (m + 1u < p.M) { v.y = A[i + 1u]; }
  if (m + 2u < p.M) { v.z = A[i + 2u]; }
  if (m + 3u < p.M) { v.w = A[i + 3u]; }
  return v;
#endif
#else
  // A is [M, K]: invocation t reads 4 consecutive k of row m0 + t/2.
  let m = m0 + t / 2u;
  let k = k0 + (t % 2u) * 4u;
  if (m >= p.M) { return vec4<f32>(0.0); }
  let i = base + m * p.lda + k;
#if VEC_A
  if (k < p.K) { return A[i >> 2u]; } // K % 4 == 0 here: all 4 are in range
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (k < p.K) { v.x = A[i]; }
  if (k + 1u < p.K) { v.y = A[i + 1u]; }
  if (k + 2u < p.K) { v.z = A[i + 2u]; }
  if (k + 3u < p.K) { v.w = A[i + 3u]; }
  return v;
#endif
#endif
}

fn stash_a(t: u32, v: vec4<f32>) {
#if TRANS_A
  As[(t / 32u) * 32u + t % 32u] = v;
#else
  let m = t / 2u;
  let k = (t % 2u) * 4u;
  As[(k + 0u) * 32u + m / 4u][m % 4u] = v.x;
  As[(k + 1u) * 32u + m / 4u][m % 4u] = v.y;
  As[(k + 2u) * 32u + m / 4u][m % 4u] = v.z;
  As[(k + 3u) * 32u + m / 4u][m % 4u] = v.w;
#endif
}

fn load_b(t: u32, n0: u32, k0: u32, base: u32) -> vec4<f32> {
#if TRANS_B
  // B is [N, K]: invocation t reads 4 consecutive k of row n0 + t/2.
  let n = n0 + t / 2u;
  let k = k0 + (t % 2u) * 4u;
  if (n >= p.N) { return vec4<f32>(0.0); }
  let i = base + n * p.ldb + k;
#if VEC_B
  if (k < p.K) { return B[i >> 2u]; }
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (k < p.K) { v.x = B[i]; }
  if (k + 1u < p.K) { v.y = B[i + 1u]; }
  if (k + 2u < p.K) { v.z = B[i + 2u]; }
  if (k + 3u < p.K) { v.w = B[i + 3u]; }
  return v;
#endif
#else
  // B is [K, N]: invocation t reads 4 consecutive n of row k0 + t/32.
  let k = k0 + t / 32u;
  let n = n0 + (t % 32u) * 4u;
  if (k >= p.K) { return vec4<f32>(0.0); }
  let i = base + k * p.ldb + n;
#if VEC_B
  if (n < p.N) { return B[i >> 2u]; }
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (n < p.N) { v.x = B[i]; }
  if (n + 1u < p.N) { v.y = B[i + 1u]; }
  if (n + 2u < p.N) { v.z = B[i + 2u]; }
  if (n + 3u < p.N) { v.w = B[i + 3u]; }
  return v;
#endif
#endif
}

fn stash_b(t: u32, v: vec4<f32>) {
#if TRANS_B
  let n = t / 2u;
  let k = (t % 2u) * 4u;
  Bs[(k + 0u) * 32u + n / 4u][n % 4u] = v.x;
  Bs[(k + 1u) * 32u + n / 4u][n % 4u] = v.y;
  Bs[(k + 2u) * 32u + n / 4u][n % 4u] = v.z;
  Bs[(k + 3u) * 32u + n / 4u][n % 4u] = v.w;
#else
  Bs[(t / 32u) * 32u + t % 32u] = v;
#endif
}

// Writes alpha·acc (+ beta·C) to row r, columns q..q+3, skipping what lies outside C.
fn store4(base: u32, r: u32, q: u32, acc: vec4<f32>) {
  if (r >= p.M || q >= p.N) { return; }
  let i = base + r * p.ldc + q;
  var v = p.alpha * acc;
#if VEC_C
  if (q + 3u < p.N) {
    if (p.beta != 0.0) { v = fma(vec4<f32>(p.beta), C[i >> 2u], v); }
    C[i >> 2u] = v;
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    if (q + j < p.N) {
      var x = v[j];
      if (p.beta != 0.0) { x = fma(p.beta, C[(i + j) >> 2u][(i + j) & 3u], x); }
      C[(i + j) >> 2u][(i + j) & 3u] = x;
    }
  }
#else
  for (var j = 0u; j < 4u; j++) {
    if (q + j < p.N) {
      var x = v[j];
      if (p.beta != 0.0) { x = fma(p.beta, C[i + j], x); }
      C[i + j] = x;
    }
  }
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let tx = t % 16u;
  let ty = t / 16u;
  let m0 = wg.y * 128u;
  let n0 = wg.x * 128u;
  let a_base = p.a_off + wg.z * p.a_batch;
  let b_base = p.b_off + wg.z * p.b_batch;
  let c_base = p.c_off + wg.z * p.c_batch;

  var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0); var c02 = vec4<f32>(0.0); var c03 = vec4<f32>(0.0);
  var c04 = vec4<f32>(0.0); var c05 = vec4<f32>(0.0); var c06 = vec4<f32>(0.0); var c07 = vec4<f32>(0.0);
  var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0); var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0);
  var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0); var c16 = vec4<f32>(0.0); var c17 = vec4<f32>(0.0);

  let tiles = (p.K + 7u) / 8u;
  var ra = load_a(t, m0, 0u, a_base);
  var rb = load_b(t, n0, 0u, b_base);
  for (var kt = 0u; kt < tiles; kt++) {
    stash_a(t, ra);
    stash_b(t, rb);
    workgroupBarrier();
    if (kt + 1u < tiles) {
      ra = load_a(t, m0, (kt + 1u) * 8u, a_base);
      rb = load_b(t, n0, (kt + 1u) * 8u, b_base);
    }
    for (var k = 0u; k < 8u; k++) {
      let a0 = As[k * 32u + ty];
      let a1 = As[k * 32u + ty + 16u];
      let b0 = Bs[k * 32u + tx];
      let b1 = Bs[k * 32u + tx + 16u];
      c00 = fma(vec4<f32>(a0.x), b0, c00); c01 = fma(vec4<f32>(a0.y), b0, c01);
      c02 = fma(vec4<f32>(a0.z), b0, c02); c03 = fma(vec4<f32>(a0.w), b0, c03);
      c04 = fma(vec4<f32>(a1.x), b0, c04); c05 = fma(vec4<f32>(a1.y), b0, c05);
      c06 = fma(vec4<f32>(a1.z), b0, c06); c07 = fma(vec4<f32>(a1.w), b0, c07);
      c10 = fma(vec4<f32>(a0.x), b1, c10); c11 = fma(vec4<f32>(a0.y), b1, c11);
      c12 = fma(vec4<f32>(a0.z), b1, c12); c13 = fma(vec4<f32>(a0.w), b1, c13);
      c14 = fma(vec4<f32>(a1.x), b1, c14); c15 = fma(vec4<f32>(a1.y), b1, c15);
      c16 = fma(vec4<f32>(a1.z), b1, c16); c17 = fma(vec4<f32>(a1.w), b1, c17);
    }
    workgroupBarrier();
  }

  let r0 = m0 + ty * 4u;
  let r1 = m0 + 64u + ty * 4u;
  let q0 = n0 + tx * 4u;
  let q1 = n0 + 64u + tx * 4u;
  store4(c_base, r0, q0, c00); store4(c_base, r0 + 1u, q0, c01);
  store4(c_base, r0 + 2u, q0, c02); store4(c_base, r0 + 3u, q0, c03);
  store4(c_base, r1, q0, c04); store4(c_base, r1 + 1u, q0, c05);
  store4(c_base, r1 + 2u, q0, c06); store4(c_base, r1 + 3u, q0, c07);
  store4(c_base, r0, q1, c10); store4(c_base, r0 + 1u, q1, c11);
  store4(c_base, r0 + 2u, q1, c12); store4(c_base, r0 + 3u, q1, c13);
  store4(c_base, r1, q1, c14); store4(c_base, r1 + 1u, q1, c15);
  store4(c_base, r1 + 2u, q1, c16); store4(c_base, r1 + 3u, q1, c17);
}
