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
// block's rows 8ty..8ty+7 at keys 4tx..4tx+3 (8 vec4). One loop over dk, 8 columns at a time, stages A and B
// k-major (As[k][row], Bs[k][key]) and the rows of KV (Ys[k][col]); per column it reads 5 vec4 from
// workgroup memory for 96 FMAs, feeding both the inter product A·KV and the score block A·Bᵀ. The masked,
// decayed score block goes to workgroup memory k-major (Ps[key][row], rows skewed by key / 4 so that the
// stores of a quarter warp hit distinct banks); a second loop over the chunk's keys stages C and adds P·C,
// skipping key tiles right of the invocation's rows (the mask is zero there). SPLIT: the score block gets a
// loop over dk of its own before the inter product (A staged twice; at most 16 vec4 accumulators live at a
// time instead of 24, for more workgroups per SM).
// STATE: 256 invocations own a 128 × 128 tile of the state with 8×8 outputs each, the tiling of
// matmul.wgsl with K = the chunk's rows, walking the G chunks of its group with the accumulators carried
// (× λ^CH between chunks); the writer decay λ^(CH−r) scales the C rows as they are staged.
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

var<workgroup> em1: array<f32, 65>; // expm1(−s·r), r ∈ [0, CH]


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
var<workgroup> As: array<array<vec4<f32>, 16>, 8>; // [k: 8][row: 64 as 16 × vec4]
var<workgroup> Bs: array<array<vec4<f32>, 16>, 8>; // [k: 8][key: 64 as 16 × vec4]
var<workgroup> Ys: array<array<vec4<f32>, 32>, 8>; // [k: 8][col: 128 as 32 × vec4]: rows of KV, then of C
var<workgroup> Ps: array<vec4<f32>, 1024>; // [key: 64][row: 64 as 16 × vec4, skewed]: (A Bᵀ) ⊙ M

// Where rows 4·r4..4·r4+3 at key j of the score block live.
fn ps_at(j: u32, r4: u32) -> u32 {
  return j * 16u + ((r4 + j / 4u) & 15u);
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

// Invocation t's share of the [8][128] state tile of the dk step starting at k0. Non-transposed: vec4 t and
// t + 128 of the tile (row i / 32, columns 4·(i % 32)..); transposed: column t of the tile, 8 consecutive
// elements of stored row col0 + t.
fn fetch_kv(t: u32, col0: u32, k0: u32, src: StateSrc) -> Pair {
  var r = Pair(vec4<f32>(0.0), vec4<f32>(0.0));
#if TRANS_KV
  if (FULL || col0 + t < p.dv) {
    let row = (col0 + t) * p.dk;
    r.lo = state4(src.s + row, src.l + row, k0, p.dk, src.mix, src.gdec);
    r.hi = state4(src.s + row, src.l + row, k0 + 4u, p.dk, src.mix, src.gdec);
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

fn stash_kv(t: u32, r: Pair) {
#if TRANS_KV
  Ys[0u][t / 4u][t % 4u] = r.lo.x;
  Ys[1u][t / 4u][t % 4u] = r.lo.y;
  Ys[2u][t / 4u][t % 4u] = r.lo.z;
  Ys[3u][t / 4u][t % 4u] = r.lo.w;
  Ys[4u][t / 4u][t % 4u] = r.hi.x;
  Ys[5u][t / 4u][t % 4u] = r.hi.y;
  Ys[6u][t / 4u][t % 4u] = r.hi.z;
  Ys[7u][t / 4u][t % 4u] = r.hi.w;
#else
  Ys[t / 32u][t % 32u] = r.lo;
  Ys[t / 32u + 4u][t % 32u] = r.hi;
#endif
}

// Columns lk..lk+3 of chunk row lr, k-major.
fn stash_a(lr: u32, lk: u32, x: vec4<f32>) {
  As[lk + 0u][lr / 4u][lr % 4u] = x.x;
  As[lk + 1u][lr / 4u][lr % 4u] = x.y;
  As[lk + 2u][lr / 4u][lr % 4u] = x.z;
  As[lk + 3u][lr / 4u][lr % 4u] = x.w;
}

fn stash_b(lr: u32, lk: u32, x: vec4<f32>) {
  Bs[lk + 0u][lr / 4u][lr % 4u] = x.x;
  Bs[lk + 1u][lr / 4u][lr % 4u] = x.y;
  Bs[lk + 2u][lr / 4u][lr % 4u] = x.z;
  Bs[lk + 3u][lr / 4u][lr % 4u] = x.w;
}

// Rows i..i+3 at key j of the score block, masked (j > row → 0) and decayed by λ^(row − j).
fn mask4(v: vec4<f32>, i: u32, j: u32) -> vec4<f32> {
  var out = vec4<f32>(0.0);
#unroll q 4
  if (i + {{q}}u >= j) { out[{{q}}] = fma(v[{{q}}], em1[i + {{q}}u - j], v[{{q}}]); }
#endunroll
  return out;
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
  let pr = 2u * ty;      // the vec4 of rows 8ty..8ty+3 in a k row of As (and of Ps)
  let pr1 = pr + 1u;     // rows 8ty+4..8ty+7
  let col0 = wg.x * 128u;
  let z = p.z0 + wg.y;
  let head = wg.z;
  let s = slopes[(p.head0 + head) % p.H];
  if (t <= CH) { em1[t] = expm1_neg(-s * f32(t)); }

  let row0 = z * CH;
  let m = min(CH, p.T - row0);
  let a_head = p.a_base + head * p.T * p.dk;
  let b_head = p.b_base + head * p.T * p.dk;
  let c_head = p.c_base + head * p.T * p.dv;
  let o_head = p.out_base + head * p.T * p.dv;
  // The state at the chunk's first row: λ^(j·CH) S_Z + L_{z−1} (chunk 0 starts from zero).
  let has_kv = p.init != 0u && z > 0u;
  let head_slots = p.kv_base + head * p.nchunks * p.dk * p.dv;
  let s_slot = head_slots + group_slot(z);
  let l_slot = head_slots + (max(z, 1u) - 1u) * p.dk * p.dv;
  let mix = z % p.group != 0u;
  let gdec = group_em1(s, z % p.group);

  // Staging of A and B: invocation t fetches 4 consecutive columns of row t / 2.
  let lr = t / 2u;
  let lk = (t % 2u) * 4u;
  let l_live = lr < m;
  // Rows past the chunk's end (last chunk) are clamped to its last row: with FULL they are fetched
  // unchecked, and they only feed output rows that are never stored and scores the mask zeroes.
  let a_row = a_head + phys(row0 + min(lr, m - 1u)) * p.dk;
  let b_row = b_head + phys(row0 + min(lr, m - 1u)) * p.dk;
  let src = StateSrc(s_slot, l_slot, mix, gdec);

  var o00 = vec4<f32>(0.0); var o01 = vec4<f32>(0.0); var o10 = vec4<f32>(0.0); var o11 = vec4<f32>(0.0);
  var o20 = vec4<f32>(0.0); var o21 = vec4<f32>(0.0); var o30 = vec4<f32>(0.0); var o31 = vec4<f32>(0.0);
  var o40 = vec4<f32>(0.0); var o41 = vec4<f32>(0.0); var o50 = vec4<f32>(0.0); var o51 = vec4<f32>(0.0);
  var o60 = vec4<f32>(0.0); var o61 = vec4<f32>(0.0); var o70 = vec4<f32>(0.0); var o71 = vec4<f32>(0.0);
  // Score block: p{key}{half}, rows 8ty + 4·half .. +3 at key 4tx + key.
  var p00 = vec4<f32>(0.0); var p01 = vec4<f32>(0.0); var p10 = vec4<f32>(0.0); var p11 = vec4<f32>(0.0);
  var p20 = vec4<f32>(0.0); var p21 = vec4<f32>(0.0); var p30 = vec4<f32>(0.0); var p31 = vec4<f32>(0.0);

  let ktiles = (p.dk + 7u) / 8u;
  var ra = vec4<f32>(0.0);
  var rb = vec4<f32>(0.0);
  if (FULL || l_live) {
    ra = row4_a(a_row, lk);
    rb = row4_b(b_row, lk);
  }
#if SPLIT
  // ---- score block A·Bᵀ, 8 columns of dk per step (next step in registers).
  for (var kt = 0u; kt < ktiles; kt++) {
    stash_a(lr, lk, ra);
    stash_b(lr, lk, rb);
    workgroupBarrier();
    if (kt + 1u < ktiles && (FULL || l_live)) {
      ra = row4_a(a_row, (kt + 1u) * 8u + lk);
      rb = row4_b(b_row, (kt + 1u) * 8u + lk);
    }
#unroll k 8
    {
      let a0 = As[{{k}}][pr];
      let a1 = As[{{k}}][pr1];
      let b = Bs[{{k}}][tx];
      p00 = fma(vec4<f32>(b.x), a0, p00); p01 = fma(vec4<f32>(b.x), a1, p01);
      p10 = fma(vec4<f32>(b.y), a0, p10); p11 = fma(vec4<f32>(b.y), a1, p11);
      p20 = fma(vec4<f32>(b.z), a0, p20); p21 = fma(vec4<f32>(b.z), a1, p21);
      p30 = fma(vec4<f32>(b.w), a0, p30); p31 = fma(vec4<f32>(b.w), a1, p31);
    }
#endunroll
    workgroupBarrier();
  }
#else
  // ---- inter product A·KV and score block A·Bᵀ, 8 columns of dk per step (next step in registers). Without
  // a state (chunk 0) zeros are staged: no branch in the inner loop.
  var ry = Pair(vec4<f32>(0.0), vec4<f32>(0.0));
  if (has_kv) { ry = fetch_kv(t, col0, 0u, src); }
  for (var kt = 0u; kt < ktiles; kt++) {
    stash_a(lr, lk, ra);
    stash_b(lr, lk, rb);
    stash_kv(t, ry);
    workgroupBarrier();
    if (kt + 1u < ktiles) {
      let k0 = (kt + 1u) * 8u;
      if (FULL || l_live) {
        ra = row4_a(a_row, k0 + lk);
        rb = row4_b(b_row, k0 + lk);
      }
      if (has_kv) { ry = fetch_kv(t, col0, k0, src); }
    }
#unroll k 8
    {
      let a0 = As[{{k}}][pr];
      let a1 = As[{{k}}][pr1];
      let b = Bs[{{k}}][tx];
      p00 = fma(vec4<f32>(b.x), a0, p00); p01 = fma(vec4<f32>(b.x), a1, p01);
      p10 = fma(vec4<f32>(b.y), a0, p10); p11 = fma(vec4<f32>(b.y), a1, p11);
      p20 = fma(vec4<f32>(b.z), a0, p20); p21 = fma(vec4<f32>(b.z), a1, p21);
      p30 = fma(vec4<f32>(b.w), a0, p30); p31 = fma(vec4<f32>(b.w), a1, p31);
      let y0 = Ys[{{k}}][tx];
      let y1 = Ys[{{k}}][tx1];
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
#endif

  // The masked, decayed score block, k-major for the product with C.
  let i0 = 8u * ty;
  let j0 = 4u * tx;
  Ps[ps_at(j0, pr)] = mask4(p00, i0, j0);
  Ps[ps_at(j0, pr1)] = mask4(p01, i0 + 4u, j0);
  Ps[ps_at(j0 + 1u, pr)] = mask4(p10, i0, j0 + 1u);
  Ps[ps_at(j0 + 1u, pr1)] = mask4(p11, i0 + 4u, j0 + 1u);
  Ps[ps_at(j0 + 2u, pr)] = mask4(p20, i0, j0 + 2u);
  Ps[ps_at(j0 + 2u, pr1)] = mask4(p21, i0 + 4u, j0 + 2u);
  Ps[ps_at(j0 + 3u, pr)] = mask4(p30, i0, j0 + 3u);
  Ps[ps_at(j0 + 3u, pr1)] = mask4(p31, i0 + 4u, j0 + 3u);

#if SPLIT
  // ---- inter product A·KV, 8 columns of dk per step (the score block's registers are free now).
  if (has_kv) {
    var qa = vec4<f32>(0.0);
    if (FULL || l_live) { qa = row4_a(a_row, lk); }
    var ry = fetch_kv(t, col0, 0u, src);
    for (var kt = 0u; kt < ktiles; kt++) {
      stash_a(lr, lk, qa);
      stash_kv(t, ry);
      workgroupBarrier();
      if (kt + 1u < ktiles) {
        let k0 = (kt + 1u) * 8u;
        if (FULL || l_live) { qa = row4_a(a_row, k0 + lk); }
        ry = fetch_kv(t, col0, k0, src);
      }
#unroll k 8
      {
        let a0 = As[{{k}}][pr];
        let a1 = As[{{k}}][pr1];
        let y0 = Ys[{{k}}][tx];
        let y1 = Ys[{{k}}][tx1];
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
  }
#endif

  // Reader-side decay of the inter term: λ^i for row i = 8ty + r.
  var d = vec4<f32>(em1[i0]);
  o00 = fma(o00, d, o00); o01 = fma(o01, d, o01);
  d = vec4<f32>(em1[i0 + 1u]);
  o10 = fma(o10, d, o10); o11 = fma(o11, d, o11);
  d = vec4<f32>(em1[i0 + 2u]);
  o20 = fma(o20, d, o20); o21 = fma(o21, d, o21);
  d = vec4<f32>(em1[i0 + 3u]);
  o30 = fma(o30, d, o30); o31 = fma(o31, d, o31);
  d = vec4<f32>(em1[i0 + 4u]);
  o40 = fma(o40, d, o40); o41 = fma(o41, d, o41);
  d = vec4<f32>(em1[i0 + 5u]);
  o50 = fma(o50, d, o50); o51 = fma(o51, d, o51);
  d = vec4<f32>(em1[i0 + 6u]);
  o60 = fma(o60, d, o60); o61 = fma(o61, d, o61);
  d = vec4<f32>(em1[i0 + 7u]);
  o70 = fma(o70, d, o70); o71 = fma(o71, d, o71);


  // ---- intra product P·C over the chunk's keys, 8 at a time. Staging: vec4 t and t + 128 of the [8][128]
  // tile of C rows (row i / 32, columns 4·(i % 32)..).
  let c_col = col0 + 4u * (t % 32u);
  let c_k = t / 32u;
  let jtiles = (m + 7u) / 8u;
  var rc0 = vec4<f32>(0.0);
  var rc1 = vec4<f32>(0.0);
  if (c_k < m) { rc0 = row4_c(c_head + phys(row0 + c_k) * p.dv, c_col); }
  if (c_k + 4u < m) { rc1 = row4_c(c_head + phys(row0 + c_k + 4u) * p.dv, c_col); }
  for (var kt = 0u; kt < jtiles; kt++) {
    Ys[t / 32u][t % 32u] = rc0;
    Ys[t / 32u + 4u][t % 32u] = rc1;
    workgroupBarrier(); // also orders the Ps stores above before the first reads
    if (kt + 1u < jtiles) {
      let r = (kt + 1u) * 8u + c_k;
      rc0 = vec4<f32>(0.0);
      rc1 = vec4<f32>(0.0);
      if (r < m) { rc0 = row4_c(c_head + phys(row0 + r) * p.dv, c_col); }
      if (r + 4u < m) { rc1 = row4_c(c_head + phys(row0 + r + 4u) * p.dv, c_col); }
    }
    if (kt <= ty) { // keys 8kt.. ≤ rows 8ty + 7: the tiles right of them are masked to zero
#unroll k 8
      {
        let j = kt * 8u + {{k}}u;
        let q0 = Ps[ps_at(j, pr)];
        let q1 = Ps[ps_at(j, pr1)];
        let y0 = Ys[{{k}}][tx];
        let y1 = Ys[{{k}}][tx1];
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
var<workgroup> Xs: array<array<vec4<f32>, 32>, 8>; // [k: 8][dk row: 128 as 32 × vec4]: B rows
var<workgroup> Ys: array<array<vec4<f32>, 32>, 8>; // [k: 8][dv col: 128 as 32 × vec4]: decayed C rows

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
  if (t <= CH) { em1[t] = expm1_neg(-s * f32(t)); }
  workgroupBarrier();

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
  let decay_chunk = vec4<f32>(em1[CH]);

  var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0); var c02 = vec4<f32>(0.0); var c03 = vec4<f32>(0.0);
  var c04 = vec4<f32>(0.0); var c05 = vec4<f32>(0.0); var c06 = vec4<f32>(0.0); var c07 = vec4<f32>(0.0);
  var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0); var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0);
  var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0); var c16 = vec4<f32>(0.0); var c17 = vec4<f32>(0.0);
  let r0 = m0 + ty * 4u;
  let r1 = m0 + 64u + ty * 4u;
  let q0 = n0 + tx * 4u;
  let q1 = n0 + 64u + tx * 4u;

  // Staging: invocation t fetches 4 columns (4·(t % 32)..) of row 8·i + t / 32 of the chunks' rows from B
  // and from C, for step i over the chunks' 8-row tiles (all chunks but a final one have CH rows).
  let lcol = 4u * (t % 32u);
  let lrow = t / 32u;
  let per_chunk = (m + 7u) / 8u;
  let steps = count * per_chunk;
  var rx = vec4<f32>(0.0);
  var ry = vec4<f32>(0.0);
  if (lrow < m) {
    let at = phys(row0 + lrow);
    rx = row4_b(b_head + at * p.dk, m0 + lcol);
    ry = row4_c(c_head + at * p.dv, n0 + lcol);
    ry = fma(ry, vec4<f32>(em1[E - lrow]), ry);
  }
  let none = StateIn(false, false, 0u, 0u, 0.0, 0.0);
  for (var i = 0u; i < steps; i++) {
    Xs[t / 32u][t % 32u] = rx;
    Ys[t / 32u][t % 32u] = ry;
    workgroupBarrier();
    if (i + 1u < steps) {
      let ci = (i + 1u) / per_chunk;
      let r = ((i + 1u) % per_chunk) * 8u + lrow;
      rx = vec4<f32>(0.0);
      ry = vec4<f32>(0.0);
      if (r < m) {
        let at = phys(row0 + ci * CH + r);
        rx = row4_b(b_head + at * p.dk, m0 + lcol);
        ry = row4_c(c_head + at * p.dv, n0 + lcol);
        ry = fma(ry, vec4<f32>(em1[E - r]), ry);
      }
    }
#unroll k 8
    {
      let a0 = Xs[{{k}}][ty];
      let a1 = Xs[{{k}}][ty1];
      let b0 = Ys[{{k}}][tx];
      let b1 = Ys[{{k}}][tx1];
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
    if (!fin && (i + 1u) % per_chunk == 0u) {
      // End of chunk z: L_z to its slot, then decay the sum to the next chunk's first row.
      let out = slots + (z_first + i / per_chunk) * p.dk * p.dv;
      store4(out, r0, q0, c00, none); store4(out, r0 + 1u, q0, c01, none);
      store4(out, r0 + 2u, q0, c02, none); store4(out, r0 + 3u, q0, c03, none);
      store4(out, r1, q0, c04, none); store4(out, r1 + 1u, q0, c05, none);
      store4(out, r1 + 2u, q0, c06, none); store4(out, r1 + 3u, q0, c07, none);
      store4(out, r0, q1, c10, none); store4(out, r0 + 1u, q1, c11, none);
      store4(out, r0 + 2u, q1, c12, none); store4(out, r0 + 3u, q1, c13, none);
      store4(out, r1, q1, c14, none); store4(out, r1 + 1u, q1, c15, none);
      store4(out, r1 + 2u, q1, c16, none); store4(out, r1 + 3u, q1, c17, none);
      c00 = fma(c00, decay_chunk, c00); c01 = fma(c01, decay_chunk, c01);
      c02 = fma(c02, decay_chunk, c02); c03 = fma(c03, decay_chunk, c03);
      c04 = fma(c04, decay_chunk, c04); c05 = fma(c05, decay_chunk, c05);
      c06 = fma(c06, decay_chunk, c06); c07 = fma(c07, decay_chunk, c07);
      c10 = fma(c10, decay_chunk, c10); c11 = fma(c11, decay_chunk, c11);
      c12 = fma(c12, decay_chunk, c12); c13 = fma(c13, decay_chunk, c13);
      c14 = fma(c14, decay_chunk, c14); c15 = fma(c15, decay_chunk, c15);
      c16 = fma(c16, decay_chunk, c16); c17 = fma(c17, decay_chunk, c17);
    }
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
      em1[E],
    );
    let out = p.out_base + head * p.dk * p.dv;
    store4(out, r0, q0, c00, st); store4(out, r0 + 1u, q0, c01, st);
    store4(out, r0 + 2u, q0, c02, st); store4(out, r0 + 3u, q0, c03, st);
    store4(out, r1, q0, c04, st); store4(out, r1 + 1u, q0, c05, st);
    store4(out, r1 + 2u, q0, c06, st); store4(out, r1 + 3u, q0, c07, st);
    store4(out, r0, q1, c10, st); store4(out, r0 + 1u, q1, c11, st);
    store4(out, r0 + 2u, q1, c12, st); store4(out, r0 + 3u, q1, c13, st);
    store4(out, r1, q1, c14, st); store4(out, r1 + 1u, q1, c15, st);
    store4(out, r1 + 2u, q1, c16, st); store4(out, r1 + 3u, q1, c17, st);
  }
}
#endif
