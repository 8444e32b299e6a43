// Kernels of one decode step for a batch of NB ≤ 8 sequences, one token each (spec §5). Decoding is
// bandwidth-bound: every weight is read once per step for all NB sequences, every state element once.
//
//   GEMV: y[b, o] = s_b · Σ_c W[o, c] · x_b[c] + beta · y[b, o]   for W: [out, in] row-major, where
//         x_b[c] = a[b, c] (· bb[b, c] with PROD), and s_b = 1 or, with NORM, s_b = 1/sqrt(mean_c a[b, c]² + eps):
//         SRMSNorm of `a` fused in (every workgroup recomputes the rstd from `a`, which stays in cache).
//         The model uses it as   NORM          x → qkvu, x → [h1 | h2], x → logits
//                                NORM + PROD   o, u → x += out_proj(u ⊙ SRMSNorm(o))   (beta = 1)
//                                PROD          h1, h2 → x += l3(h1 ⊙ h2)               (beta = 1)
//         A workgroup takes R output rows; LANES = 256 / R invocations per row stride through `in` (vec4
//         loads with VEC), then the partial sums of each row meet in workgroup memory. F16W (with VEC): W is
//         stored as f16 (half the bytes of a step), widened exactly and summed in f32.
//   RECUR: one token of the robust recurrence (spec §5.1) with the token mixer's input stage fused in:
//         q, k = SiLU of the q, k columns of qkvu (then LRPE at the sequence's position: dk = 2d), v the v
//         columns, and per (b, h): kv ← λ·kv + kᵀv, o = q·kv, with the fp32 state kv: [B, H, dk, d].
//         A workgroup takes W columns of one (b, h): invocation (pi, jj) updates column jj for the rows
//         i ≡ pi (mod 256 / W); the partial sums of o meet in workgroup memory. With VEC (d a multiple of
//         4) an invocation takes 4 columns and a constant RPT rows, all loaded before any is updated: the
//         step is a few dependent memory round trips, not one per row. The position of the token is
//         seq[b].len − 1 (seq.len counts the token being processed).

#if GEMV
struct Params {
  rows: u32,     // output rows of this dispatch
  cols: u32,     // in
  y_stride: u32, // elements between two sequences' rows of y
  a_stride: u32, // ... of a
  b_stride: u32, // ... of bb
  base_a: u32,
  base_b: u32,
  base_w: u32,
  base_y: u32,
  beta: f32,
  eps: f32,
}
@group(1) @binding(0) var<uniform> p: Params;

const NB: u32 = {{NB}}u;       // sequences
const R: u32 = {{R}}u;         // output rows per workgroup
const LANES: u32 = {{LANES}}u; // invocations per row: 256 / R

#if VEC
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;   // a: [NB, a_stride] f32, read as vec4
@group(0) @binding(1) var<storage, read> bb: array<vec4<f32>>;  // bb: [NB, b_stride] f32 (PROD; else = a)
#if F16W
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;   // w: [out, in] f16, 4 per element
#else
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;   // w: [out, in] f32
#endif
#else
@group(0) @binding(0) var<storage, read> a: array<f32>;         // a: [NB, a_stride] f32
@group(0) @binding(1) var<storage, read> bb: array<f32>;        // bb: [NB, b_stride] f32 (PROD; else = a)
@group(0) @binding(2) var<storage, read> w: array<f32>;         // w: [out, in] f32
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // y: [NB, y_stride] f32 (columns 0..rows here)


// Weights i·4 .. i·4 + 3 of the binding (VEC), widened from f16 with F16W (exact).
#if VEC
fn wv4(i: u32) -> vec4<f32> {
#if F16W
  let h = w[i];
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
#else
  return w[i];
#endif
}
#endif

// a's unit i of sequence b (a vec4 with VEC), the factor PROD multiplies it by, and their product.
#if VEC
alias unit = vec4<f32>;
const UNIT: u32 = 4u;
fn sq(v: unit) -> f32 { return dot(v, v); }
#else
alias unit = f32;
const UNIT: u32 = 1u;
fn sq(v: unit) -> f32 { return v * v; }
#endif
fn ain(b: u32, i: u32) -> unit { return a[(p.base_a + b * p.a_stride) / UNIT + i]; }
fn bin(b: u32, i: u32) -> unit { return bb[(p.base_b + b * p.b_stride) / UNIT + i]; }

fn xin(b: u32, i: u32) -> unit {
#if PROD
  return ain(b, i) * bin(b, i);
#else
  return ain(b, i);
#endif
}

// This invocation's share of Σ_c a[b, c]² (the SRMSNorm of `a`): the units first, first + stride, ...
// (vec4 units with VEC).
fn partial_sq(b: u32, first: u32, stride: u32) -> f32 {
  var ss = 0.0;
  for (var i = first; i < p.cols / UNIT; i += stride) { ss += sq(ain(b, i)); }
  return ss;
}

#if SGROWS
// One subgroup per output row (R = 256 / S rows per workgroup, S the adapter's fixed subgroup size): the S
// lanes stride through `in` with four loads in flight, then subgroupAdd; no workgroup memory, no barrier.
// With NORM each subgroup sums a² itself (a stays in cache), from the loads the products use.
const S: u32 = {{S}}u;

#if VEC
fn mac(wv: vec4<f32>, x: vec4<f32>) -> f32 { return dot(wv, x); }
#else
fn mac(wv: f32, x: f32) -> f32 { return wv * x; }
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let o = (wg.y * nwg.x + wg.x) * R + lid / S;
  let units = p.cols / UNIT;
  let wrow = (p.base_w + o * p.cols) / UNIT;
  // Σ a² of the NORM comes from the same loads as the products (lane takes the same units of a in both),
  // so the norm adds no dependent round trip to the weights' loads.
  var acc: array<f32, NB>;
  var ss: array<f32, NB>;
#unroll bi NB
  {
    const b = {{bi}}u;
    acc[b] = 0.0;
    ss[b] = 0.0;
  }
#endunroll
  if (o < p.rows) {
    var i = lane;
    for (; i + 3u * S < units; i += 4u * S) {
#if VEC
      let w0 = wv4(wrow + i);
      let w1 = wv4(wrow + i + S);
      let w2 = wv4(wrow + i + 2u * S);
      let w3 = wv4(wrow + i + 3u * S);
#else
      let w0 = w[wrow + i];
      let w1 = w[wrow + i + S];
      let w2 = w[wrow + i + 2u * S];
      let w3 = w[wrow + i + 3u * S];
#endif
#unroll bi NB
      {
        const b = {{bi}}u;
        let x0 = ain(b, i);
        let x1 = ain(b, i + S);
        let x2 = ain(b, i + 2u * S);
        let x3 = ain(b, i + 3u * S);
#if NORM
        ss[b] += (sq(x0) + sq(x1)) + (sq(x2) + sq(x3));
#endif
#if PROD
        acc[b] += (mac(w0, x0 * bin(b, i)) + mac(w1, x1 * bin(b, i + S))) +
          (mac(w2, x2 * bin(b, i + 2u * S)) + mac(w3, x3 * bin(b, i + 3u * S)));
#else
        acc[b] += (mac(w0, x0) + mac(w1, x1)) + (mac(w2, x2) + mac(w3, x3));
#endif
      }
#endunroll
    }
    for (; i < units; i += S) {
#if VEC
      let wv = wv4(wrow + i);
#else
      let wv = w[wrow + i];
#endif
#unroll bi NB
      {
        const b = {{bi}}u;
        let x = ain(b, i);
#if NORM
        ss[b] += sq(x);
#endif
#if PROD
        acc[b] += mac(wv, x * bin(b, i));
#else
        acc[b] += mac(wv, x);
#endif
      }
#endunroll
    }
  }
  var scale: array<f32, NB>;
#unroll bi NB
  {
    const b = {{bi}}u;
#if NORM
    scale[b] = inverseSqrt(subgroupAdd(ss[b]) / f32(p.cols) + p.eps);
#else
    scale[b] = 1.0;
#endif
  }
#endunroll
#unroll bi NB
  {
    const b = {{bi}}u;
    acc[b] = subgroupAdd(acc[b]);
  }
#endunroll
  if (lane == 0u && o < p.rows) {
#unroll bi NB
    {
      const b = {{bi}}u;
      let yi = p.base_y + b * p.y_stride + o;
      var v = acc[b] * scale[b];
      if (p.beta != 0.0) { v = fma(p.beta, y[yi], v); }
      y[yi] = v;
    }
#endunroll
  }
}
#else
var<workgroup> part: array<f32, {{PART}}>;                        // [NB][256] partial sums

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
  let row_in = lid / LANES;
  let lane = lid % LANES;
  let o = (wg.y * nwg.x + wg.x) * R + row_in;
  var acc: array<f32, NB>;
#unroll bi NB
  {
    const b = {{bi}}u;
    acc[b] = 0.0;
  }
#endunroll
  if (o < p.rows) {
#if VEC
    // Four loads in flight per round (the loop's bound is not a constant, so the driver keeps it rolled).
    let wrow = (p.base_w + o * p.cols) / 4u;
    let units = p.cols / 4u;
    var i = lane;
    for (; i + 3u * LANES < units; i += 4u * LANES) {
      let w0 = wv4(wrow + i);
      let w1 = wv4(wrow + i + LANES);
      let w2 = wv4(wrow + i + 2u * LANES);
      let w3 = wv4(wrow + i + 3u * LANES);
#unroll bi NB
      {
        const b = {{bi}}u;
        acc[b] += (dot(w0, xin(b, i)) + dot(w1, xin(b, i + LANES))) +
          (dot(w2, xin(b, i + 2u * LANES)) + dot(w3, xin(b, i + 3u * LANES)));
      }
#endunroll
    }
    for (; i < units; i += LANES) {
      let wv = wv4(wrow + i);
#unroll bi NB
      {
        const b = {{bi}}u;
        acc[b] += dot(wv, xin(b, i));
      }
#endunroll
    }
#else
    let wrow = p.base_w + o * p.cols;
    for (var i = lane; i < p.cols; i += LANES) {
      let wv = w[wrow + i];
#unroll bi NB
      {
        const b = {{bi}}u;
        acc[b] = fma(wv, xin(b, i), acc[b]);
      }
#endunroll
    }
#endif
  }
  var scale: array<f32, NB>;
#unroll bi NB
  {
    const b = {{bi}}u;
#if NORM
    scale[b] = inverseSqrt(wg_sum(partial_sq(b, lid, 256u), lid, sg_size) / f32(p.cols) + p.eps);
#else
    scale[b] = 1.0;
#endif
  }
#endunroll
#unroll bi NB
  {
    const b = {{bi}}u;
    part[b * 256u + lid] = acc[b];
  }
#endunroll
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
#unroll bi NB
      {
        const b = {{bi}}u;
        part[b * 256u + lid] += part[b * 256u + lid + s];
      }
#endunroll
    }
    workgroupBarrier();
  }
  if (lane == 0u && o < p.rows) {
#unroll bi NB
    {
      const b = {{bi}}u;
      let yi = p.base_y + b * p.y_stride + o;
      var v = part[b * 256u + lid] * scale[b];
      if (p.beta != 0.0) { v = fma(p.beta, y[yi], v); }
      y[yi] = v;
    }
#endunroll
  }
}
#endif
#endif

#if RECUR
struct Params {
  rows: u32,         // workgroups: B · H · slices
  heads: u32,        // H
  d: u32,            // head dim (of v, o, and of q, k before LRPE)
  dk: u32,           // d, or 2d with LRPE
  slices: u32,       // column slices per head: ⌈d / W⌉
  qkvu_stride: u32,  // elements between two sequences' rows of qkvu (4E)
  base_qkvu: u32,
  base_theta: u32,
  base_seq: u32,
  base_decay: u32,
  base_kv: u32,
  base_o: u32,
}
@group(1) @binding(0) var<uniform> p: Params;

const W: u32 = {{W}}u;     // columns per workgroup (a power of two ≤ 256; VEC: a multiple of 4)
const P: u32 = 256u / W;   // row groups

@group(0) @binding(0) var<storage, read> qkvu: array<f32>;        // qkvu: [B, qkvu_stride] f32 (q | k | v | u)
@group(0) @binding(1) var<storage, read> theta: array<f32>;       // theta: [H, d] f32 (unused without LRPE)
@group(0) @binding(2) var<storage, read> seq: array<u32>;         // seq: [B, 4] u32, seq[b, 0] = len
@group(0) @binding(3) var<storage, read> decay: array<f32>;       // decay: [H] f32, λ = fl(e^−s) per head
#if VEC
@group(0) @binding(4) var<storage, read_write> kv: array<vec4<f32>>;  // kv: [B, H, dk, d] f32 state, as vec4
@group(0) @binding(5) var<storage, read_write> o: array<vec4<f32>>;   // o: [B, H, d] f32, as vec4
#else
@group(0) @binding(4) var<storage, read_write> kv: array<f32>;    // kv: [B, H, dk, d] f32 state
@group(0) @binding(5) var<storage, read_write> o: array<f32>;     // o: [B, H, d] f32
#endif

var<workgroup> qs: array<f32, 512>;   // q̃ of the head [dk]
var<workgroup> ks: array<f32, 512>;   // k̃ of the head [dk]
var<workgroup> vs: array<f32, W>;     // v of the workgroup's columns
#if VEC
var<workgroup> part: array<vec4<f32>, 256>;
#else
var<workgroup> part: array<f32, 256>;
#endif

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wid = wg.y * nwg.x + wg.x;
  if (wid >= p.rows) { return; }
  let slice = wid % p.slices;
  let bh = wid / p.slices;
  let h = bh % p.heads;
  let b = bh / p.heads;
  let big_e = p.heads * p.d;
  let row = p.base_qkvu + b * p.qkvu_stride;
  for (var j = lid; j < p.d; j += 256u) {
    let qr = qkvu[row + h * p.d + j];
    let kr = qkvu[row + big_e + h * p.d + j];
    let sq = qr * sigmoid(qr);
    let sk = kr * sigmoid(kr);
#if LRPE
    let pos = seq[p.base_seq + b * 4u] - 1u;
    let sc = sincos(theta[p.base_theta + h * p.d + j] * f32(pos));
    qs[j] = sq * sc.y;
    qs[p.d + j] = sq * sc.x;
    ks[j] = sk * sc.y;
    ks[p.d + j] = sk * sc.x;
#else
    qs[j] = sq;
    ks[j] = sk;
#endif
  }
  let c0 = slice * W;
  if (lid < W) {
    var vv = 0.0;
    if (c0 + lid < p.d) { vv = qkvu[row + 2u * big_e + h * p.d + c0 + lid]; }
    vs[lid] = vv;
  }
  workgroupBarrier();
  let lambda = decay[p.base_decay + h];
#if VEC
  // Invocation (ri, cj) takes the 4 columns c0 + 4·cj … and the rows ri, ri + P4, … (RPT of them, loads
  // first so they are all in flight at once); the row groups' sums of o meet in a tree.
  const W4: u32 = W / 4u;
  const P4: u32 = 256u / W4;
  let cj = lid % W4;
  let ri = lid / W4;
  let d4 = p.d / 4u;
  let j4 = c0 / 4u + cj;
  var acc = vec4<f32>(0.0);
  if (j4 < d4) {
    let vj = vec4<f32>(vs[4u * cj], vs[4u * cj + 1u], vs[4u * cj + 2u], vs[4u * cj + 3u]);
    let base = p.base_kv / 4u + bh * p.dk * d4 + j4;
    var old: array<vec4<f32>, {{RPT}}>;
#unroll r RPT
    {
      const r = {{r}}u;
      let i = ri + r * P4;
      if (i < p.dk) { old[r] = kv[base + i * d4]; }
    }
#endunroll
#unroll r RPT
    {
      const r = {{r}}u;
      let i = ri + r * P4;
      if (i < p.dk) {
        let s = fma(vec4<f32>(lambda), old[r], ks[i] * vj);
        kv[base + i * d4] = s;
        acc = fma(vec4<f32>(qs[i]), s, acc);
      }
    }
#endunroll
  }
  part[lid] = acc;
  workgroupBarrier();
#unroll t LOG_P4
  {
    const half = P4 >> ({{t}}u + 1u);
    if (ri < half) { part[lid] += part[lid + half * W4]; }
    workgroupBarrier();
  }
#endunroll
  if (ri == 0u && j4 < d4) {
    o[p.base_o / 4u + bh * d4 + j4] = part[lid];
  }
#else
  let jj = lid % W;
  let pi = lid / W;
  let j = c0 + jj;
  var acc = 0.0;
  if (j < p.d) {
    let vj = vs[jj];
    for (var i = pi; i < p.dk; i += P) {
      let idx = p.base_kv + (bh * p.dk + i) * p.d + j;
      let s = fma(lambda, kv[idx], ks[i] * vj);
      kv[idx] = s;
      acc = fma(qs[i], s, acc);
    }
  }
  part[lid] = acc;
  workgroupBarrier();
  if (lid < W && c0 + lid < p.d) {
    var total = 0.0;
    for (var r = 0u; r < P; r++) { total += part[r * W + lid]; }
    o[p.base_o + bh * p.d + c0 + lid] = total;
  }
#endif
}
#endif
