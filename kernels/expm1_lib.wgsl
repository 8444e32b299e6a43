// expm1(x) for x ≤ 0, accurate to a few ulp of the result (WGSL has no expm1): the decay factors
// λ^r − 1 = expm1(−s·r) of the Lightning kernels (lightning.wgsl, lightning_chunk.wgsl, lightning_scan.wgsl),
// which prepend this file.
fn expm1_neg(x: f32) -> f32 {
  if (x > -0.25) {
    var r = 1.0 + x * (1.0 / 8.0);
    r = 1.0 + x * (1.0 / 7.0) * r;
    r = 1.0 + x * (1.0 / 6.0) * r;
    r = 1.0 + x * (1.0 / 5.0) * r;
    r = 1.0 + x * (1.0 / 4.0) * r;
    r = 1.0 + x * (1.0 / 3.0) * r;
    r = 1.0 + x * 0.5 * r;
    return x * r;
  }
  return exp(x) - 1.0;
}
