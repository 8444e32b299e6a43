// Chunked Lightning Attention (the "chunked" variant of kernels/lightning.ts), for one head per workgroup:
//   O_t = Σ_{u ≤ t} λ^(t−u) (A_t·B_u) C_u,   λ = e^(−s)
// in logical time t (read backwards when p.reverse = 1: the gradients, see lightning.ts). The sequence is
// cut into chunks of CH = 64 rows; KV_z, the state at chunk z's first row (0-based convention, spec §4.3),
//   KV_z = Σ_{u < z·CH} λ^(z·CH − u) B_uᵀ C_u       [dk, dv]
// turns every part of the work into a GEMM-shaped product over all chunks at once. Chunks go in groups of
// G (p.group); chunk z = Z·G + j is the j-th of group Z:
//   STATE   L_z = λ^CH L_{z−1} + Σ_{r < CH} λ^(CH−r) B_rᵀ C_r   (L_{ZG−1} = 0): the state the group's chunks
//           add up to by the end of chunk z, to slot z; per chunk a product with M = dk, N = dv, K = CH
//   (scan)  S_{Z+1} = λ^(G·CH) S_Z + L_{ZG+G−1}: lightning_scan.wgsl, in place at slot min(ZG+G−1, n−1),
//           so that the scan reads 1/G of the states
//   OUT     KV_z = λ^(j·CH) S_Z + L_{z−1} (the second term for j > 0), formed as KV is staged, and
//           O_z = diag(λ^r) A_z KV_z + ((A_z B_zᵀ) ⊙ M) C_z: M = CH, N = dv, K = dk, then K = CH
// with M_ij = λ^(i−j) for i ≥ j, else 0. STATE with p.final_state = 1 runs on the last chunk (m rows) and
// writes the prefill state decayed to the last row, kv_{T−1} = λ^(m−1) KV_last + Σ_r λ^(m−1−r) B_rᵀ C_r.
//
// OUT: 128 invocations own a 64 × 128 tile of O (one chunk, 128 output columns): invocation (tx, ty) =
// (t % 16, t / 16) holds rows 8ty..8ty+7 at columns {4tx.., 64 + 4tx..} (16 vec4 registers) and the score
// block's rows 8ty..8ty+7 at keys 4tx..4tx+3 (8 vec4). One loop over dk, 16 columns per step, stages A and B
// k-major and the rows of KV; per column it reads 5 vec4 from workgroup memory for 96 FMAs, feeding both the
// inter product A·KV and the score block A·Bᵀ. The masked, decayed score block then goes to workgroup
// memory k-major over the staged rows (rows skewed by key / 4 so that the stores of a quarter warp hit
// distinct banks); a second loop over the chunk's keys, 8 per step, stages C and adds P·C, skipping key
// tiles right of the invocation's rows (the mask is zero there).
// STATE: 256 invocations own a 128 × 128 tile of the state with 8×8 outputs each, the tiling of
// matmul.wgsl with K = the chunk's rows (16 per step, tiles double-buffered: one barrier per step), walking
// the G chunks of its group with the accumulators carried (× λ^CH between chunks; each L_z is stored once the
// next step's loads are issued); the writer decay λ^(CH−r) scales the C rows as they are stashed.
//
// Decay factors as in lightning.wgsl: em1[r] = expm1(−s·r) (accurate at the last layer's tiny rates) applied
// as x·λ^r = fma(x, em1[r], x).
//
// VEC_K / VEC_V / VEC_S: A, B rows (dk) / C, O rows (dv) / state slots bound as vec4 (row lengths and
// offsets multiples of 4); scalar loads with exact bounds otherwise. TRANS_KV (OUT): the state is stored
// transposed, [dv, dk] per chunk (the backward reuses one scan for two gradients that way).

struct Params {
  T: u32,
  dk: u32,
  dv: u32,
  H: u32,
  head0: u32,       // global (batch·head) index of this dispatch's first head (for the rate)
  a_base: u32,      // element offsets of this dispatch's first head inside the bound ranges
  b_base: u32,
  c_base: u32,
  out_base: u32,    // O (OUT) or kv_out (STATE)
  kv_base: u32,     // kv_in
  nchunks: u32,     // chunks per head: ⌈T / CH⌉
  z0: u32,          // chunk of workgroup y = 0
  reverse: u32,     // 1: logical row i is stored at row T − 1 − i
  init: u32,        // 1: kv_in holds the scanned states (else the state is zero: one chunk)
  final_state: u32, // STATE: 1 = the prefill state of the last chunk to kv_out [head], else L_z to slot z
  group: u32,       // G: chunks per group
}

@group(0) @binding(0) var<storage, read> slopes: array<f32>;        // slopes: [H] f32 (rate s; λ = e^−s)
#if OUT
#if VEC_K
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;       // A: [heads, T, dk] f32 (reader rows: q)
@group(0) @binding(2) var<storage, read> Bm: array<vec4<f32>>;      // B: [heads, T, dk] f32 (writer rows: k)
#else
@group(0) @binding(1) var<storage, read> A: array<f32>;             // A: [heads, T, dk] f32 (reader rows: q)
@group(0) @binding(2) var<storage, read> Bm: array<f32>;            // B: [heads, T, dk] f32 (writer rows: k)
#endif
#if VEC_V
@group(0) @binding(3) var<storage, read> C: array<vec4<f32>>;       // C: [heads, T, dv] f32 (values: v)
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>; // O: [heads, T, dv] f32
#else
@group(0) @binding(3) var<storage, read> C: array<f32>;             // C: [heads, T, dv] f32 (values: v)
@group(0) @binding(4) var<storage, read_write> O: array<f32>;       // O: [heads, T, dv] f32
#endif
// kv_in: chunk states [heads, nchunks, dk, dv] f32, or [heads, nchunks, dv, dk] f32 with TRANS_KV
#if VEC_S
@group(0) @binding(5) var<storage, read> kv_in: array<vec4<f32>>;   // kv_in: see above
#else
@group(0) @binding(5) var<storage, read> kv_in: array<f32>;         // kv_in: see above
#endif
#else
#if VEC_K
@group(0) @binding(1) var<storage, read> Bm: array<vec4<f32>>;      // B: [heads, T, dk] f32
#else
@group(0) @binding(1) var<storage, read> Bm: array<f32>;            // B: [heads, T, dk] f32
#endif
#if VEC_V
@group(0) @binding(2) var<storage, read> C: array<vec4<f32>>;       // C: [heads, T, dv] f32
#else
@group(0) @binding(2) var<storage, read> C: array<f32>;             // C: [heads, T, dv] f32
#endif
// kv_out: the sums L_z [heads, nchunks, dk, dv] f32, or the final state [heads, dk, dv] f32
#if VEC_S
@group(0) @binding(3) var<storage, read> kv_in: array<vec4<f32>>;       // kv_in: [heads, nchunks, dk, dv] f32
@group(0) @binding(4) var<storage, read_write> kv_out: array<vec4<f32>>; // kv_out: see above
#else
@group(0) @binding(3) var<storage, read> kv_in: array<f32>;             // kv_in: [heads, nchunks, dk, dv] f32
@group(0) @binding(4) var<storage, read_write> kv_out: array<f32>;       // kv_out: see above
#endif
#endif
@group(1) @binding(0) var<uniform> p: Params;

const CH: u32 = 64u; // rows per chunk
// Every column check is known to pass: dk and dv multiples of 128, all operands bound as vec4.
const FULL: bool = {{FULL}};



// λ^(j·CH) − 1 for the j-th chunk of a group (j·CH may exceed the em1 table).
fn group_em1(s: f32, j: u32) -> f32 {
  return expm1_neg(-s * f32(j * CH));
}

// Element offset of the state of group Z (its scanned start) inside a head's slots.
fn group_slot(z: u32) -> u32 {
  let g = z / p.group;
  return min(g * p.group + p.group - 1u, p.nchunks - 1u) * p.dk * p.dv;
}

// Stored row of logical row i (< T).
fn phys(i: u32) -> u32 {
  return select(i, p.T - 1u - i, p.reverse != 0u);
}

// Elements [col, col + 4) of the row starting at element `at` of a matrix with rows of n elements, 0 past n.
fn row4_b(at: u32, col: u32) -> vec4<f32> {
#if FULL
  return Bm[(at + col) >> 2u];
#else
#if VEC_K
  if (col < p.dk) { return Bm[(at + col) >> 2u]; } // dk % 4 == 0: all 4 are in range
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (col < p.dk) { v.x = Bm[at + col]; }
  if (col + 1u < p.dk) { v.y = Bm[at + col + 1u]; }
  if (col + 2u < p.dk) { v.z = Bm[at + col + 2u]; }
  if (col + 3u < p.dk) { v.w = Bm[at + col + 3u]; }
  return v;
#endif
#endif
}

fn row4_c(at: u32, col: u32) -> vec4<f32> {
#if FULL
  return C[(at + col) >> 2u];
#else
#if VEC_V
  if (col < p.dv) { return C[(at + col) >> 2u]; }
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (col < p.dv) { v.x = C[at + col]; }
  if (col + 1u < p.dv) { v.y = C[at + col + 1u]; }
  if (col + 2u < p.dv) { v.z = C[at + col + 2u]; }
  if (col + 3u < p.dv) { v.w = C[at + col + 3u]; }
  return v;
#endif
#endif
}

fn row4_kv(at: u32, col: u32, n: u32) -> vec4<f32> {
#if FULL
  return kv_in[(at + col) >> 2u];
#else
#if VEC_S
  if (col < n) { return kv_in[(at + col) >> 2u]; }
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (col < n) { v.x = kv_in[at + col]; }
  if (col + 1u < n) { v.y = kv_in[at + col + 1u]; }
  if (col + 2u < n) { v.z = kv_in[at + col + 2u]; }
  if (col + 3u < n) { v.w = kv_in[at + col + 3u]; }
  return v;
#endif
#endif
}

// The state at a chunk's first row, elements [col, col + 4) of the row at offset `at` of its slots:
// λ^(j·CH) S_Z + L_{z−1} (gdec = λ^(j·CH) − 1; the second term only for j > 0, at offset l).
fn state4(s_at: u32, l_at: u32, col: u32, n: u32, mix: bool, gdec: f32) -> vec4<f32> {
  let x = row4_kv(s_at, col, n);
  if (!mix) { return x; }
  return fma(x, vec4<f32>(gdec), x) + row4_kv(l_at, col, n);
}

#if OUT
// Workgroup memory (20 KiB), one variable `sm` of 40 rows × 128 floats: rows [0, 32) hold the staged rows of
// a dk step, A [16 k][16 row4] in sm[k][0..16), B [16 k][16 key4] in sm[k][16..32) and KV [16 k][32 col4] in
// sm[16 + k], then the masked score block (score_col); rows [32, 40) (CS) the C rows of a key step.
// Two-dimensional with a constant first index in the unrolled loops: the bounds clamp of a workgroup index
// then stays out of the loop (a flat array measured 13% slower on the H200). Under 24 KiB so that two
// workgroups share an SM of the H200: Vulkan gives a workgroup 48 KiB per SM there, and a two-dimensional
// array takes a little more than its bytes (24 KiB of them, or 16 + 8 KiB in two variables, left one
// workgroup per SM; 16 keys per step, in 24 KiB, took 2.99 ms at b4 h16 T16K, 8 in 20 KiB 2.24 ms).
const KS: u32 = 8u; // keys per step of the intra product (the `#unroll k 8` of its loop)
var<workgroup> sm: array<array<vec4<f32>, 32>, 32 + KS>;
const CS: u32 = 32u; // first row of the C rows

// expm1(−s·r), r ∈ [0, CH], lives in the last C row until the intra product stages C there.
fn em1(r: u32) -> f32 {
  return sm[CS + KS - 1u][r / 4u][r % 4u];
}

// Where rows 4·r4..4·r4+3 at key j of the score block live: sm[j / 2][16·(j % 2) + (r4 + j / 4) % 16]
// (rows skewed by key / 4 so that the stores of a quarter warp hit distinct banks).
fn score_col(j: u32, r4: u32) -> u32 {
  return (j % 2u) * 16u + ((r4 + j / 4u) & 15u);
}

fn row4_a(at: u32, col: u32) -> vec4<f32> {
#if FULL
  return A[(at + col) >> 2u];
#else
#if VEC_K
  if (col < p.dk) { return A[(at + col) >> 2u]; }
  return vec4<f32>(0.0);
#else
  var v = vec4<f32>(0.0);
  if (col < p.dk) { v.x = A[at + col]; }
  if (col + 1u < p.dk) { v.y = A[at + col + 1u]; }
  if (col + 2u < p.dk) { v.z = A[at + col + 2u]; }
  if (col + 3u < p.dk) { v.w = A[at + col + 3u]; }
  return v;
#endif
#endif
}

// Where the chunk's state comes from: λ^(j·CH) S_Z + L_{z−1} (see state4).
struct StateSrc {
  s: u32,
  l: u32,
  mix: bool,
  gdec: f32,
}

struct Pair {
  lo: vec4<f32>,
  hi: vec4<f32>,
}

// Invocation t's share of the [8][128] state rows k0..k0+7 of the tile. Non-transposed: vec4 t and t + 128
// (row i / 32, columns 4·(i % 32)..); transposed: elements k0 + 4·(t % 2).. of stored rows col0 + t / 2 (lo)
// and col0 + 64 + t / 2 (hi), so that consecutive invocations read consecutive bytes.
fn fetch_kv(t: u32, col0: u32, k0: u32, src: StateSrc) -> Pair {
  var r = Pair(vec4<f32>(0.0), vec4<f32>(0.0));
#if TRANS_KV
  // Two invocations per stored row, one vec4 each: a quarter warp reads 4 rows' 32 contiguous bytes.
  let c = col0 + t / 2u;
  let k = k0 + 4u * (t % 2u);
  if (FULL || c < p.dv) {
    let row = c * p.dk;
    r.lo = state4(src.s + row, src.l + row, k, p.dk, src.mix, src.gdec);
  }
  if (FULL || c + 64u < p.dv) {
    let row = (c + 64u) * p.dk;
    r.hi = state4(src.s + row, src.l + row, k, p.dk, src.mix, src.gdec);
  }
#else
  let col = col0 + 4u * (t % 32u);
  let k = k0 + t / 32u;
  if (FULL || k < p.dk) { r.lo = state4(src.s + k * p.dv, src.l + k * p.dv, col, p.dv, src.mix, src.gdec); }
  if (FULL || k + 4u < p.dk) {
    let at = (k + 4u) * p.dv;
    r.hi = state4(src.s + at, src.l + at, col, p.dv, src.mix, src.gdec);
  }
#endif
  return r;
}

// The share of fetch_kv(.., k0 = step start + ko, ..) into the KV rows of the tile.
fn stash_kv(t: u32, r: Pair, ko: u32) {
#if TRANS_KV
  let c = t / 2u; // column of lo; hi is column c + 64
  let k = 16u + ko + 4u * (t % 2u);
  sm[k + 0u][c / 4u][c % 4u] = r.lo.x;
  sm[k + 1u][c / 4u][c % 4u] = r.lo.y;
  sm[k + 2u][c / 4u][c % 4u] = r.lo.z;
  sm[k + 3u][c / 4u][c % 4u] = r.lo.w;
  sm[k + 0u][16u + c / 4u][c % 4u] = r.hi.x;
  sm[k + 1u][16u + c / 4u][c % 4u] = r.hi.y;
  sm[k + 2u][16u + c / 4u][c % 4u] = r.hi.z;
  sm[k + 3u][16u + c / 4u][c % 4u] = r.hi.w;
#else
  sm[16u + ko + t / 32u][t % 32u] = r.lo;
  sm[16u + ko + t / 32u + 4u][t % 32u] = r.hi;
#endif
}

// Columns lk..lk+3 of chunk row lr, k-major, into the A (base 0) or B (base 16) columns of the tile.
fn stash_rows(base: u32, lr: u32, lk: u32, x: vec4<f32>) {
  sm[lk + 0u][base + lr / 4u][lr % 4u] = x.x;
  sm[lk + 1u][base + lr / 4u][lr % 4u] = x.y;
  sm[lk + 2u][base + lr / 4u][lr % 4u] = x.z;
  sm[lk + 3u][base + lr / 4u][lr % 4u] = x.w;
}

// Rows i..i+3 at key j of the score block, masked (j > row → 0) and decayed by λ^(row − j).
fn mask4(v: vec4<f32>, i: u32, j: u32) -> vec4<f32> {
  var out = vec4<f32>(0.0);
#unroll q 4
  if (i + {{q}}u >= j) { out[{{q}}] = fma(v[{{q}}], em1(i + {{q}}u - j), v[{{q}}]); }
#endunroll
  return out;
}

// Rows r and r + 4 of the chunk (those < m) at columns col.. of C: invocation t's share of a key step
// (r = step start + t / 32).
fn fetch_c(c_head: u32, row0: u32, r: u32, m: u32, col: u32) -> Pair {
  var q = Pair(vec4<f32>(0.0), vec4<f32>(0.0));
  if (r < m) { q.lo = row4_c(c_head + phys(row0 + r) * p.dv, col); }
  if (r + 4u < m) { q.hi = row4_c(c_head + phys(row0 + r + 4u) * p.dv, col); }
  return q;
}

fn stash_c(t: u32, q: Pair) {
  sm[CS + t / 32u][t % 32u] = q.lo;
  sm[CS + t / 32u + 4u][t % 32u] = q.hi;
}

// Row i (< m) of the chunk at columns col..col+3 of O.
fn store4(o_head: u32, row0: u32, i: u32, m: u32, col: u32, v: vec4<f32>) {
  if (i >= m || col >= p.dv) { return; }
  let at = o_head + phys(row0 + i) * p.dv + col;
#if VEC_V
  O[at >> 2u] = v;
#else
  for (var c = 0u; c < 4u; c++) {
    if (col + c < p.dv) { O[at + c] = v[c]; }
  }
#endif
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let tx = t % 16u;
  let ty = t / 16u;
  let tx1 = tx + 16u;
  let pr = 2u * ty;      // the vec4 of rows 8ty..8ty+3 in a k row of the A rows (and of the score block)
  let pr1 = pr + 1u;     // rows 8ty+4..8ty+7
  let col0 = wg.x * 128u;
  let z = p.z0 + wg.y;
  let head = wg.z;
  let s = slopes[(p.head0 + head) % p.H];
  if (t <= CH) { sm[CS + KS - 1u][t / 4u][t % 4u] = expm1_neg(-s * f32(t)); }

  let row0 = z * CH;
  let m = min(CH, p.T - row0);
  let a_head = p.a_base + head * p.T * p.dk;
  let b_head = p.b_base + head * p.T * p.dk;
  let c_head = p.c_base + head * p.T * p.dv;
  let o_head = p.out_base + head * p.T * p.dv;
  // The state at the chunk's first row: λ^(j·CH) S_Z + L_{z−1} (chunk 0 starts from zero).
  let has_kv = p.init != 0u && z > 0u;
  let head_slots = p.kv_base + head * p.nchunks * p.dk * p.dv;
  let src = StateSrc(
    head_slots + group_slot(z),
    head_slots + (max(z, 1u) - 1u) * p.dk * p.dv,
    z % p.group != 0u,
    group_em1(s, z % p.group),
  );

  // Staging of A and B: invocation t fetches 8 consecutive columns of row t / 2.
  let lr = t / 2u;
  let lk = (t % 2u) * 8u;
  let l_live = lr < m;
  // Rows past the chunk's end (last chunk) are clamped to its last row: with FULL they are fetched
  // unchecked, and they only feed output rows that are never stored and scores the mask zeroes.
  let a_row = a_head + phys(row0 + min(lr, m - 1u)) * p.dk;
  let b_row = b_head + phys(row0 + min(lr, m - 1u)) * p.dk;

  var o00 = vec4<f32>(0.0); var o01 = vec4<f32>(0.0); var o10 = vec4<f32>(0.0); var o11 = vec4<f32>(0.0);
  var o20 = vec4<f32>(0.0); var o21 = vec4<f32>(0.0); var o30 = vec4<f32>(0.0); var o31 = vec4<f32>(0.0);
  var o40 = vec4<f32>(0.0); var o41 = vec4<f32>(0.0); var o50 = vec4<f32>(0.0); var o51 = vec4<f32>(0.0);
  var o60 = vec4<f32>(0.0); var o61 = vec4<f32>(0.0); var o70 = vec4<f32>(0.0); var o71 = vec4<f32>(0.0);
  // Score block: p{key}{half}, rows 8ty + 4·half .. +3 at key 4tx + key.
  var p00 = vec4<f32>(0.0); var p01 = vec4<f32>(0.0); var p10 = vec4<f32>(0.0); var p11 = vec4<f32>(0.0);
  var p20 = vec4<f32>(0.0); var p21 = vec4<f32>(0.0); var p30 = vec4<f32>(0.0); var p31 = vec4<f32>(0.0);

  // ---- inter product A·KV and score block A·Bᵀ, 16 columns of dk per step (the next step's operands in
  // registers). Without a state (chunk 0) zeros are staged: no branch in the inner loop.
  let ktiles = (p.dk + 15u) / 16u;
  var ra0 = vec4<f32>(0.0); var ra1 = vec4<f32>(0.0);
  var rb0 = vec4<f32>(0.0); var rb1 = vec4<f32>(0.0);
  var ry0 = Pair(vec4<f32>(0.0), vec4<f32>(0.0));
  var ry1 = Pair(vec4<f32>(0.0), vec4<f32>(0.0));
  if (FULL || l_live) {
    ra0 = row4_a(a_row, lk); ra1 = row4_a(a_row, lk + 4u);
    rb0 = row4_b(b_row, lk); rb1 = row4_b(b_row, lk + 4u);
  }
  if (has_kv) { ry0 = fetch_kv(t, col0, 0u, src); ry1 = fetch_kv(t, col0, 8u, src); }
  for (var kt = 0u; kt < ktiles; kt++) {
    stash_rows(0u, lr, lk, ra0); stash_rows(0u, lr, lk + 4u, ra1);
    stash_rows(16u, lr, lk, rb0); stash_rows(16u, lr, lk + 4u, rb1);
    stash_kv(t, ry0, 0u); stash_kv(t, ry1, 8u);
    workgroupBarrier();
    if (kt + 1u < ktiles) {
      let k0 = (kt + 1u) * 16u;
      if (FULL || l_live) {
        ra0 = row4_a(a_row, k0 + lk); ra1 = row4_a(a_row, k0 + lk + 4u);
        rb0 = row4_b(b_row, k0 + lk); rb1 = row4_b(b_row, k0 + lk + 4u);
      }
      if (has_kv) { ry0 = fetch_kv(t, col0, k0, src); ry1 = fetch_kv(t, col0, k0 + 8u, src); }
    }
#unroll k 16
    {
      let a0 = sm[{{k}}][pr];
      let a1 = sm[{{k}}][pr1];
      let b = sm[{{k}}][tx1];
      p00 = fma(vec4<f32>(b.x), a0, p00); p01 = fma(vec4<f32>(b.x), a1, p01);
      p10 = fma(vec4<f32>(b.y), a0, p10); p11 = fma(vec4<f32>(b.y), a1, p11);
      p20 = fma(vec4<f32>(b.z), a0, p20); p21 = fma(vec4<f32>(b.z), a1, p21);
      p30 = fma(vec4<f32>(b.w), a0, p30); p31 = fma(vec4<f32>(b.w), a1, p31);
      let y0 = sm[16 + {{k}}][tx];
      let y1 = sm[16 + {{k}}][tx1];
      o00 = fma(vec4<f32>(a0.x), y0, o00); o01 = fma(vec4<f32>(a0.x), y1, o01);
      o10 = fma(vec4<f32>(a0.y), y0, o10); o11 = fma(vec4<f32>(a0.y), y1, o11);
      o20 = fma(vec4<f32>(a0.z), y0, o20); o21 = fma(vec4<f32>(a0.z), y1, o21);
      o30 = fma(vec4<f32>(a0.w), y0, o30); o31 = fma(vec4<f32>(a0.w), y1, o31);
      o40 = fma(vec4<f32>(a1.x), y0, o40); o41 = fma(vec4<f32>(a1.x), y1, o41);
      o50 = fma(vec4<f32>(a1.y), y0, o50); o51 = fma(vec4<f32>(a1.y), y1, o51);
      o60 = fma(vec4<f32>(a1.z), y0, o60); o61 = fma(vec4<f32>(a1.z), y1, o61);
      o70 = fma(vec4<f32>(a1.w), y0, o70); o71 = fma(vec4<f32>(a1.w), y1, o71);
    }
#endunroll
    workgroupBarrier();
  }

  // The masked, decayed score block, k-major for the product with C (over the tile: its reads are done).
  let i0 = 8u * ty;
  let j0 = 4u * tx;
  sm[j0 / 2u][score_col(j0, pr)] = mask4(p00, i0, j0);
  sm[j0 / 2u][score_col(j0, pr1)] = mask4(p01, i0 + 4u, j0);
  sm[(j0 + 1u) / 2u][score_col(j0 + 1u, pr)] = mask4(p10, i0, j0 + 1u);
  sm[(j0 + 1u) / 2u][score_col(j0 + 1u, pr1)] = mask4(p11, i0 + 4u, j0 + 1u);
  sm[(j0 + 2u) / 2u][score_col(j0 + 2u, pr)] = mask4(p20, i0, j0 + 2u);
  sm[(j0 + 2u) / 2u][score_col(j0 + 2u, pr1)] = mask4(p21, i0 + 4u, j0 + 2u);
  sm[(j0 + 3u) / 2u][score_col(j0 + 3u, pr)] = mask4(p30, i0, j0 + 3u);
  sm[(j0 + 3u) / 2u][score_col(j0 + 3u, pr1)] = mask4(p31, i0 + 4u, j0 + 3u);

  // Reader-side decay of the inter term: λ^i for row i = 8ty + r.
  var d = vec4<f32>(em1(i0));
  o00 = fma(o00, d, o00); o01 = fma(o01, d, o01);
  d = vec4<f32>(em1(i0 + 1u));
  o10 = fma(o10, d, o10); o11 = fma(o11, d, o11);
  d = vec4<f32>(em1(i0 + 2u));
  o20 = fma(o20, d, o20); o21 = fma(o21, d, o21);
  d = vec4<f32>(em1(i0 + 3u));
  o30 = fma(o30, d, o30); o31 = fma(o31, d, o31);
  d = vec4<f32>(em1(i0 + 4u));
  o40 = fma(o40, d, o40); o41 = fma(o41, d, o41);
  d = vec4<f32>(em1(i0 + 5u));
  o50 = fma(o50, d, o50); o51 = fma(o51, d, o51);
  d = vec4<f32>(em1(i0 + 6u));
  o60 = fma(o60, d, o60); o61 = fma(o61, d, o61);
  d = vec4<f32>(em1(i0 + 7u));
  o70 = fma(o70, d, o70); o71 = fma(o71, d, o71);

  workgroupBarrier(); // the em1 reads above are done before C rows overwrite them

  // ---- intra product P·C over the chunk's keys, KS at a time; key tiles right of the invocation's rows are
  // skipped (the mask is zero there).
  let c_col = col0 + 4u * (t % 32u);
  let c_k = t / 32u;
  let jtiles = (m + KS - 1u) / KS;
  var rc = fetch_c(c_head, row0, c_k, m, c_col);
  for (var jt = 0u; jt < jtiles; jt++) {
    stash_c(t, rc);
    workgroupBarrier(); // also orders the score block's stores above before the first reads
    if (jt + 1u < jtiles) { rc = fetch_c(c_head, row0, (jt + 1u) * KS + c_k, m, c_col); }
    if (KS * jt <= 8u * ty + 7u) { // keys KS·jt.. ≤ rows 8ty + 7
#unroll k 8
      {
        let j = jt * KS + {{k}}u;
        let q0 = sm[j / 2u][score_col(j, pr)];
        let q1 = sm[j / 2u][score_col(j, pr1)];
        let y0 = sm[CS + {{k}}][tx];
        let y1 = sm[CS + {{k}}][tx1];
        o00 = fma(vec4<f32>(q0.x), y0, o00); o01 = fma(vec4<f32>(q0.x), y1, o01);
        o10 = fma(vec4<f32>(q0.y), y0, o10); o11 = fma(vec4<f32>(q0.y), y1, o11);
        o20 = fma(vec4<f32>(q0.z), y0, o20); o21 = fma(vec4<f32>(q0.z), y1, o21);
        o30 = fma(vec4<f32>(q0.w), y0, o30); o31 = fma(vec4<f32>(q0.w), y1, o31);
        o40 = fma(vec4<f32>(q1.x), y0, o40); o41 = fma(vec4<f32>(q1.x), y1, o41);
        o50 = fma(vec4<f32>(q1.y), y0, o50); o51 = fma(vec4<f32>(q1.y), y1, o51);
        o60 = fma(vec4<f32>(q1.z), y0, o60); o61 = fma(vec4<f32>(q1.z), y1, o61);
        o70 = fma(vec4<f32>(q1.w), y0, o70); o71 = fma(vec4<f32>(q1.w), y1, o71);
      }
#endunroll
    }
    workgroupBarrier();
  }

  let c0 = col0 + 4u * tx;
  let c1 = c0 + 64u;
  store4(o_head, row0, i0, m, c0, o00); store4(o_head, row0, i0, m, c1, o01);
  store4(o_head, row0, i0 + 1u, m, c0, o10); store4(o_head, row0, i0 + 1u, m, c1, o11);
  store4(o_head, row0, i0 + 2u, m, c0, o20); store4(o_head, row0, i0 + 2u, m, c1, o21);
  store4(o_head, row0, i0 + 3u, m, c0, o30); store4(o_head, row0, i0 + 3u, m, c1, o31);
  store4(o_head, row0, i0 + 4u, m, c0, o40); store4(o_head, row0, i0 + 4u, m, c1, o41);
  store4(o_head, row0, i0 + 5u, m, c0, o50); store4(o_head, row0, i0 + 5u, m, c1, o51);
  store4(o_head, row0, i0 + 6u, m, c0, o60); store4(o_head, row0, i0 + 6u, m, c1, o61);
  store4(o_head, row0, i0 + 7u, m, c0, o70); store4(o_head, row0, i0 + 7u, m, c1, o71);
}
#else
// Workgroup memory (32 KiB): double-buffered tiles of a 16-row step, one barrier per step.
var<workgroup> Xs: array<array<array<vec4<f32>, 32>, 16>, 2>; // [buffer][k: 16][dk row: 128 as 32 × vec4]: B rows
var<workgroup> Ys: array<array<array<vec4<f32>, 32>, 16>, 2>; // [buffer][k: 16][dv col: 128 as 32 × vec4]: C rows × λ^(E−r)

// acc (+ λ^E·KV_last when adding, KV_last = λ^(j·CH) S_Z + L_{z−1}) at row r, columns col..col+3 of the
// tile, into kv_out at `out`.
fn store4(out: u32, r: u32, col: u32, acc: vec4<f32>, st: StateIn) {
  if (r >= p.dk || col >= p.dv) { return; }
  let at = r * p.dv + col;
#if VEC_S
  var v = acc;
  if (st.add) {
    var x = kv_in[(st.s_at + at) >> 2u];
    if (st.mix) { x = fma(x, vec4<f32>(st.gdec), x) + kv_in[(st.l_at + at) >> 2u]; }
    v = fma(x, vec4<f32>(st.decay), x) + acc;
  }
  kv_out[(out + at) >> 2u] = v;
#else
  for (var c = 0u; c < 4u; c++) {
    if (col + c < p.dv) {
      var v = acc[c];
      if (st.add) {
        var x = kv_in[st.s_at + at + c];
        if (st.mix) { x = fma(x, st.gdec, x) + kv_in[st.l_at + at + c]; }
        v = fma(x, st.decay, x) + v;
      }
      kv_out[out + at + c] = v;
    }
  }
#endif
}

// What the final state adds to the last chunk's own part (see store4).
struct StateIn {
  add: bool,
  mix: bool,
  s_at: u32,
  l_at: u32,
  gdec: f32,
  decay: f32,
}

// Rows r0..r0+3, r1..r1+3 and columns q0.., q1.. of an invocation's 8×8 outputs (see main).
struct TileAt {
  r0: u32,
  r1: u32,
  q0: u32,
  q1: u32,
}

// An invocation's 8×8 outputs c{col half}{row} to kv_out at `out` (see store4).
fn store_tile(
  out: u32, at: TileAt, st: StateIn,
  c00: vec4<f32>, c01: vec4<f32>, c02: vec4<f32>, c03: vec4<f32>,
  c04: vec4<f32>, c05: vec4<f32>, c06: vec4<f32>, c07: vec4<f32>,
  c10: vec4<f32>, c11: vec4<f32>, c12: vec4<f32>, c13: vec4<f32>,
  c14: vec4<f32>, c15: vec4<f32>, c16: vec4<f32>, c17: vec4<f32>,
) {
  store4(out, at.r0, at.q0, c00, st); store4(out, at.r0 + 1u, at.q0, c01, st);
  store4(out, at.r0 + 2u, at.q0, c02, st); store4(out, at.r0 + 3u, at.q0, c03, st);
  store4(out, at.r1, at.q0, c04, st); store4(out, at.r1 + 1u, at.q0, c05, st);
  store4(out, at.r1 + 2u, at.q0, c06, st); store4(out, at.r1 + 3u, at.q0, c07, st);
  store4(out, at.r0, at.q1, c10, st); store4(out, at.r0 + 1u, at.q1, c11, st);
  store4(out, at.r0 + 2u, at.q1, c12, st); store4(out, at.r0 + 3u, at.q1, c13, st);
  store4(out, at.r1, at.q1, c14, st); store4(out, at.r1 + 1u, at.q1, c15, st);
  store4(out, at.r1 + 2u, at.q1, c16, st); store4(out, at.r1 + 3u, at.q1, c17, st);
}

// The writer decay λ^(E − r) − 1 of chunk row r (rows past E only stage zeros).
fn writer_em1(s: f32, E: u32, r: u32) -> f32 {
  if (r > E) { return 0.0; }
  return expm1_neg(-s * f32(E - r));
}

// Where a state workgroup's staged rows come from: the head's B and C, the invocation's columns of each, the
// rows of a chunk.
struct StepRows {
  b_head: u32,
  c_head: u32,
  b_col: u32,
  c_col: u32,
  m: u32,
}

// Rows r and r + 8 (those < m) of the chunk starting at row `first`, from B (x) and C (y).
struct Step {
  x0: vec4<f32>,
  y0: vec4<f32>,
  x1: vec4<f32>,
  y1: vec4<f32>,
}

fn fetch_step(src: StepRows, first: u32, r: u32) -> Step {
  var q = Step(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  if (r < src.m) {
    let at = phys(first + r);
    q.x0 = row4_b(src.b_head + at * p.dk, src.b_col);
    q.y0 = row4_c(src.c_head + at * p.dv, src.c_col);
  }
  if (r + 8u < src.m) {
    let at = phys(first + r + 8u);
    q.x1 = row4_b(src.b_head + at * p.dk, src.b_col);
    q.y1 = row4_c(src.c_head + at * p.dv, src.c_col);
  }
  return q;
}

// Invocation t's rows of a step into buffer `bf`, the C rows scaled by their writer decays (λ^(E−r) − 1).
fn stash_step(bf: u32, t: u32, q: Step, w0: f32, w1: f32) {
  Xs[bf][t / 32u][t % 32u] = q.x0;
  Ys[bf][t / 32u][t % 32u] = fma(q.y0, vec4<f32>(w0), q.y0);
  Xs[bf][t / 32u + 8u][t % 32u] = q.x1;
  Ys[bf][t / 32u + 8u][t % 32u] = fma(q.y1, vec4<f32>(w1), q.y1);
}

// a, b, c or d for q = 0, 1, 2, 3.
fn pick4(q: u32, a: f32, b: f32, c: f32, d: f32) -> f32 {
  return select(select(a, b, q == 1u), select(c, d, q == 3u), q >= 2u);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let tx = t % 16u;
  let ty = t / 16u;
  let tx1 = tx + 16u;
  let ty1 = ty + 16u;
  let tiles_n = (p.dv + 127u) / 128u;
  let n0 = (wg.x % tiles_n) * 128u;
  let m0 = (wg.x / tiles_n) * 128u;
  let head = wg.z;
  let s = slopes[(p.head0 + head) % p.H];

  let fin = p.final_state != 0u;
  // Chunks of this workgroup: the group's chunks before the last chunk of the sequence (all full), or
  // the last chunk (m rows) for the final state.
  let z_first = p.z0 + wg.y * p.group;
  let count = select(min(p.group, p.nchunks - 1u - z_first), 1u, fin);
  let row0 = z_first * CH;
  let m = min(CH, p.T - row0);
  // Writer decay λ^(E − r): to the next chunk's first row (E = CH), or to the last row (E = m − 1).
  let E = select(CH, m - 1u, fin);
  let b_head = p.b_base + head * p.T * p.dk;
  let c_head = p.c_base + head * p.T * p.dv;
  let slots = p.out_base + head * p.nchunks * p.dk * p.dv;
  let decay_chunk = vec4<f32>(expm1_neg(-s * f32(CH)));

  var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0); var c02 = vec4<f32>(0.0); var c03 = vec4<f32>(0.0);
  var c04 = vec4<f32>(0.0); var c05 = vec4<f32>(0.0); var c06 = vec4<f32>(0.0); var c07 = vec4<f32>(0.0);
  var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0); var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0);
  var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0); var c16 = vec4<f32>(0.0); var c17 = vec4<f32>(0.0);
  let at = TileAt(m0 + ty * 4u, m0 + 64u + ty * 4u, n0 + tx * 4u, n0 + 64u + tx * 4u);

  // Staging: invocation t fetches 4 columns (4·(t % 32)..) of chunk rows 16q + t / 32 and 16q + t / 32 + 8
  // from B and from C at step q of a chunk (all chunks but a final one have CH rows: 4 steps). The C rows
  // are scaled by their writer decay as they are stashed (not as they arrive: the fetch stays in flight
  // while the previous step is computed); the 8 decays an invocation needs are kept in registers.
  let lcol = 4u * (t % 32u);
  let lrow = t / 32u;
  let per_chunk = (m + 15u) / 16u;
  let steps = count * per_chunk;
  let w00 = writer_em1(s, E, lrow); let w01 = writer_em1(s, E, lrow + 8u);
  let w10 = writer_em1(s, E, lrow + 16u); let w11 = writer_em1(s, E, lrow + 24u);
  let w20 = writer_em1(s, E, lrow + 32u); let w21 = writer_em1(s, E, lrow + 40u);
  let w30 = writer_em1(s, E, lrow + 48u); let w31 = writer_em1(s, E, lrow + 56u);
  let src = StepRows(b_head, c_head, m0 + lcol, n0 + lcol, m);
  var rows = fetch_step(src, row0, lrow);
  stash_step(0u, t, rows, w00, w01);
  workgroupBarrier();
  let none = StateIn(false, false, 0u, 0u, 0.0, 0.0);
  for (var i = 0u; i < steps; i++) {
    let cur = i & 1u;
    let more = i + 1u < steps;
    let qn = (i + 1u) % per_chunk;
    let r = qn * 16u + lrow;
    if (more) { rows = fetch_step(src, row0 + ((i + 1u) / per_chunk) * CH, r); }
    if (!fin && i > 0u && i % per_chunk == 0u) {
      // Chunk z = i / per_chunk − 1 ended with the previous step: L_z to its slot, issued after this step's
      // loads (stores ahead of them held them up: −26% on the H200), then the sum decayed to chunk z + 1's
      // first row.
      store_tile(slots + (z_first + i / per_chunk - 1u) * p.dk * p.dv, at, none,
        c00, c01, c02, c03, c04, c05, c06, c07, c10, c11, c12, c13, c14, c15, c16, c17,
      );
      c00 = fma(c00, decay_chunk, c00); c01 = fma(c01, decay_chunk, c01);
      c02 = fma(c02, decay_chunk, c02); c03 = fma(c03, decay_chunk, c03);
      c04 = fma(c04, decay_chunk, c04); c05 = fma(c05, decay_chunk, c05);
      c06 = fma(c06, decay_chunk, c06); c07 = fma(c07, decay_chunk, c07);
      c10 = fma(c10, decay_chunk, c10); c11 = fma(c11, decay_chunk, c11);
      c12 = fma(c12, decay_chunk, c12); c13 = fma(c13, decay_chunk, c13);
      c14 = fma(c14, decay_chunk, c14); c15 = fma(c15, decay_chunk, c15);
      c16 = fma(c16, decay_chunk, c16); c17 = fma(c17, decay_chunk, c17);
    }
#unroll k 16
    {
      let a0 = Xs[cur][{{k}}][ty];
      let a1 = Xs[cur][{{k}}][ty1];
      let b0 = Ys[cur][{{k}}][tx];
      let b1 = Ys[cur][{{k}}][tx1];
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
    if (more) { stash_step(cur ^ 1u, t, rows, pick4(qn, w00, w10, w20, w30), pick4(qn, w01, w11, w21, w31)); }
    workgroupBarrier();
  }

  if (fin) {
    // kv_{T−1} = λ^(m−1) KV_last + the last chunk's own part, KV_last = λ^(j·CH) S_Z + L_{z−1}.
    let z = z_first;
    let head_slots = p.kv_base + head * p.nchunks * p.dk * p.dv;
    let st = StateIn(
      p.init != 0u,
      z % p.group != 0u,
      head_slots + group_slot(z),
      head_slots + (max(z, 1u) - 1u) * p.dk * p.dv,
      group_em1(s, z % p.group),
      expm1_neg(-s * f32(E)),
    );
    store_tile(p.out_base + head * p.dk * p.dv, at, st,
      c00, c01, c02, c03, c04, c05, c06, c07, c10, c11, c12, c13, c14, c15, c16, c17,
    );
  } else if (count > 0u) {
    // The last chunk's L_z.
    store_tile(slots + (z_first + count - 1u) * p.dk * p.dv, at, none,
      c00, c01, c02, c03, c04, c05, c06, c07, c10, c11, c12, c13, c14, c15, c16, c17,
    );
  }
}
#endif
