// Causal softmax attention in the FlashAttention-2 style, the baseline Lightning Attention is measured
// against (kernels/softmax_flash.ts): O = softmax((Q Kᵀ)·scale + causal mask) V, scale = 1/√d.
// Variants: FWD (online softmax, saves the row logsumexp L), DQ and DKDV (the backward, recomputing P from
// Q, K and L), DELTA (D_i = Σ_c dO_ic·O_ic, read by the backward).
//
// Tiling (FWD, DQ, DKDV alike): a workgroup of 128 invocations owns a block of 32 rows (queries; keys for
// DKDV) and walks the blocks of 32 columns it interacts with. Score tiles S = X Yᵀ come from rows of X and
// Y staged 32 columns at a time, 2×4 per invocation (dot products of vec4s); P (and dS) go to workgroup
// memory; the products P·Y accumulate in registers, 4 rows × 8 columns per invocation (two groups of 4
// columns 64 apart when the width is 128), with Y staged 16 rows at a time over the staging area.
// Widths d and e are multiples of 4, at most 128 (EP = 64 or 128 columns of accumulator).

struct Params {
  T: u32,
  d: u32,
  e: u32,
  nblk: u32,    // blocks of 32 rows
  scale: f32,
  q_base: u32,  // element offsets of the dispatch's first head inside the bound ranges
  k_base: u32,
  v_base: u32,
  o_base: u32,  // O (FWD: written; DELTA: read)
  do_base: u32,
  l_base: u32,  // L: [heads, T] logsumexp of each row of scaled scores
  dl_base: u32, // D: [heads, T]
  x_base: u32,  // dQ, or dK (DKDV)
  y_base: u32,  // dV (DKDV)
}

#if FWD
@group(0) @binding(0) var<storage, read> Q: array<vec4<f32>>;         // Q: [heads, T, d] f32
@group(0) @binding(1) var<storage, read> K: array<vec4<f32>>;         // K: [heads, T, d] f32
@group(0) @binding(2) var<storage, read> V: array<vec4<f32>>;         // V: [heads, T, e] f32
@group(0) @binding(3) var<storage, read_write> O: array<vec4<f32>>;   // O: [heads, T, e] f32
@group(0) @binding(4) var<storage, read_write> L: array<f32>;         // L: [heads, T] f32
#endif
#if DQ
@group(0) @binding(0) var<storage, read> Q: array<vec4<f32>>;         // Q: [heads, T, d] f32
@group(0) @binding(1) var<storage, read> K: array<vec4<f32>>;         // K: [heads, T, d] f32
@group(0) @binding(2) var<storage, read> V: array<vec4<f32>>;         // V: [heads, T, e] f32
@group(0) @binding(3) var<storage, read> dO: array<vec4<f32>>;        // dO: [heads, T, e] f32
@group(0) @binding(4) var<storage, read> L: array<f32>;               // L: [heads, T] f32
@group(0) @binding(5) var<storage, read> Dl: array<f32>;              // D: [heads, T] f32
@group(0) @binding(6) var<storage, read_write> dX: array<vec4<f32>>;  // dQ: [heads, T, d] f32
#endif
#if DKDV
@group(0) @binding(0) var<storage, read> Q: array<vec4<f32>>;         // Q: [heads, T, d] f32
@group(0) @binding(1) var<storage, read> K: array<vec4<f32>>;         // K: [heads, T, d] f32
@group(0) @binding(2) var<storage, read> V: array<vec4<f32>>;         // V: [heads, T, e] f32
@group(0) @binding(3) var<storage, read> dO: array<vec4<f32>>;        // dO: [heads, T, e] f32
@group(0) @binding(4) var<storage, read> L: array<f32>;               // L: [heads, T] f32
@group(0) @binding(5) var<storage, read> Dl: array<f32>;              // D: [heads, T] f32
@group(0) @binding(6) var<storage, read_write> dX: array<vec4<f32>>;  // dK: [heads, T, d] f32
@group(0) @binding(7) var<storage, read_write> dY: array<vec4<f32>>;  // dV: [heads, T, e] f32
#endif
#if DELTA
@group(0) @binding(0) var<storage, read> O: array<vec4<f32>>;         // O: [heads, T, e] f32
@group(0) @binding(1) var<storage, read> dO: array<vec4<f32>>;        // dO: [heads, T, e] f32
@group(0) @binding(2) var<storage, read_write> Dl: array<f32>;        // D: [heads, T] f32
#endif
@group(1) @binding(0) var<uniform> p: Params;

#if DELTA
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wg.x * 64u + t;
  if (row >= p.T) { return; }
  let head = wg.y;
  let at = (head * p.T + row) * p.e;
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < p.e; c += 4u) {
    acc = fma(O[(p.o_base + at + c) / 4u], dO[(p.do_base + at + c) / 4u], acc);
  }
  Dl[p.dl_base + head * p.T + row] = acc.x + acc.y + acc.z + acc.w;
}
#else

const NT: u32 = 128u;
const EP4: u32 = {{EP4}}u;  // vec4 per staged row of a P·Y operand (EP / 4)
// Workgroup memory (vec4): staging [0, 512) (X and Y chunks, 32×32 each, or 16 rows of a P·Y operand),
// P at [512, 768) and dS at [768, 1024), both [32][32].
const XC: u32 = 0u;
const YC: u32 = 256u;
const PM: u32 = 512u;
const DM: u32 = 768u;
var<workgroup> SM: array<vec4<f32>, 1024>;
var<workgroup> red: array<f32, 256>;   // [32 rows][8 partials]
var<workgroup> rowv: array<f32, 128>;  // FWD: m [0, 32), l [32, 64), α [64, 96), new m [96, 128)

// Which input a staging call reads (a uniform switch the compiler folds at each call site).
const SRC_Q: u32 = 0u;
const SRC_K: u32 = 1u;
const SRC_V: u32 = 2u;
const SRC_DO: u32 = 3u;

fn fetch(src: u32, at: u32) -> vec4<f32> {
  switch (src) {
    case 0u: { return Q[(p.q_base + at) / 4u]; }
    case 1u: { return K[(p.k_base + at) / 4u]; }
    case 2u: { return V[(p.v_base + at) / 4u]; }
#if !FWD
    case 3u: { return dO[(p.do_base + at) / 4u]; }
#endif
    default: { return vec4<f32>(0.0); }
  }
}

// Stages rows [row0, row0 + rows) × columns [col0, col0 + 4·cols4) of `src` (rows of `width` floats,
// head `head`) into SM at `dst`, zero outside [0, T) × [0, width).
fn stage(t: u32, dst: u32, src: u32, head: u32, row0: u32, rows: u32, col0: u32, cols4: u32, width: u32) {
  for (var i = t; i < rows * cols4; i += NT) {
    let r = row0 + i / cols4;
    let col = col0 + (i % cols4) * 4u;
    var v = vec4<f32>(0.0);
    if (r < p.T && col < width) { v = fetch(src, (head * p.T + r) * width + col); }
    SM[dst + i] = v;
  }
}

// Score tile rows 2ti, 2ti+1 × columns 4tj..4tj+3 of the staged chunks: += X Yᵀ over 32 columns.
struct Tile2 {
  r0: vec4<f32>,
  r1: vec4<f32>,
}

fn dot4(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
}

fn scores(acc: ptr<function, Tile2>, ti: u32, tj: u32) {
  for (var k4 = 0u; k4 < 8u; k4++) {
    let x0 = SM[XC + (2u * ti) * 8u + k4];
    let x1 = SM[XC + (2u * ti + 1u) * 8u + k4];
    let y0 = SM[YC + (4u * tj) * 8u + k4];
    let y1 = SM[YC + (4u * tj + 1u) * 8u + k4];
    let y2 = SM[YC + (4u * tj + 2u) * 8u + k4];
    let y3 = SM[YC + (4u * tj + 3u) * 8u + k4];
    (*acc).r0 += dot4(x0, y0, y1, y2, y3);
    (*acc).r1 += dot4(x1, y0, y1, y2, y3);
  }
}

// S = X Yᵀ for rows x0.. of `xs` and rows y0.. of `ys`, over `width` columns, staged 32 at a time.
fn score_tile(t: u32, ti: u32, tj: u32, head: u32, xs: u32, x0: u32, ys: u32, y0: u32, width: u32) -> Tile2 {
  var acc = Tile2(vec4<f32>(0.0), vec4<f32>(0.0));
  for (var c0 = 0u; c0 < width; c0 += 32u) {
    stage(t, XC, xs, head, x0, 32u, c0, 8u, width);
    stage(t, YC, ys, head, y0, 32u, c0, 8u, width);
    workgroupBarrier();
    scores(&acc, ti, tj);
    workgroupBarrier();
  }
  return acc;
}

// Register accumulator: rows 4·orow + q, columns 4·ocol (a_q) and 64 + 4·ocol (b_q, when EP = 128).
struct Acc {
  a0: vec4<f32>,
  a1: vec4<f32>,
  a2: vec4<f32>,
  a3: vec4<f32>,
  b0: vec4<f32>,
  b1: vec4<f32>,
  b2: vec4<f32>,
  b3: vec4<f32>,
}

fn mac4(o: vec4<f32>, a: vec4<f32>, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> vec4<f32> {
  return fma(vec4<f32>(a.x), v0, fma(vec4<f32>(a.y), v1, fma(vec4<f32>(a.z), v2, fma(vec4<f32>(a.w), v3, o))));
}

// acc += M[:, 16h..16h+15] · Y[16h..16h+15, :] with M the [32][32] matrix at `m` and the 16 staged rows
// of Y at the start of SM (EP4 vec4 each).
fn product_half(acc: ptr<function, Acc>, m: u32, h: u32, orow: u32, ocol: u32) {
  for (var jj = 0u; jj < 4u; jj++) {
    let j4 = 4u * h + jj;
    let m0 = SM[m + (4u * orow) * 8u + j4];
    let m1 = SM[m + (4u * orow + 1u) * 8u + j4];
    let m2 = SM[m + (4u * orow + 2u) * 8u + j4];
    let m3 = SM[m + (4u * orow + 3u) * 8u + j4];
    let y = (4u * jj) * EP4 + ocol;
    let y0 = SM[y];
    let y1 = SM[y + EP4];
    let y2 = SM[y + 2u * EP4];
    let y3 = SM[y + 3u * EP4];
    (*acc).a0 = mac4((*acc).a0, m0, y0, y1, y2, y3);
    (*acc).a1 = mac4((*acc).a1, m1, y0, y1, y2, y3);
    (*acc).a2 = mac4((*acc).a2, m2, y0, y1, y2, y3);
    (*acc).a3 = mac4((*acc).a3, m3, y0, y1, y2, y3);
#if E128
    let z0 = SM[y + 16u];
    let z1 = SM[y + EP4 + 16u];
    let z2 = SM[y + 2u * EP4 + 16u];
    let z3 = SM[y + 3u * EP4 + 16u];
    (*acc).b0 = mac4((*acc).b0, m0, z0, z1, z2, z3);
    (*acc).b1 = mac4((*acc).b1, m1, z0, z1, z2, z3);
    (*acc).b2 = mac4((*acc).b2, m2, z0, z1, z2, z3);
    (*acc).b3 = mac4((*acc).b3, m3, z0, z1, z2, z3);
#endif
  }
}

// acc += M · Y[y0 .. y0 + 32] for the 32×32 matrix at `m` (rows of `src` of `width` floats).
fn product(acc: ptr<function, Acc>, t: u32, m: u32, head: u32, src: u32, y0: u32, width: u32, orow: u32, ocol: u32) {
  for (var h = 0u; h < 2u; h++) {
    stage(t, 0u, src, head, y0 + 16u * h, 16u, 0u, EP4, width);
    workgroupBarrier();
    if (4u * ocol < width) { product_half(acc, m, h, orow, ocol); }
    workgroupBarrier();
  }
}

fn scale_acc(acc: ptr<function, Acc>, q: u32, f: f32) {
  let s = vec4<f32>(f);
  switch (q) {
    case 0u: { (*acc).a0 *= s; (*acc).b0 *= s; }
    case 1u: { (*acc).a1 *= s; (*acc).b1 *= s; }
    case 2u: { (*acc).a2 *= s; (*acc).b2 *= s; }
    default: { (*acc).a3 *= s; (*acc).b3 *= s; }
  }
}

// Writes accumulator rows (row0 + 4·orow + q < T) to `dst` (0: O or dX, 1: dY), times `f`.
fn store_acc(acc: ptr<function, Acc>, dst: u32, head: u32, row0: u32, width: u32, orow: u32, ocol: u32, f: f32) {
  for (var q = 0u; q < 4u; q++) {
    let r = row0 + 4u * orow + q;
    if (r >= p.T) { continue; }
    var a = (*acc).a0;
    var b = (*acc).b0;
    if (q == 1u) { a = (*acc).a1; b = (*acc).b1; }
    if (q == 2u) { a = (*acc).a2; b = (*acc).b2; }
    if (q == 3u) { a = (*acc).a3; b = (*acc).b3; }
    let at = (head * p.T + r) * width;
    for (var g = 0u; g < 2u; g++) {
      let col = 4u * ocol + 64u * g;
      let v = select(a, b, g == 1u) * f;
      if (col < width) {
#if FWD
        O[(p.o_base + at + col) / 4u] = v;
#endif
#if DQ
        dX[(p.x_base + at + col) / 4u] = v;
#endif
#if DKDV
        if (dst == 0u) { dX[(p.x_base + at + col) / 4u] = v; } else { dY[(p.y_base + at + col) / 4u] = v; }
#endif
      }
    }
  }
}

fn hmax(v: vec4<f32>) -> f32 {
  return max(max(v.x, v.y), max(v.z, v.w));
}

// Scores of columns j0..j0+3 in row i masked to −1e38 where j > i (causal).
fn causal(x: vec4<f32>, i: u32, j0: u32) -> vec4<f32> {
  var out = x;
  for (var c = 0u; c < 4u; c++) {
    if (j0 + c > i) { out[c] = -1e38; }
  }
  return out;
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let blk = wg.x;
  let head = wg.y;
  let row0 = blk * 32u;
  let ti = t / 8u;   // score tile: rows 2ti, 2ti+1; columns 4tj..4tj+3
  let tj = t % 8u;
  let orow = t / 16u; // accumulator: rows 4orow..4orow+3; columns 4ocol.. (and 64 + 4ocol..)
  let ocol = t % 16u;
  let z = vec4<f32>(0.0);
  var acc = Acc(z, z, z, z, z, z, z, z);
  let r0 = 2u * ti;
  let r1 = 2u * ti + 1u;

#if FWD
  // Per row: running max m (finite start, so a fully masked block leaves it unchanged), sum l, the
  // rescale factor α of the current block and its new max.
  if (t < 32u) {
    rowv[t] = -1e30;
    rowv[32u + t] = 0.0;
  }
  for (var kb = 0u; kb <= blk; kb++) {
    let col0 = kb * 32u;
    let s = score_tile(t, ti, tj, head, SRC_Q, row0, SRC_K, col0, p.d);
    let x0 = causal(s.r0 * p.scale, row0 + r0, col0 + 4u * tj);
    let x1 = causal(s.r1 * p.scale, row0 + r1, col0 + 4u * tj);
    red[r0 * 8u + tj] = hmax(x0);
    red[r1 * 8u + tj] = hmax(x1);
    workgroupBarrier();
    var m0 = rowv[r0];
    var m1 = rowv[r1];
    for (var k = 0u; k < 8u; k++) {
      m0 = max(m0, red[r0 * 8u + k]);
      m1 = max(m1, red[r1 * 8u + k]);
    }
    let p0 = exp(x0 - vec4<f32>(m0));
    let p1 = exp(x1 - vec4<f32>(m1));
    SM[PM + r0 * 8u + tj] = p0;
    SM[PM + r1 * 8u + tj] = p1;
    if (tj == 0u) {
      rowv[96u + r0] = m0;
      rowv[96u + r1] = m1;
    }
    workgroupBarrier();
    red[r0 * 8u + tj] = p0.x + p0.y + p0.z + p0.w;
    red[r1 * 8u + tj] = p1.x + p1.y + p1.z + p1.w;
    workgroupBarrier();
    if (t < 32u) {
      var sum = 0.0;
      for (var k = 0u; k < 8u; k++) { sum += red[t * 8u + k]; }
      let m_new = rowv[96u + t];
      let alpha = exp(rowv[t] - m_new);
      rowv[32u + t] = alpha * rowv[32u + t] + sum;
      rowv[64u + t] = alpha;
      rowv[t] = m_new;
    }
    workgroupBarrier();
    for (var q = 0u; q < 4u; q++) { scale_acc(&acc, q, rowv[64u + 4u * orow + q]); }
    product(&acc, t, PM, head, SRC_V, col0, p.e, orow, ocol);
  }
  for (var q = 0u; q < 4u; q++) { scale_acc(&acc, q, 1.0 / rowv[32u + 4u * orow + q]); }
  store_acc(&acc, 0u, head, row0, p.e, orow, ocol, 1.0);
  if (t < 32u && row0 + t < p.T) { L[p.l_base + head * p.T + row0 + t] = rowv[t] + log(rowv[32u + t]); }
#endif

#if DQ
  // Rows are queries: dQ_i = scale · Σ_j dS_ij K_j, dS = P ⊙ (dO Vᵀ − D_i), P = exp(scale·Q Kᵀ − L_i).
  let i0 = row0 + r0;
  let i1 = row0 + r1;
  let l0 = select(0.0, L[p.l_base + head * p.T + min(i0, p.T - 1u)], i0 < p.T);
  let l1 = select(0.0, L[p.l_base + head * p.T + min(i1, p.T - 1u)], i1 < p.T);
  let d0 = select(0.0, Dl[p.dl_base + head * p.T + min(i0, p.T - 1u)], i0 < p.T);
  let d1 = select(0.0, Dl[p.dl_base + head * p.T + min(i1, p.T - 1u)], i1 < p.T);
  for (var kb = 0u; kb <= blk; kb++) {
    let col0 = kb * 32u;
    let s = score_tile(t, ti, tj, head, SRC_Q, row0, SRC_K, col0, p.d);
    let dp = score_tile(t, ti, tj, head, SRC_DO, row0, SRC_V, col0, p.e);
    let p0 = exp(causal(s.r0 * p.scale, i0, col0 + 4u * tj) - vec4<f32>(l0));
    let p1 = exp(causal(s.r1 * p.scale, i1, col0 + 4u * tj) - vec4<f32>(l1));
    SM[DM + r0 * 8u + tj] = p0 * (dp.r0 - vec4<f32>(d0));
    SM[DM + r1 * 8u + tj] = p1 * (dp.r1 - vec4<f32>(d1));
    workgroupBarrier();
    product(&acc, t, DM, head, SRC_K, col0, p.d, orow, ocol);
  }
  store_acc(&acc, 0u, head, row0, p.d, orow, ocol, p.scale);
#endif

#if DKDV
  // Rows are keys j, columns queries i ≥ j: dV_j = Σ_i P_ij dO_i, dK_j = scale · Σ_i dS_ij Q_i.
  var acc_v = Acc(z, z, z, z, z, z, z, z);
  let j0 = row0 + r0;
  let j1 = row0 + r1;
  for (var qb = blk; qb < p.nblk; qb++) {
    let col0 = qb * 32u;
    let s = score_tile(t, ti, tj, head, SRC_K, row0, SRC_Q, col0, p.d);
    let dp = score_tile(t, ti, tj, head, SRC_V, row0, SRC_DO, col0, p.e);
    var lse = vec4<f32>(0.0);
    var dd = vec4<f32>(0.0);
    var live0 = vec4<f32>(0.0);
    var live1 = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
      let i = col0 + 4u * tj + c;
      if (i < p.T) {
        lse[c] = L[p.l_base + head * p.T + i];
        dd[c] = Dl[p.dl_base + head * p.T + i];
        if (i >= j0) { live0[c] = 1.0; }
        if (i >= j1) { live1[c] = 1.0; }
      }
    }
    let p0 = select(vec4<f32>(0.0), exp(s.r0 * p.scale - lse), live0 > vec4<f32>(0.0));
    let p1 = select(vec4<f32>(0.0), exp(s.r1 * p.scale - lse), live1 > vec4<f32>(0.0));
    SM[PM + r0 * 8u + tj] = p0;
    SM[PM + r1 * 8u + tj] = p1;
    SM[DM + r0 * 8u + tj] = p0 * (dp.r0 - dd);
    SM[DM + r1 * 8u + tj] = p1 * (dp.r1 - dd);
    workgroupBarrier();
    product(&acc_v, t, PM, head, SRC_DO, col0, p.e, orow, ocol);
    product(&acc, t, DM, head, SRC_Q, col0, p.d, orow, ocol);
  }
  store_acc(&acc, 0u, head, row0, p.d, orow, ocol, p.scale);
  store_acc(&acc_v, 1u, head, row0, p.e, orow, ocol, 1.0);
#endif
}
#endif
