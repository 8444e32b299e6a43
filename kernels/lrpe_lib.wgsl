// LRPE's sin and cos (spec §2.4), shared by the token mixer's input stage (qkv_prep.wgsl) and the fused
// decode step (decode.wgsl), so prefill and decode rotate q and k identically. Prepended to those sources.

// s + e = a + b exactly (Knuth's TwoSum: only correctly rounded additions, no fma needed).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = a + b;
  let bb = s - a;
  return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}

// sin and cos of x to about 1 ulp for |x| < 2^24 (any LRPE angle θ·pos that fp32 can hold), without relying
// on a fused fma (lavapipe's is not fused) and without WGSL's built-in sin/cos, which only promise 2^-11
// absolute error inside [−π, π]. x − j·π/2 is formed exactly: π/2 = C1 + C2 + C3 + C4 + C5 with 12-bit
// C1..C4 and j split into 12-bit halves, so every product is exact; x − jh·4096·C1 is exact by Sterbenz's
// lemma and the other terms are added with compensation. Then minimax polynomials on [−π/4, π/4].
fn sincos(x_in: f32) -> vec2<f32> {
  let x = abs(x_in);
  let j = round(x * 0.636619772367581343);
  let jh = floor(j * (1.0 / 4096.0)) * 4096.0;
  let jl = j - jh;
  var s = x - jh * 0x1.922p+0;
  var c = 0.0;
  var t = two_sum(s, -jl * 0x1.922p+0);
  s = t.x; c += t.y;
  t = two_sum(s, jh * 0x1.2aep-18);
  s = t.x; c += t.y;
  t = two_sum(s, jl * 0x1.2aep-18);
  s = t.x; c += t.y;
  t = two_sum(s, jh * 0x1.deap-31);
  s = t.x; c += t.y;
  t = two_sum(s, jl * 0x1.deap-31);
  s = t.x; c += t.y;
  t = two_sum(s, -jh * 0x1.184p-44);
  s = t.x; c += t.y;
  t = two_sum(s, -jl * 0x1.184p-44);
  s = t.x; c += t.y;
  t = two_sum(s, -j * 0x1.a62634p-58);
  s = t.x; c += t.y;
  let r = s + c;
  let z = r * r;
  let sn = fma(fma(fma(-1.9515295891e-4, z, 8.3321608736e-3), z, -1.6666654611e-1) * z, r, r);
  let cs = fma(fma(fma(fma(2.443315711809948e-5, z, -1.388731625493765e-3), z, 4.166664568298827e-2), z, -0.5), z, 1.0);
  let quadrant = i32(j - 4.0 * floor(j * 0.25));
  var sc: vec2<f32>;
  if (quadrant == 0) { sc = vec2<f32>(sn, cs); }
  else if (quadrant == 1) { sc = vec2<f32>(cs, -sn); }
  else if (quadrant == 2) { sc = vec2<f32>(-sn, -cs); }
  else { sc = vec2<f32>(-cs, sn); }
  if (x_in < 0.0) { sc.x = -sc.x; }
  return sc;
}
