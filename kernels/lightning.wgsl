// Decayed causal linear attention by the Lightning Attention-2 block algorithm (spec §4.3), for one head:
//   O_t = Σ_{u ≤ t} λ^(t−u) (A_t·B_u) C_u,   λ = e^(−s)
// in logical time t. With A, B, C = Q, K, V this is the forward; reading time backwards (p.reverse)
// it is every gradient of the backward: dQ = fwd(dO, V, K), dK = rev(V, dO, Q), dV = rev(K, Q, dO).
//
// One workgroup owns (a slice of W columns of C and O, one head, one chunk of rows). It keeps the slice of
// the carried state KV[:, slice] (dk × W, fp32) in workgroup memory, decayed to the first row of the current
// block (the 0-based convention of the Triton kernels), and walks the chunk's blocks of BT rows in order:
//   S     = (A_b B_bᵀ) ⊙ M,  M_ij = λ^(i−j) for i ≥ j          (intra block, left product)
//   O_b   = S C_b + diag(λ^r) (A_b KV)                         (inter block through the state)
//   KV    = λ^BT KV + (diag(λ^(BT−r)) B_b)ᵀ C_b
// The sequential variant is one chunk per head. The block-parallel variant runs this kernel twice: first
// with OUT off and p.store = 1 to get every chunk's own contribution to the state, then (after the scan in
// lightning_scan.wgsl) with p.init = 1, each chunk starting from the state at its first row. A sequence that
// continues an earlier one (chunked evaluation, long prefills) starts from the caller's state kv_{t0−1}:
// the sequential variant reads it with p.init = 2 (decayed once, to row 0), the block-parallel variant
// seeds the scan with it.
//
// Work per block is staged through workgroup memory in chunks of DC columns of A and B (so any dk ≤ 256
// fits); 4×8 register tiles with vec4 operands (12 vec4 loads from workgroup memory per 128 FMAs):
// invocations [0, ST) own tiles of S, [ST, ST+OT) tiles of O (first A·KV, then + S·C), and all share the
// update of KV (tiles of KR rows × 4 columns). VEC_K / VEC_V load A, B / C, O as vec4 (dk / dv % 4 == 0).
//
// Decay factors: em1[r] = expm1(−s·r) for r ∈ [0, BT], computed once per workgroup (accurate also for the
// tiny rates of the last layer, where λ^BT = 1 − 1e-4), and applied as x·λ^r = fma(x, em1[r], x): the carried
// state is multiplied by λ^BT once per block, so a rounded λ^BT would drift by (blocks × rounding); with
// fma the relative error per block is that of em1 (~1e-7 of 1e-4), not of λ^BT.

struct Params {
  T: u32,
  dk: u32,
  dv: u32,
  H: u32,
  head0: u32,     // global (batch·head) index of this dispatch's first head (for the rate)
  a_base: u32,    // element offsets of this dispatch's first head inside the bound ranges
  b_base: u32,
  c_base: u32,
  o_base: u32,
  kv_base: u32,
  st_base: u32,
  chunk_len: u32, // rows per chunk (a multiple of BT)
  nchunks: u32,   // chunks per head
  z0: u32,        // chunk of workgroup z = 0
  reverse: u32,   // 1: logical row i is stored at row T − 1 − i
  init: u32,      // 0: start from zero; 1: from kv_in slot z (a state at the chunk's first row); 2: from
                  //    λ · kv_in slot z (a caller's state kv_{t0−1} after the token before row 0)
  store: u32,     // 0: nothing; 1: write the chunk's final KV to kv_out slot z; 2: the last chunk writes
                  //    the state decayed to the last row, kv_{T−1}, to kv_out [head]
}

#if OUT
@group(0) @binding(0) var<storage, read> slopes: array<f32>;        // slopes: [H] f32 (rate s; λ = e^−s)
#if VEC_K
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;       // A: [heads, T, dk] f32 (reader rows: q)
#else
@group(0) @binding(1) var<storage, read> A: array<f32>;             // A: [heads, T, dk] f32 (reader rows: q)
#endif
#if VEC_K
@group(0) @binding(2) var<storage, read> Bm: array<vec4<f32>>;      // B: [heads, T, dk] f32 (writer rows: k)
#else
@group(0) @binding(2) var<storage, read> Bm: array<f32>;            // B: [heads, T, dk] f32 (writer rows: k)
#endif
#if VEC_V
@group(0) @binding(3) var<storage, read> C: array<vec4<f32>>;       // C: [heads, T, dv] f32 (values: v)
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>; // O: [heads, T, dv] f32
#else
@group(0) @binding(3) var<storage, read> C: array<f32>;             // C: [heads, T, dv] f32 (values: v)
@group(0) @binding(4) var<storage, read_write> O: array<f32>;       // O: [heads, T, dv] f32
#endif
@group(0) @binding(5) var<storage, read> kv_in: array<f32>;         // kv_in: [heads, nchunks, dk, dv] f32
                                                                    //   (init 2: [heads, dk, dv])
@group(0) @binding(6) var<storage, read_write> kv_out: array<f32>;  // kv_out: [heads, dk, dv] f32 (store 2)
#else
@group(0) @binding(0) var<storage, read> slopes: array<f32>;        // slopes: [H] f32
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
@group(0) @binding(3) var<storage, read> kv_in: array<f32>;         // kv_in: [heads, nchunks, dk, dv] f32
@group(0) @binding(4) var<storage, read_write> kv_out: array<f32>;  // kv_out: [heads, nchunks, dk, dv] (store 1)
                                                                    //   or [heads, dk, dv] (store 2) f32
#endif
@group(1) @binding(0) var<uniform> p: Params;

const BT: u32 = {{BT}}u;       // rows per block
const BT4: u32 = {{BT4}}u;
const BT8: u32 = {{BT8}}u;
const W: u32 = {{W}}u;         // columns of C/O per workgroup
const W4: u32 = {{W4}}u;
const W8: u32 = {{W8}}u;
const DC: u32 = {{DC}}u;       // columns of A/B staged at a time
const DC4: u32 = {{DC4}}u;
const DKMAX: u32 = {{DKMAX}}u; // rows of KV held (dk rounded up)
const NT: u32 = {{NT}}u;       // invocations
const ST: u32 = {{ST}}u;       // invocations owning a 4×8 tile of S: (BT/4)·(BT/8)
const OT: u32 = {{OT}}u;       // invocations owning a 4×8 tile of O: (BT/4)·(W/8)
const KR: u32 = {{KR}}u;       // rows per KV-update tile (× 4 columns)
const KVT: u32 = {{KVT}}u;     // KV-update tiles per staged chunk: (DC/KR)·(W/4)
const BS: u32 = {{BS}}u;       // where the staged B rows start in AB (vec4 index)

// OUT: A rows at [0, BS), B rows at [BS, 2·BS), both [BT][DC] row-major; after the dk loop S [BT][BT] at 0.
var<workgroup> AB: array<vec4<f32>, {{AB_LEN}}>;
var<workgroup> Cs: array<vec4<f32>, {{CS_LEN}}>;  // [BT][W] block of C
var<workgroup> KV: array<vec4<f32>, {{KV_LEN}}>;  // [DKMAX][W] carried state slice
var<workgroup> em1: array<f32, {{BT1}}>;          // expm1(−s·r), r ∈ [0, BT]
var<workgroup> kd: array<f32, {{BT}}>;            // writer-side decay of row r of the block (0: padding)


fn phys(i: u32) -> u32 {
  return select(i, p.T - 1u - i, p.reverse != 0u);
}

// Rows [rb, rb + m) of B (and A), columns [c0, c0 + DC), zero-padded, into AB.
fn stage_rows(t: u32, rb: u32, m: u32, c0: u32, a_head: u32, b_head: u32) {
#if VEC_K
  for (var i = t; i < BT * DC4; i += NT) {
    let r = i / DC4;
    let col = c0 + (i % DC4) * 4u;
    var x = vec4<f32>(0.0);
#if OUT
    var y = vec4<f32>(0.0);
#endif
    if (r < m && col < p.dk) { // dk % 4 == 0: the whole vec4 is in range
      let at = (phys(rb + r) * p.dk + col) / 4u;
      x = Bm[b_head / 4u + at];
#if OUT
      y = A[a_head / 4u + at];
#endif
    }
    AB[BS + i] = x;
#if OUT
    AB[i] = y;
#endif
  }
#else
  for (var i = t; i < BT * DC; i += NT) {
    let r = i / DC;
    let k = i % DC;
    let col = c0 + k;
    var x = 0.0;
#if OUT
    var y = 0.0;
#endif
    if (r < m && col < p.dk) {
      let at = phys(rb + r) * p.dk + col;
      x = Bm[b_head + at];
#if OUT
      y = A[a_head + at];
#endif
    }
    AB[BS + r * DC4 + k / 4u][k % 4u] = x;
#if OUT
    AB[r * DC4 + k / 4u][k % 4u] = y;
#endif
  }
#endif
}

// Rows [rb, rb + m) of C, columns [col0, col0 + W), zero-padded, into Cs.
fn stage_values(t: u32, rb: u32, m: u32, col0: u32, c_head: u32) {
#if VEC_V
  for (var i = t; i < BT * W4; i += NT) {
    let r = i / W4;
    let col = col0 + (i % W4) * 4u;
    var x = vec4<f32>(0.0);
    if (r < m && col < p.dv) { x = C[(c_head + phys(rb + r) * p.dv + col) / 4u]; }
    Cs[i] = x;
  }
#else
  for (var i = t; i < BT * W; i += NT) {
    let r = i / W;
    let w = i % W;
    let col = col0 + w;
    var x = 0.0;
    if (r < m && col < p.dv) { x = C[c_head + phys(rb + r) * p.dv + col]; }
    Cs[r * W4 + w / 4u][w % 4u] = x;
  }
#endif
}

#if OUT
// Row i of S at columns j0..j0+3, masked (j > i → 0) and decayed by λ^(i−j).
fn mask_row(v: vec4<f32>, i: u32, j0: u32) -> vec4<f32> {
  var out = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    let j = j0 + c;
    if (i >= j) { out[c] = fma(v[c], em1[i - j], v[c]); }
  }
  return out;
}

// o += a.x·v0 + a.y·v1 + a.z·v2 + a.w·v3
fn mac4(o: vec4<f32>, a: vec4<f32>, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> vec4<f32> {
  return fma(vec4<f32>(a.x), v0, fma(vec4<f32>(a.y), v1, fma(vec4<f32>(a.z), v2, fma(vec4<f32>(a.w), v3, o))));
}

// Columns j0..j0+3 of row a of S (dot products with rows b0..b3).
fn dot4(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
}

// Stores row i (logical, < m) of O at columns col..col+7.
fn store_row(o_head: u32, rb: u32, i: u32, m: u32, col: u32, x0: vec4<f32>, x1: vec4<f32>) {
  if (i >= m) { return; }
  let at = o_head + phys(rb + i) * p.dv + col;
#if VEC_V
  if (col < p.dv) { O[at / 4u] = x0; }
  if (col + 4u < p.dv) { O[at / 4u + 1u] = x1; }
#else
  for (var c = 0u; c < 4u; c++) {
    if (col + c < p.dv) { O[at + c] = x0[c]; }
    if (col + 4u + c < p.dv) { O[at + 4u + c] = x1[c]; }
  }
#endif
}
#endif

@compute @workgroup_size({{NT}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let col0 = wg.x * W;
  let head = wg.y;
  let z = p.z0 + wg.z;
  let s = slopes[(p.head0 + head) % p.H];
  for (var r = t; r <= BT; r += NT) { em1[r] = expm1_neg(-s * f32(r)); }

  let row0 = z * p.chunk_len;
  let row_end = min(p.T, row0 + p.chunk_len);
  let nblk = select(0u, (row_end - row0 + BT - 1u) / BT, row_end > row0);
  let final_state = p.store == 2u && z + 1u == p.nchunks;
  let b_head = p.b_base + head * p.T * p.dk;
  let c_head = p.c_base + head * p.T * p.dv;
#if OUT
  let a_head = p.a_base + head * p.T * p.dk;
  let o_head = p.o_base + head * p.T * p.dv;
#else
  let a_head = 0u;
#endif

  // The state at the chunk's first row (λ·kv_{t0−1} from a caller's state: em1 is not ready yet, so the
  // factor is computed here).
  let kv_slot = p.kv_base + (head * p.nchunks + z) * p.dk * p.dv;
  let init_decay = vec4<f32>(select(0.0, expm1_neg(-s), p.init == 2u));
  for (var i = t; i < DKMAX * W4; i += NT) {
    var v = vec4<f32>(0.0);
    let row = i / W4;
    let col = col0 + (i % W4) * 4u;
    if (p.init != 0u && row < p.dk) {
      let at = kv_slot + row * p.dv + col;
      for (var c = 0u; c < 4u; c++) {
        if (col + c < p.dv) { v[c] = kv_in[at + c]; }
      }
      v = fma(v, init_decay, v);
    }
    KV[i] = v;
  }
  workgroupBarrier();

#if OUT
  // Tiles: S rows sr·4.., columns sc·8..; O rows orow·4.., columns col0 + ocol·8...
  let sr = t / BT8;
  let sc = t % BT8;
  let orow = (t - ST) / W8; // meaningful for t ∈ [ST, ST + OT)
  let ocol = (t - ST) % W8;
  let is_s = t < ST;
  let is_o = t >= ST && t < ST + OT;
  let s_live = sr * 4u + 3u >= sc * 8u; // tiles wholly above the diagonal stay zero
#endif

  for (var blk = 0u; blk < nblk; blk++) {
    let rb = row0 + blk * BT;
    let m = min(BT, row_end - rb);
    let last = blk + 1u == nblk;
#if OUT
    let update = !last || p.store != 0u; // the KV after the last block only matters when stored
#else
    let update = true;
#endif
    // Exponent of the block's decay of KV: BT (to the next block's first row), or m − 1 for the state
    // decayed to the last row (the true length of a partial last block, spec §4.4).
    let E = select(BT, m - 1u, last && final_state);
    for (var r = t; r < BT; r += NT) {
      if (r < m) { kd[r] = 1.0 + em1[E - r]; } else { kd[r] = 0.0; }
    }
    stage_values(t, rb, m, col0, c_head);

#if OUT
    var x00 = vec4<f32>(0.0); // row q, columns 0..3 (x_q0) and 4..7 (x_q1) of this invocation's tile
    var x01 = vec4<f32>(0.0);
    var x10 = vec4<f32>(0.0);
    var x11 = vec4<f32>(0.0);
    var x20 = vec4<f32>(0.0);
    var x21 = vec4<f32>(0.0);
    var x30 = vec4<f32>(0.0);
    var x31 = vec4<f32>(0.0);
#endif
    for (var c0 = 0u; c0 < p.dk; c0 += DC) {
      stage_rows(t, rb, m, c0, a_head, b_head);
      workgroupBarrier();

#if OUT
      if (is_s && s_live) {
        for (var k4 = 0u; k4 < DC4; k4++) {
          let a0 = AB[(sr * 4u) * DC4 + k4];
          let a1 = AB[(sr * 4u + 1u) * DC4 + k4];
          let a2 = AB[(sr * 4u + 2u) * DC4 + k4];
          let a3 = AB[(sr * 4u + 3u) * DC4 + k4];
          let bb = BS + (sc * 8u) * DC4 + k4;
          let b0 = AB[bb];
          let b1 = AB[bb + DC4];
          let b2 = AB[bb + 2u * DC4];
          let b3 = AB[bb + 3u * DC4];
          let b4 = AB[bb + 4u * DC4];
          let b5 = AB[bb + 5u * DC4];
          let b6 = AB[bb + 6u * DC4];
          let b7 = AB[bb + 7u * DC4];
          x00 += dot4(a0, b0, b1, b2, b3);
          x01 += dot4(a0, b4, b5, b6, b7);
          x10 += dot4(a1, b0, b1, b2, b3);
          x11 += dot4(a1, b4, b5, b6, b7);
          x20 += dot4(a2, b0, b1, b2, b3);
          x21 += dot4(a2, b4, b5, b6, b7);
          x30 += dot4(a3, b0, b1, b2, b3);
          x31 += dot4(a3, b4, b5, b6, b7);
        }
      } else if (is_o) {
        for (var k4 = 0u; k4 < DC4; k4++) {
          let a0 = AB[(orow * 4u) * DC4 + k4];
          let a1 = AB[(orow * 4u + 1u) * DC4 + k4];
          let a2 = AB[(orow * 4u + 2u) * DC4 + k4];
          let a3 = AB[(orow * 4u + 3u) * DC4 + k4];
          let kr = (c0 + k4 * 4u) * W4 + ocol * 2u;
          let v00 = KV[kr];
          let v01 = KV[kr + 1u];
          let v10 = KV[kr + W4];
          let v11 = KV[kr + W4 + 1u];
          let v20 = KV[kr + 2u * W4];
          let v21 = KV[kr + 2u * W4 + 1u];
          let v30 = KV[kr + 3u * W4];
          let v31 = KV[kr + 3u * W4 + 1u];
          x00 = mac4(x00, a0, v00, v10, v20, v30);
          x01 = mac4(x01, a0, v01, v11, v21, v31);
          x10 = mac4(x10, a1, v00, v10, v20, v30);
          x11 = mac4(x11, a1, v01, v11, v21, v31);
          x20 = mac4(x20, a2, v00, v10, v20, v30);
          x21 = mac4(x21, a2, v01, v11, v21, v31);
          x30 = mac4(x30, a3, v00, v10, v20, v30);
          x31 = mac4(x31, a3, v01, v11, v21, v31);
        }
      }
      workgroupBarrier(); // KV rows [c0, c0 + DC) are read before they are updated
#endif

      if (update) {
        let decay = vec4<f32>(em1[E]);
        for (var tile = t; tile < KVT; tile += NT) {
          let kr0 = (tile / W4) * KR; // first KV row of the tile inside the staged chunk
          let w4 = tile % W4;
          var acc0 = vec4<f32>(0.0);
#if KR2
          var acc1 = vec4<f32>(0.0);
#endif
#if KR4
          var acc1 = vec4<f32>(0.0);
          var acc2 = vec4<f32>(0.0);
          var acc3 = vec4<f32>(0.0);
#endif
          for (var r = 0u; r < m; r++) {
            let cv = Cs[r * W4 + w4] * kd[r];
            let bv = AB[BS + r * DC4 + kr0 / 4u];
#if KR4
            acc0 = fma(vec4<f32>(bv.x), cv, acc0);
            acc1 = fma(vec4<f32>(bv.y), cv, acc1);
            acc2 = fma(vec4<f32>(bv.z), cv, acc2);
            acc3 = fma(vec4<f32>(bv.w), cv, acc3);
#endif
#if KR2
            let b2 = select(bv.zw, bv.xy, (kr0 & 3u) == 0u);
            acc0 = fma(vec4<f32>(b2.x), cv, acc0);
            acc1 = fma(vec4<f32>(b2.y), cv, acc1);
#endif
#if KR1
            acc0 = fma(vec4<f32>(bv[kr0 & 3u]), cv, acc0);
#endif
          }
          let at = (c0 + kr0) * W4 + w4;
          KV[at] = fma(decay, KV[at], KV[at]) + acc0;
#if KR2
          KV[at + W4] = fma(decay, KV[at + W4], KV[at + W4]) + acc1;
#endif
#if KR4
          KV[at + W4] = fma(decay, KV[at + W4], KV[at + W4]) + acc1;
          KV[at + 2u * W4] = fma(decay, KV[at + 2u * W4], KV[at + 2u * W4]) + acc2;
          KV[at + 3u * W4] = fma(decay, KV[at + 3u * W4], KV[at + 3u * W4]) + acc3;
#endif
        }
      }
      workgroupBarrier(); // the staged rows are read before the next chunk overwrites them
    }

#if OUT
    if (is_s) {
      let i0 = sr * 4u;
      let j0 = sc * 8u;
      let jv = sc * 2u;
      AB[i0 * BT4 + jv] = mask_row(x00, i0, j0);
      AB[i0 * BT4 + jv + 1u] = mask_row(x01, i0, j0 + 4u);
      AB[(i0 + 1u) * BT4 + jv] = mask_row(x10, i0 + 1u, j0);
      AB[(i0 + 1u) * BT4 + jv + 1u] = mask_row(x11, i0 + 1u, j0 + 4u);
      AB[(i0 + 2u) * BT4 + jv] = mask_row(x20, i0 + 2u, j0);
      AB[(i0 + 2u) * BT4 + jv + 1u] = mask_row(x21, i0 + 2u, j0 + 4u);
      AB[(i0 + 3u) * BT4 + jv] = mask_row(x30, i0 + 3u, j0);
      AB[(i0 + 3u) * BT4 + jv + 1u] = mask_row(x31, i0 + 3u, j0 + 4u);
    } else if (is_o) {
      // Reader-side decay of the inter-block term: λ^r.
      let i0 = orow * 4u;
      let d0 = vec4<f32>(em1[i0]);
      let d1 = vec4<f32>(em1[i0 + 1u]);
      let d2 = vec4<f32>(em1[i0 + 2u]);
      let d3 = vec4<f32>(em1[i0 + 3u]);
      x00 = fma(x00, d0, x00);
      x01 = fma(x01, d0, x01);
      x10 = fma(x10, d1, x10);
      x11 = fma(x11, d1, x11);
      x20 = fma(x20, d2, x20);
      x21 = fma(x21, d2, x21);
      x30 = fma(x30, d3, x30);
      x31 = fma(x31, d3, x31);
    }
    workgroupBarrier();
    if (is_o) {
      for (var j4 = 0u; j4 <= orow; j4++) { // S is zero right of the diagonal
        let p0 = AB[(orow * 4u) * BT4 + j4];
        let p1 = AB[(orow * 4u + 1u) * BT4 + j4];
        let p2 = AB[(orow * 4u + 2u) * BT4 + j4];
        let p3 = AB[(orow * 4u + 3u) * BT4 + j4];
        let cr = (j4 * 4u) * W4 + ocol * 2u;
        let v00 = Cs[cr];
        let v01 = Cs[cr + 1u];
        let v10 = Cs[cr + W4];
        let v11 = Cs[cr + W4 + 1u];
        let v20 = Cs[cr + 2u * W4];
        let v21 = Cs[cr + 2u * W4 + 1u];
        let v30 = Cs[cr + 3u * W4];
        let v31 = Cs[cr + 3u * W4 + 1u];
        x00 = mac4(x00, p0, v00, v10, v20, v30);
        x01 = mac4(x01, p0, v01, v11, v21, v31);
        x10 = mac4(x10, p1, v00, v10, v20, v30);
        x11 = mac4(x11, p1, v01, v11, v21, v31);
        x20 = mac4(x20, p2, v00, v10, v20, v30);
        x21 = mac4(x21, p2, v01, v11, v21, v31);
        x30 = mac4(x30, p3, v00, v10, v20, v30);
        x31 = mac4(x31, p3, v01, v11, v21, v31);
      }
      let i0 = orow * 4u;
      let col = col0 + ocol * 8u;
      store_row(o_head, rb, i0, m, col, x00, x01);
      store_row(o_head, rb, i0 + 1u, m, col, x10, x11);
      store_row(o_head, rb, i0 + 2u, m, col, x20, x21);
      store_row(o_head, rb, i0 + 3u, m, col, x30, x31);
    }
    workgroupBarrier(); // S, Cs and the staged rows are read before the next block overwrites them
#endif
  }

  if (p.store == 1u || final_state) {
    let slot = select(head, head * p.nchunks + z, p.store == 1u);
    let base = p.st_base + slot * p.dk * p.dv;
    for (var i = t; i < p.dk * W4; i += NT) {
      let row = i / W4;
      let col = col0 + (i % W4) * 4u;
      let v = KV[i];
      for (var c = 0u; c < 4u; c++) {
        if (col + c < p.dv) { kv_out[base + row * p.dv + col + c] = v[c]; }
      }
    }
  }
}
