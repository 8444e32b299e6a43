// C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]   (fp32, fp32 accumulation; beta = 0 never reads C)
// op(A) = A, or Aᵀ when TRANS_A; op(B) likewise. Row-major storage with leading dimensions lda/ldb/ldc.
//
// Tiling: a 256-invocation workgroup computes a 128×128 tile of C, stepping through K 16 at a time.
// Tiles of op(A) and op(B) are staged k-major in workgroup memory (As[k][m], Bs[k][n]) so that every
// invocation reads them as vec4. Invocation (tx, ty) = (t % 16, t / 16) owns the 8×8 outputs at rows
// {ty·4 + i, 64 + ty·4 + i} and columns {tx·4 + j, 64 + tx·4 + j}, i, j < 4: 16 vec4 accumulators in
// registers (no indexed arrays, which would spill). The next K tile is fetched into registers while the
// current one is multiplied. The 16 steps of a tile are unrolled (wgsl.ts says why) and index the 2-D tile
// arrays with a constant row and a loop-invariant column, so each read is one vec4 load at a fixed offset.
// Global loads: a tile that lies inside K is fetched without checks, from rows of A (B) clamped into the
// matrix: a row past M (a column past N) feeds only outputs that are never stored, so whatever it reads
// is harmless. Only a last, partial K tile takes the checked loads, which zero what lies past K (checked
// loads on every tile cost a quarter of the speed: H200, 4096³, 30.6 vs 41 TFLOP/s).
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

var<workgroup> As: array<array<vec4<f32>, 32>, 16>; // [k: 16][m: 128 as 32 × vec4]
var<workgroup> Bs: array<array<vec4<f32>, 32>, 16>; // [k: 16][n: 128 as 32 × vec4]

// Element i of A (B), or 0 where ok is false; the load itself is then of element 0, always in range.
fn a_get(i: u32, ok: bool) -> f32 {
#if VEC_A
  return select(0.0, A[select(0u, i >> 2u, ok)][i & 3u], ok);
#else
  return select(0.0, A[select(0u, i, ok)], ok);
#endif
}

fn b_get(i: u32, ok: bool) -> f32 {
#if VEC_B
  return select(0.0, B[select(0u, i >> 2u, ok)][i & 3u], ok);
#else
  return select(0.0, B[select(0u, i, ok)], ok);
#endif
}

// Part l (0 or 1) of the 8 values of op(A)'s tile that invocation t fetches for the K tile at k0, for a tile
// inside K: `fix` is the invocation's loop-invariant offset (see main), `cols` its clamped columns.
fn fast_a(l: u32, k0: u32, fix: u32, cols: vec4<u32>) -> vec4<f32> {
#if TRANS_A
  let row = fix + (k0 + 8u * l) * p.lda;
#if VEC_A
  return A[(row + cols.x) >> 2u];
#else
  return vec4<f32>(A[row + cols.x], A[row + cols.y], A[row + cols.z], A[row + cols.w]);
#endif
#else
  let i = fix + k0 + 8u * l;
#if VEC_A
  return A[i >> 2u];
#else
  return vec4<f32>(A[i], A[i + 1u], A[i + 2u], A[i + 3u]);
#endif
#endif
}

fn fast_b(l: u32, k0: u32, fix: u32, cols: vec4<u32>) -> vec4<f32> {
#if TRANS_B
  let i = fix + k0 + 8u * l;
#if VEC_B
  return B[i >> 2u];
#else
  return vec4<f32>(B[i], B[i + 1u], B[i + 2u], B[i + 3u]);
#endif
#else
  let row = fix + (k0 + 8u * l) * p.ldb;
#if VEC_B
  return B[(row + cols.x) >> 2u];
#else
  return vec4<f32>(B[row + cols.x], B[row + cols.y], B[row + cols.z], B[row + cols.w]);
#endif
#endif
}

// The same with every element checked against M, N and K (zero outside): the last, partial K tile.
fn load_a(t: u32, l: u32, m0: u32, k0: u32, base: u32) -> vec4<f32> {
#if TRANS_A
  // A is [K, M]: 4 consecutive m of row k0 + t/32 + 8l.
  let k = k0 + t / 32u + 8u * l;
  let m = m0 + (t % 32u) * 4u;
  let i = base + k * p.lda + m;
  let ok = k < p.K && m < p.M;
#if VEC_A
  return select(vec4<f32>(0.0), A[select(0u, i >> 2u, ok)], ok); // M % 4 == 0: all 4 or none
#else
  return vec4<f32>(a_get(i, ok), a_get(i + 1u, ok && m + 1u < p.M), a_get(i + 2u, ok && m + 2u < p.M),
                   a_get(i + 3u, ok && m + 3u < p.M));
#endif
#else
  // A is [M, K]: 4 consecutive k of row m0 + t/2.
  let m = m0 + t / 2u;
  let k = k0 + (t % 2u) * 4u + 8u * l;
  let i = base + m * p.lda + k;
  let ok = m < p.M && k < p.K;
#if VEC_A
  return select(vec4<f32>(0.0), A[select(0u, i >> 2u, ok)], ok); // K % 4 == 0: all 4 or none
#else
  return vec4<f32>(a_get(i, ok), a_get(i + 1u, ok && k + 1u < p.K), a_get(i + 2u, ok && k + 2u < p.K),
                   a_get(i + 3u, ok && k + 3u < p.K));
#endif
#endif
}

fn stash_a(t: u32, l: u32, v: vec4<f32>) {
#if TRANS_A
  As[t / 32u + 8u * l][t % 32u] = v;
#else
  let m = t / 2u;
  let k = (t % 2u) * 4u + 8u * l;
  As[k][m / 4u][m % 4u] = v.x;
  As[k + 1u][m / 4u][m % 4u] = v.y;
  As[k + 2u][m / 4u][m % 4u] = v.z;
  As[k + 3u][m / 4u][m % 4u] = v.w;
#endif
}

fn load_b(t: u32, l: u32, n0: u32, k0: u32, base: u32) -> vec4<f32> {
#if TRANS_B
  // B is [N, K]: 4 consecutive k of row n0 + t/2.
  let n = n0 + t / 2u;
  let k = k0 + (t % 2u) * 4u + 8u * l;
  let i = base + n * p.ldb + k;
  let ok = n < p.N && k < p.K;
#if VEC_B
  return select(vec4<f32>(0.0), B[select(0u, i >> 2u, ok)], ok);
#else
  return vec4<f32>(b_get(i, ok), b_get(i + 1u, ok && k + 1u < p.K), b_get(i + 2u, ok && k + 2u < p.K),
                   b_get(i + 3u, ok && k + 3u < p.K));
#endif
#else
  // B is [K, N]: 4 consecutive n of row k0 + t/32 + 8l.
  let k = k0 + t / 32u + 8u * l;
  let n = n0 + (t % 32u) * 4u;
  let i = base + k * p.ldb + n;
  let ok = k < p.K && n < p.N;
#if VEC_B
  return select(vec4<f32>(0.0), B[select(0u, i >> 2u, ok)], ok);
#else
  return vec4<f32>(b_get(i, ok), b_get(i + 1u, ok && n + 1u < p.N), b_get(i + 2u, ok && n + 2u < p.N),
                   b_get(i + 3u, ok && n + 3u < p.N));
#endif
#endif
}

fn stash_b(t: u32, l: u32, v: vec4<f32>) {
#if TRANS_B
  let n = t / 2u;
  let k = (t % 2u) * 4u + 8u * l;
  Bs[k][n / 4u][n % 4u] = v.x;
  Bs[k + 1u][n / 4u][n % 4u] = v.y;
  Bs[k + 2u][n / 4u][n % 4u] = v.z;
  Bs[k + 3u][n / 4u][n % 4u] = v.w;
#else
  Bs[t / 32u + 8u * l][t % 32u] = v;
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
  let tx1 = tx + 16u;
  let ty1 = ty + 16u;
  let m0 = wg.y * 128u;
  let n0 = wg.x * 128u;
  let a_base = p.a_off + wg.z * p.a_batch;
  let b_base = p.b_off + wg.z * p.b_batch;
  let c_base = p.c_off + wg.z * p.c_batch;

  var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0); var c02 = vec4<f32>(0.0); var c03 = vec4<f32>(0.0);
  var c04 = vec4<f32>(0.0); var c05 = vec4<f32>(0.0); var c06 = vec4<f32>(0.0); var c07 = vec4<f32>(0.0);
  var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0); var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0);
  var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0); var c16 = vec4<f32>(0.0); var c17 = vec4<f32>(0.0);

  // Loop-invariant parts of the fast fetches. A row of A (op(A) row m = m0 + t/2) or B (op(B) column
  // n0 + t/2) is clamped to the last one; columns of 4 are clamped per element (vec4: to the last vec4).
#if TRANS_A
  let a_fix = t / 32u * p.lda + a_base;
  let a_m = m0 + (t % 32u) * 4u;
#if VEC_A
  let a_cols = vec4<u32>(min(a_m, (p.M - 1u) & ~3u)); // the last vec4 holding a column < M
#else
  let a_cols = min(vec4<u32>(a_m) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.M - 1u));
#endif
#else
  let a_fix = a_base + min(m0 + t / 2u, p.M - 1u) * p.lda + (t % 2u) * 4u;
  let a_cols = vec4<u32>(0u);
#endif
#if TRANS_B
  let b_fix = b_base + min(n0 + t / 2u, p.N - 1u) * p.ldb + (t % 2u) * 4u;
  let b_cols = vec4<u32>(0u);
#else
  let b_fix = t / 32u * p.ldb + b_base;
  let b_n = n0 + (t % 32u) * 4u;
#if VEC_B
  let b_cols = vec4<u32>(min(b_n, (p.N - 1u) & ~3u));
#else
  let b_cols = min(vec4<u32>(b_n) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.N - 1u));
#endif
#endif

  let tiles = (p.K + 15u) / 16u;
  var ra0: vec4<f32>;
  var ra1: vec4<f32>;
  var rb0: vec4<f32>;
  var rb1: vec4<f32>;
  if (16u <= p.K) {
    ra0 = fast_a(0u, 0u, a_fix, a_cols);
    ra1 = fast_a(1u, 0u, a_fix, a_cols);
    rb0 = fast_b(0u, 0u, b_fix, b_cols);
    rb1 = fast_b(1u, 0u, b_fix, b_cols);
  } else {
    ra0 = load_a(t, 0u, m0, 0u, a_base);
    ra1 = load_a(t, 1u, m0, 0u, a_base);
    rb0 = load_b(t, 0u, n0, 0u, b_base);
    rb1 = load_b(t, 1u, n0, 0u, b_base);
  }
  for (var kt = 0u; kt < tiles; kt++) {
    stash_a(t, 0u, ra0);
    stash_a(t, 1u, ra1);
    stash_b(t, 0u, rb0);
    stash_b(t, 1u, rb1);
    workgroupBarrier();
    if (kt + 1u < tiles) {
      let k0 = (kt + 1u) * 16u;
      if (k0 + 16u <= p.K) {
        ra0 = fast_a(0u, k0, a_fix, a_cols);
        ra1 = fast_a(1u, k0, a_fix, a_cols);
        rb0 = fast_b(0u, k0, b_fix, b_cols);
        rb1 = fast_b(1u, k0, b_fix, b_cols);
      } else {
        ra0 = load_a(t, 0u, m0, k0, a_base);
        ra1 = load_a(t, 1u, m0, k0, a_base);
        rb0 = load_b(t, 0u, n0, k0, b_base);
        rb1 = load_b(t, 1u, n0, k0, b_base);
      }
    }
#unroll k 16
    {
      let a0 = As[{{k}}][ty];
      let a1 = As[{{k}}][ty1];
      let b0 = Bs[{{k}}][tx];
      let b1 = Bs[{{k}}][tx1];
      c00 = fma(vec4<f32>(a0.x), b0, c00); c01 = fma(vec4<f32>(a0.y), b0, c01);
      c02 = fma(vec4<f32>(a0.z), b0, c02); c03 = fma(vec4<f32>(a0.w), b0, c03);
      c04 = fma(vec4<f32>(a1.x), b0, c04); c05 = fma(vec4<f32>(a1.y), b0, c05);
      c06 = fma(vec4<f32>(a1.z), b0, c06); c07 = fma(vec4<f32>(a1.w), b0, c07);
      c10 = fma(vec4<f32>(a0.x), b1, c10); c11 = fma(vec4<f32>(a0.y), b1, c11);
      c12 = fma(vec4<f32>(a0.z), b1, c12); c13 = fma(vec4<f32>(a0.w), b1, c13);
      c14 = fma(vec4<f32>(a1.x), b1, c14); c15 = fma(vec4<f32>(a1.y), b1, c15);
      c16 = fma(vec4<f32>(a1.z), b1, c16); c17 = fma(vec4<f32>(a1.w), b1, c17);
    }
#endunroll
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
