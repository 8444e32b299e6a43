// Cross-entropy of one row of logits per workgroup, numerically stable in fp32: one pass for the running
// max and sum of exponentials (online softmax), one pass writing d(logits) over the logits in place.
//   loss[r] = logsumexp(logits[r]) − logits[r, target[r]]          (0 where target = ignore_index)
//   GRAD: logits[r, c] ← scale · (softmax(logits[r])[c] − [c = target[r]])   (0 where ignored)
//   HITS: hits[r] = 1 where the target's logit is larger than every other logit of the row (the greedy
//         prediction is the target; a tie is a miss), else 0 (0 where ignored): accuracy for evaluation

struct Params {
  rows: u32,
  vocab: u32,
  base_logits: u32,
  base_targets: u32,
  base_loss: u32,
  ignore_index: i32,
  scale: f32,
  base_hits: u32,
}
@group(1) @binding(0) var<uniform> p: Params;

#if GRAD
@group(0) @binding(0) var<storage, read_write> logits: array<f32>; // logits: [rows, vocab] f32 → d(logits)
#else
@group(0) @binding(0) var<storage, read> logits: array<f32>;       // logits: [rows, vocab] f32
#endif
@group(0) @binding(1) var<storage, read> targets: array<i32>;      // targets: [rows] i32
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;   // loss: [rows] f32, per-row NLL
#if HITS
@group(0) @binding(3) var<storage, read_write> hits: array<f32>;   // hits: [rows] f32
#endif

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
  let r = wg.y * nwg.x + wg.x;
  if (r >= p.rows) { return; }
  let row = p.base_logits + r * p.vocab;
  let tgt = targets[p.base_targets + r];
  let ignored = tgt == p.ignore_index || tgt < 0 || u32(tgt) >= p.vocab;
  var target_logit = 0.0;
  if (!ignored) { target_logit = logits[row + u32(tgt)]; } // read before any invocation overwrites it

  var m = -3.0e38;
  var s = 0.0;
#if HITS
  var above = 0.0; // other logits ≥ the target's
#endif
  for (var c = lid; c < p.vocab; c += 256u) {
    let v = logits[row + c];
#if HITS
    if (!ignored && i32(c) != tgt && v >= target_logit) { above += 1.0; }
#endif
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  let row_max = wg_max(m, lid, sg_size);
  let row_sum = wg_sum(s * exp(m - row_max), lid, sg_size);
  let lse = row_max + log(row_sum);
  if (lid == 0u) {
    if (ignored) { loss[p.base_loss + r] = 0.0; } else { loss[p.base_loss + r] = lse - target_logit; }
  }
#if HITS
  let n_above = wg_sum(above, lid, sg_size);
  if (lid == 0u) { hits[p.base_hits + r] = select(0.0, 1.0, !ignored && n_above == 0.0); }
#endif
#if GRAD
  for (var c = lid; c < p.vocab; c += 256u) {
    var g = 0.0;
    if (!ignored) {
      g = exp(logits[row + c] - lse);
      if (i32(c) == tgt) { g -= 1.0; }
      g *= p.scale;
    }
    logits[row + c] = g;
  }
#endif
}
