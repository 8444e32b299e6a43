import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { packParams, preprocess } from "../kernels/wgsl.ts";

Deno.test("preprocess keeps the branch that matches, nested, with substitutions", () => {
  const src = [
    "a",
    "#if X",
    "x {{N}}",
    "#if !Y",
    "not y",
    "#else",
    "y",
    "#endif",
    "#else",
    "no x",
    "#endif",
    "z",
  ].join("\n");
  assert.equal(preprocess("t", src, { X: true, Y: false, N: 4 }), "a\nx 4\nnot y\nz");
  assert.equal(preprocess("t", src, { X: true, Y: true, N: 4 }), "a\nx 4\ny\nz");
  assert.equal(preprocess("t", src, { X: false, Y: true, N: 4 }), "a\nno x\nz");
});

Deno.test("preprocess rejects unknown names and unbalanced directives, naming the line", () => {
  const bad = (src: string, frag: string) =>
    assert.throws(
      () => preprocess("k", src, { X: true }),
      (e) => e instanceof TnlError && e.message.includes(frag),
    );
  bad("#if Q\n#endif", "k.wgsl:1");
  bad("#if X\n", "without #endif");
  bad("#endif", "without #if");
  bad("x {{NOPE}}", "'NOPE'");
  bad("#pragma", "unknown directive");
  bad("#unroll i 2\nx", "k.wgsl:1: #unroll without #endunroll");
  bad("#endunroll", "without #unroll");
  bad("#unroll i\n#endunroll", "expected '#unroll NAME COUNT'");
  bad("#unroll X 2\n#endunroll", "'X' is a define");
  bad("#unroll i Q\n#endunroll", "unroll count 'Q' is not a number");
  bad("#unroll i 2\n#if Q\n#endif\n#endunroll", "k.wgsl:2");
});

Deno.test("preprocess unrolls nested blocks and keeps #if inside them", () => {
  const src =
    "a\n#unroll i 2\n#unroll j 3\nv{{i}}{{j}}\n#endunroll\n#if X\nx{{i}} {{N}}\n#endif\n#endunroll\nz";
  assert.equal(
    preprocess("t", src, { X: true, N: 4 }),
    "a\nv00\nv01\nv02\nx0 4\nv10\nv11\nv12\nx1 4\nz",
  );
  assert.equal(preprocess("t", src, { X: false, N: 4 }), "a\nv00\nv01\nv02\nv10\nv11\nv12\nz");
  assert.equal(preprocess("t", "#unroll i 0\nq\n#endunroll\nz", {}), "z");
  assert.equal(preprocess("t", "#unroll i NB\nq{{i}}\n#endunroll", { NB: 2 }), "q0\nq1");
});

Deno.test("packParams writes little-endian u32/i32/f32 fields", () => {
  const b = packParams([[7, "u32"], [-2, "i32"], [0.5, "f32"]]);
  const v = new DataView(b.buffer);
  assert.equal(v.getUint32(0, true), 7);
  assert.equal(v.getInt32(4, true), -2);
  assert.equal(v.getFloat32(8, true), 0.5);
  assert.throws(() => packParams([[-1, "u32"]]));
});
