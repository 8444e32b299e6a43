// Token sampling on the GPU, one 256-invocation workgroup per sequence, so the next token id never leaves
// the GPU. For the sequence's logits [V] (rewritten in place) and its counters seq = (len, stream):
//   1. (LOGPROBS) log-sum-exp of the raw logits, for the chosen token's log-probability under the model;
//   2. repeat penalty over the distinct tokens of the last `window` positions (llama.cpp's rule: a
//      positive logit is divided by the penalty, a negative one multiplied), then the banned token → −∞;
//   3. temp = 0: argmax, the lowest id on ties. Otherwise, with m_i = exp((l_i − max)/temp):
//   4. top-k: the k-th largest logit by a radix select on the order-preserving u32 keys of the floats
//      (4 rounds of 8-bit histograms); ties at the k-th value are all kept. For k ≤ 256 the candidates
//      are first narrowed to the logits ≥ the k-th largest of the invocations' own maxima (by rank) and
//      gathered in workgroup memory (one count and one gather pass), and the select (by rank), top-p,
//      min-p and the draw work on them in the same order and with the same sums as passes over the
//      vocabulary would;
//   5. top-p: the largest key threshold τ whose kept mass Σ_{key ≥ τ} m is still ≥ top_p × the top-k mass,
//      found bit by bit (32 rounds of a mass sum) over the top-k candidates, gathered in workgroup memory
//      when there are at most CAP of them;
//   6. min-p: keep m_i ≥ min_p (p_i ≥ min_p·p_max);
//   7. the draw: u = hash(seed, stream, position) ∈ [0, 1), the first kept token in the fixed order
//      (unit mod 256, id), unit = ⌊id / 4⌋, whose cumulative mass exceeds u × the kept mass (inverse CDF).
// The logits are read in units of 4 (vec4; rows of `stride` logits, a multiple of 4): invocation t owns
// the units t, t + 256, ...: every pass is a coalesced strided loop and every sum has a fixed order, so the
// same seed gives the same tokens on a device. One workgroup per sequence has few loads in flight, so the
// passes over the vocabulary issue U unit loads (units j, j + 256, ..., j + (U − 1)·256; U = 8 on a GPU:
// 32 logits) before using them, in the same order as one at a time. The chosen token goes to cur (the next
// step's input), the history ring, and row out_row of out (with its log-probability); len advances.

struct Params {
  vocab: u32,
  stride: u32,    // logits between two sequences' rows (a multiple of 4, ≥ vocab)
  nseq: u32,      // sequences (the stride of out's rows)
  hist_w: u32,    // slots of the history ring per sequence
  window: u32,    // repeat_last_n (≤ hist_w)
  out_row: u32,   // row of out this step writes
  top_k: u32,     // 0 = off
  banned: u32,    // a token never drawn (--ignore-eos), ≥ vocab = none
  seed: u32,
  flags: u32,     // bit 0: log-probabilities
  base_logits: u32,
  base_hist: u32,
  base_seq: u32,
  base_cur: u32,
  base_out: u32,
  base_info: u32,
  temp: f32,      // 0 = greedy
  top_p: f32,     // 1 = off
  min_p: f32,     // 0 = off
  penalty: f32,   // 1 = off
}
@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read_write> logits: array<vec4<f32>>; // logits: [nseq, stride] f32 as vec4 (penalized in place)
@group(0) @binding(1) var<storage, read_write> hist: array<u32>;   // hist: [nseq, hist_w] u32, token of position i at i mod hist_w
@group(0) @binding(2) var<storage, read_write> seq: array<u32>;    // seq: [nseq, 4] u32: len, stream, 0, 0
@group(0) @binding(3) var<storage, read_write> cur: array<u32>;    // cur: [nseq] u32, the next step's input token
@group(0) @binding(4) var<storage, read_write> out: array<u32>;    // out: [rows, nseq, 2] u32: token, bits of its logprob
@group(0) @binding(5) var<storage, read_write> info: array<f32>;   // info: [nseq, 4] f32: smallest kept logit, kept mass, kept count, u

const NT: u32 = 256u;
const CAP: u32 = 512u;       // top-k candidates gathered in workgroup memory for the top-p search
const PMAX: u32 = 1024u;     // longest repeat-penalty window
const NONE: u32 = 0xffffffffu;

var<workgroup> mv: array<f32, 256>;           // per-invocation values (argmax, partial masses)
var<workgroup> mi: array<u32, 256>;           // per-invocation ids / counts
var<workgroup> bins: array<atomic<u32>, 256>;
var<workgroup> cand_key: array<u32, CAP>;    // gathered candidates, in the order (unit mod NT, id)
var<workgroup> cand_m: array<f32, CAP>;      // ... their masses
var<workgroup> cand_id: array<u32, CAP>;     // ... their ids
var<workgroup> cand_l: array<f32, CAP>;      // ... their logits
var<workgroup> shared_n: u32;
var<workgroup> pen_raw: array<f32, PMAX>;     // raw logit of a penalized token, at its first window entry
var<workgroup> counter: atomic<u32>;
var<workgroup> kth: atomic<u32>;
var<workgroup> shared_u: vec4<u32>;
var<workgroup> shared_f: vec4<f32>;

const U: u32 = {{U}}u;       // unit loads in flight per invocation in a pass over the vocabulary (the
                             // loops over them are unrolled, `#unroll uu U`: a loop would keep them in memory)

// Units (4 logits) of a row: ⌈V / 4⌉; ids past V in the last one are never used.
fn units() -> u32 {
  return (p.vocab + 3u) / 4u;
}

// U units j, j + NT, ..., j + (U − 1)·NT of the row at lb (in units; clamped: a load past the end is
// issued but never used).
fn load_u(lb: u32, j: u32) -> array<vec4<f32>, U> {
  let last = units() - 1u;
  var v: array<vec4<f32>, U>;
#unroll uu U
  v[{{uu}}] = logits[lb + min(j + {{uu}}u * NT, last)];
#endunroll
  return v;
}

// The logit of id i of the row at lb (in units), and its update.
fn logit(lb: u32, i: u32) -> f32 {
  return logits[lb + i / 4u][i % 4u];
}

fn set_logit(lb: u32, i: u32, x: f32) {
  logits[lb + i / 4u][i % 4u] = x;
}

fn neg_inf() -> f32 {
  return bitcast<f32>(0xff800000u);
}

// Order-preserving map of floats to u32: larger key ⇔ larger float.
fn key_of(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn mix32(x: u32) -> u32 {
  var h = x;
  h ^= h >> 16u;
  h *= 0x7feb352du;
  h ^= h >> 15u;
  h *= 0x846ca68bu;
  h ^= h >> 16u;
  return h;
}

// u ∈ [0, 1) with 24 random bits from (seed, stream, position); mirrored by samplerUniform in sample_ref.ts.
fn uniform01(seed: u32, stream: u32, pos: u32) -> f32 {
  let h = mix32(mix32(mix32(seed ^ 0x9e3779b9u) ^ stream) ^ pos);
  return f32(h >> 8u) * (1.0 / 16777216.0);
}

fn mass(l: f32, mx: f32, inv_t: f32) -> f32 {
  return exp((l - mx) * inv_t);
}

// Kept mass Σ m over keys ≥ tau: over the gathered candidates (n of them), or over the whole vocabulary.
fn mass_above(tau: u32, tk: u32, gathered: bool, n: u32, lb: u32, mx: f32, inv_t: f32, lid: u32,
              sg_size: u32) -> f32 {
  var s = 0.0;
  if (gathered) {
    let t = max(tau, tk);
    for (var i = lid; i < n; i += NT) {
      if (cand_key[i] >= t) { s += cand_m[i]; }
    }
  } else {
    let t = max(tau, tk);
    for (var j0 = lid; j0 < units(); j0 += U * NT) {
      let ls = load_u(lb, j0);
#unroll uu U
#unroll c 4
      {
        let l = ls[{{uu}}][{{c}}];
        if (4u * (j0 + {{uu}}u * NT) + {{c}}u < p.vocab && key_of(l) >= t) { s += mass(l, mx, inv_t); }
      }
#endunroll
#endunroll
    }
  }
  return wg_sum(s, lid, sg_size);
}

// Invocation 0's step of a radix select: the highest digit whose bin, with the bins above it, reaches
// `remaining`; returns (digit, what is left to count inside its bin).
fn pick_digit(remaining: u32) -> vec4<u32> {
  var cum = 0u;
  var d = 255u;
  loop {
    let c = atomicLoad(&bins[d]);
    if (cum + c >= remaining || d == 0u) { break; }
    cum += c;
    d -= 1u;
  }
  return vec4<u32>(d, remaining - cum, 0u, 0u);
}

// The k-th largest (ties counted) of at most CAP keys in workgroup memory (`keys_in_mi`: the NT keys in mi,
// else the n gathered candidates), by rank: the smallest key with fewer than k keys above it. Every
// invocation compares its keys with all of them (broadcast reads): a few µs, where radix rounds over so few
// keys contend on a handful of bins. Uniform control flow.
fn kth_by_rank(keys_in_mi: bool, n: u32, k: u32, lid: u32) -> u32 {
  if (lid == 0u) { atomicStore(&kth, NONE); }
  workgroupBarrier();
  let total = select(n, NT, keys_in_mi);
  for (var e = lid; e < total; e += NT) {
    let x = select(cand_key[e], mi[e], keys_in_mi);
    var above = 0u;
    for (var j = 0u; j < total; j++) {
      let y = select(cand_key[j], mi[j], keys_in_mi);
      above += select(0u, 1u, y > x);
    }
    if (above < k) { atomicMin(&kth, x); }
  }
  workgroupBarrier();
  if (lid == 0u) { shared_u = vec4<u32>(atomicLoad(&kth), 0u, 0u, 0u); }
  return workgroupUniformLoad(&shared_u).x;
}

// The k-th largest key (ties counted) of the logits of the sequence at lb, by 4 rounds of 8-bit histograms
// over the whole vocabulary.
fn kth_largest(lb: u32, k: u32, lid: u32) -> u32 {
  var prefix = 0u;
  var mask = 0u;
  var remaining = k;
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    atomicStore(&bins[lid], 0u);
    workgroupBarrier();
    for (var j0 = lid; j0 < units(); j0 += U * NT) {
      let ls = load_u(lb, j0);
#unroll uu U
#unroll c 4
      {
        let key = key_of(ls[{{uu}}][{{c}}]);
        if (4u * (j0 + {{uu}}u * NT) + {{c}}u < p.vocab && (key & mask) == prefix) {
          atomicAdd(&bins[(key >> shift) & 0xffu], 1u);
        }
      }
#endunroll
#endunroll
    }
    workgroupBarrier();
    if (lid == 0u) { shared_u = pick_digit(remaining); }
    let sel = workgroupUniformLoad(&shared_u);
    prefix |= sel.x << shift;
    mask |= 0xffu << shift;
    remaining = sel.y;
  }
  return prefix;
}

// Counts the logits with keys ≥ t (the total to shared_n) and, when there are at most CAP, gathers them
// with their masses, ids and logits in the order (unit mod NT, id): invocation lid's own are at
// [result.x, result.x + result.y), in rising id order, as a pass over the vocabulary would visit them.
fn gather_from(t: u32, lb: u32, mx: f32, inv_t: f32, lid: u32) -> vec2<u32> {
  let V = p.vocab;
  var own = 0u;
  for (var j0 = lid; j0 < units(); j0 += U * NT) {
    let ls = load_u(lb, j0);
#unroll uu U
#unroll c 4
    if (4u * (j0 + {{uu}}u * NT) + {{c}}u < V && key_of(ls[{{uu}}][{{c}}]) >= t) { own += 1u; }
#endunroll
#endunroll
  }
  // exclusive prefix sum of the counts over the invocations (Hillis–Steele in mi)
  mi[lid] = own;
  workgroupBarrier();
  for (var off = 1u; off < NT; off <<= 1u) {
    var below = 0u;
    if (lid >= off) { below = mi[lid - off]; }
    workgroupBarrier();
    mi[lid] += below;
    workgroupBarrier();
  }
  if (lid == NT - 1u) { shared_n = mi[lid]; }
  let n = workgroupUniformLoad(&shared_n);
  let at0 = mi[lid] - own;
  if (n <= CAP) {
    var at = at0;
    for (var j0 = lid; j0 < units(); j0 += U * NT) {
      let ls = load_u(lb, j0);
#unroll uu U
#unroll c 4
      {
        let i = 4u * (j0 + {{uu}}u * NT) + {{c}}u;
        let l = ls[{{uu}}][{{c}}];
        let key = key_of(l);
        if (i < V && key >= t) {
          cand_key[at] = key;
          cand_m[at] = mass(l, mx, inv_t);
          cand_id[at] = i;
          cand_l[at] = l;
          at += 1u;
        }
      }
#endunroll
#endunroll
    }
  }
  workgroupBarrier();
  return vec2<u32>(at0, own);
}

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
  let sq = wg.y * nwg.x + wg.x;
  if (sq >= p.nseq) { return; }
  let V = p.vocab;
  let lb = (p.base_logits + sq * p.stride) / 4u; // the row, in units
  let hb = p.base_hist + sq * p.hist_w;
  let len = seq[p.base_seq + sq * 4u];
  let stream = seq[p.base_seq + sq * 4u + 1u];

  // 1. log-sum-exp of the raw logits
  var raw_lse = 0.0;
  if ((p.flags & 1u) != 0u) {
    var m = neg_inf();
    for (var j0 = lid; j0 < units(); j0 += U * NT) {
      let l = load_u(lb, j0);
#unroll uu U
#unroll c 4
      if (4u * (j0 + {{uu}}u * NT) + {{c}}u < V) { m = max(m, l[{{uu}}][{{c}}]); }
#endunroll
#endunroll
    }
    let gm = wg_max(m, lid, sg_size);
    var s = 0.0;
    for (var j0 = lid; j0 < units(); j0 += U * NT) {
      let l = load_u(lb, j0);
#unroll uu U
#unroll c 4
      if (4u * (j0 + {{uu}}u * NT) + {{c}}u < V) { s += exp(l[{{uu}}][{{c}}] - gm); }
#endunroll
#endunroll
    }
    raw_lse = gm + log(wg_sum(s, lid, sg_size));
  }

  // 2. repeat penalty over the distinct tokens of the window, then the ban
  let wl = min(p.window, len);
  if (p.penalty != 1.0) {
    for (var i = lid; i < wl; i += NT) {
      let t = hist[hb + (len - wl + i) % p.hist_w];
      var first = t < V;
      for (var j = 0u; j < i; j++) {
        if (hist[hb + (len - wl + j) % p.hist_w] == t) {
          first = false;
          break;
        }
      }
      if (first) {
        let raw = logit(lb, t);
        pen_raw[i] = raw;
        set_logit(lb, t, select(raw * p.penalty, raw / p.penalty, raw > 0.0));
      }
    }
  }
  storageBarrier();
  workgroupBarrier();
  if (lid == 0u && p.banned < V) { set_logit(lb, p.banned, neg_inf()); }
  storageBarrier();
  workgroupBarrier();

  // 3. max and argmax (lowest id on ties); NaN or +inf anywhere is an error
  var bm = neg_inf();
  var bi = NONE;
  var bad = 0u;
  for (var j0 = lid; j0 < units(); j0 += U * NT) {
    let ls = load_u(lb, j0);
#unroll uu U
#unroll c 4
    {
      let i = 4u * (j0 + {{uu}}u * NT) + {{c}}u;
      let l = ls[{{uu}}][{{c}}];
      if (i < V) {
        let bits = bitcast<u32>(l) & 0x7fffffffu;
        if (bits > 0x7f800000u || bitcast<u32>(l) == 0x7f800000u) { bad = 1u; }
        if (l > bm) {
          bm = l;
          bi = i;
        }
      }
    }
#endunroll
#endunroll
  }
  if (lid == 0u) { atomicStore(&counter, 0u); }
  workgroupBarrier();
  if (bad != 0u) { atomicAdd(&counter, 1u); }
  mv[lid] = bm;
  mi[lid] = bi;
  workgroupBarrier();
  for (var s = NT / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = mv[lid + s];
      let oi = mi[lid + s];
      if (ov > mv[lid] || (ov == mv[lid] && oi < mi[lid])) {
        mv[lid] = ov;
        mi[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var flag = 0u;
    if (atomicLoad(&counter) != 0u || mi[0] == NONE) { flag = 1u; }
    shared_u = vec4<u32>(mi[0], flag, 0u, 0u);
    shared_f = vec4<f32>(mv[0], 0.0, 0.0, 0.0);
  }
  let top = workgroupUniformLoad(&shared_u);
  let mx = workgroupUniformLoad(&shared_f).x;
  var chosen = top.x;
  var threshold = mx;
  var kept_mass = 1.0;
  var kept_count = 1.0;
  var u = 0.0;
  if (top.y != 0u) {
    chosen = NONE;
  } else if (p.temp > 0.0) {
    let inv_t = 1.0 / p.temp;
    // 4. top-k threshold. With k ≤ NT every logit of the top k is ≥ t1, the k-th largest of the
    // invocations' own maxima (the k invocations holding those have k logits ≥ t1 between them): the
    // logits ≥ t1 are gathered, when at most CAP, and the threshold is selected among them, and so are the
    // passes of steps 6 and 7. Otherwise (no top-k, k > NT, too many candidates: many ties) radix rounds
    // over the whole vocabulary.
    var tk = 0u;
    var gathered = false;
    var n = 0u;
    var own = vec2<u32>(0u, 0u); // this invocation's candidates: [own.x, own.x + own.y)
    if (p.top_k > 0u && p.top_k < V) {
      if (p.top_k <= NT) {
        mi[lid] = key_of(bm); // mi's argmax partials were read before `top` was loaded
        let t1 = kth_by_rank(true, 0u, p.top_k, lid);
        own = gather_from(t1, lb, mx, inv_t, lid);
        n = workgroupUniformLoad(&shared_n);
        gathered = n <= CAP;
        if (gathered) { tk = kth_by_rank(false, n, p.top_k, lid); }
      }
      if (!gathered) { tk = kth_largest(lb, p.top_k, lid); }
    }
    // 5. top-p threshold; the top-k candidates are gathered first (when few) if step 4 did not
    var tp = tk;
    if (p.top_p < 1.0) {
      if (!gathered) {
        own = gather_from(tk, lb, mx, inv_t, lid);
        n = workgroupUniformLoad(&shared_n);
        gathered = n <= CAP;
      }
      let goal = p.top_p * mass_above(tk, tk, gathered, n, lb, mx, inv_t, lid, sg_size);
      var tau = 0u;
      for (var bit = 31i; bit >= 0i; bit--) {
        let c = tau | (1u << u32(bit));
        if (mass_above(c, tk, gathered, n, lb, mx, inv_t, lid, sg_size) >= goal) { tau = c; }
      }
      tp = max(tau, tk);
    }
    // 6, 7. min-p, then the draw by inverse CDF in the order (unit mod 256, id): over the invocation's own
    // candidates when gathered (they hold every kept token, in that order), else over its ids
    var part = 0.0;
    var count = 0u;
    var smallest = mx;
    if (gathered) {
      for (var j = own.x; j < own.x + own.y; j++) {
        let m = cand_m[j];
        if (cand_key[j] >= tp && m >= p.min_p) {
          part += m;
          count += 1u;
          smallest = min(smallest, cand_l[j]);
        }
      }
    } else {
      for (var j0 = lid; j0 < units(); j0 += U * NT) {
        let ls = load_u(lb, j0);
#unroll uu U
#unroll c 4
        {
          let l = ls[{{uu}}][{{c}}];
          let m = mass(l, mx, inv_t);
          if (4u * (j0 + {{uu}}u * NT) + {{c}}u < V && key_of(l) >= tp && m >= p.min_p) {
            part += m;
            count += 1u;
            smallest = min(smallest, l);
          }
        }
#endunroll
#endunroll
      }
    }
    mv[lid] = part;
    mi[lid] = count;
    workgroupBarrier(); // the candidates' logits are read above before cand_l holds the minima below
    cand_l[lid] = smallest;
    u = uniform01(p.seed, stream, len);
    workgroupBarrier();
    if (lid == 0u) {
      var z = 0.0;
      var n = 0u;
      var low = mx;
      for (var t = 0u; t < NT; t++) {
        z += mv[t];
        n += mi[t];
        low = min(low, cand_l[t]);
      }
      let goal = u * z;
      var cum = 0.0;
      var owner = NONE;
      var last = NONE;
      var before = 0.0;
      for (var t = 0u; t < NT; t++) {
        let s = mv[t];
        if (s > 0.0) {
          last = t;
          if (owner == NONE && cum + s > goal) {
            owner = t;
            before = cum;
          }
        }
        cum += s;
      }
      if (owner == NONE) {
        owner = last;
        before = cum - mv[last];
      }
      shared_u = vec4<u32>(owner, n, 0u, 0u);
      shared_f = vec4<f32>(before, goal, z, low);
    }
    let pick = workgroupUniformLoad(&shared_u);
    let pf = workgroupUniformLoad(&shared_f);
    workgroupBarrier(); // every invocation has read shared_u before the owner rewrites it
    kept_mass = pf.z;
    threshold = pf.w;
    kept_count = f32(pick.y);
    if (lid == pick.x) {
      var c = pf.x;
      var found = NONE;
      var last = NONE;
      if (gathered) {
        for (var j = own.x; j < own.x + own.y; j++) {
          let m = cand_m[j];
          if (cand_key[j] >= tp && m >= p.min_p && m > 0.0) {
            last = cand_id[j];
            c += m;
            if (c > pf.y) {
              found = cand_id[j];
              break;
            }
          }
        }
      }
      for (var j0 = lid; j0 < units() && found == NONE && !gathered; j0 += U * NT) {
        let ls = load_u(lb, j0);
#unroll uu U
#unroll cc 4
        {
          let i = 4u * (j0 + {{uu}}u * NT) + {{cc}}u;
          let l = ls[{{uu}}][{{cc}}];
          let m = mass(l, mx, inv_t);
          if (found == NONE && i < V && key_of(l) >= tp && m >= p.min_p && m > 0.0) {
            last = i;
            c += m;
            if (c > pf.y) { found = i; }
          }
        }
#endunroll
#endunroll
      }
      if (found == NONE) { found = last; }
      shared_u = vec4<u32>(found, 0u, 0u, 0u);
    }
    chosen = workgroupUniformLoad(&shared_u).x;
  }

  // the chosen token's raw logit (penalized tokens kept theirs at their first window entry)
  if (lid == 0u) { atomicStore(&counter, NONE); }
  workgroupBarrier();
  if (p.penalty != 1.0 && chosen != NONE) {
    for (var i = lid; i < wl; i += NT) {
      if (hist[hb + (len - wl + i) % p.hist_w] == chosen) { atomicMin(&counter, i); }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    var token = chosen;
    var lp = 0.0;
    if (chosen != NONE) {
      let first = atomicLoad(&counter);
      var raw = 0.0;
      if (first != NONE) { raw = pen_raw[first]; } else { raw = logit(lb, chosen); }
      lp = raw - raw_lse;
    }
    let o = p.base_out + (p.out_row * p.nseq + sq) * 2u;
    out[o] = token;
    out[o + 1u] = bitcast<u32>(lp);
    if (token == NONE) { token = 0u; }
    cur[p.base_cur + sq] = token;
    hist[hb + len % p.hist_w] = token;
    seq[p.base_seq + sq * 4u] = len + 1u;
    let fi = p.base_info + sq * 4u;
    info[fi] = threshold;
    info[fi + 1u] = kept_mass;
    info[fi + 2u] = kept_count;
    info[fi + 3u] = u;
  }
}
