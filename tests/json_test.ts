import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import { JsonNumber, type JsonValue, parseJsonStrict } from "../core/json.ts";

/** Plain JS value of a parsed document, to compare with JSON.parse. */
function plain(v: JsonValue): unknown {
  if (v instanceof JsonNumber) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  return v;
}

Deno.test("strict JSON agrees with JSON.parse on valid documents", () => {
  const docs = [
    `{"a": [1, -2.5, 3e2, -0, 0.1e-3, true, false, null], "b": {"c": "d\\n\\u00e9\\"\\\\\\/"}}`,
    `[]`,
    `{}`,
    ` [ { } , [ [ ] ] ] `,
    `"\\ud83d\\ude00 \u20ac"`,
    `123456789012345678901234567890`,
    `{"__proto__": 1, "constructor": {"x": []}}`,
    `\t\r\n{"k"\n:\t"v"}\n`,
  ];
  for (const d of docs) assert.deepEqual(plain(parseJsonStrict(d, "t")), JSON.parse(d), d);
});

Deno.test("strict JSON keeps key order and number literals", () => {
  const v = parseJsonStrict(`{"z": 1, "a": 2, "m": 9007199254740993}`, "t") as Map<string, JsonValue>;
  assert.deepEqual([...v.keys()], ["z", "a", "m"]);
  assert.equal((v.get("m") as JsonNumber).text, "9007199254740993");
  const n = (t: string) => new JsonNumber(t).safeUint;
  assert.equal(n("0"), 0);
  assert.equal(n("9007199254740991"), 2 ** 53 - 1);
  assert.equal(n("9007199254740992"), null);
  assert.equal(n("1.0"), null);
  assert.equal(n("1e3"), null);
  assert.equal(n("-1"), null);
});

Deno.test("strict JSON rejects duplicate keys at any depth, naming the key and position", () => {
  const bad = (doc: string, key: string) =>
    assert.throws(
      () => parseJsonStrict(doc, "file.json"),
      (e) =>
        e instanceof TnlError && e.kind === "input" && e.message.includes("file.json") &&
        e.message.includes(`duplicate key "${key}"`),
      doc,
    );
  bad(`{"a": 1, "a": 2}`, "a");
  bad(`{"x": {"b": 1, "c": 2, "b": 3}}`, "b");
  bad(`[{"q": 1}, {"q": 1, "q": 1}]`, "q");
  bad(`{"\\u0061": 1, "a": 2}`, "a"); // the same key spelled two ways
  // Equal keys in different objects are fine.
  parseJsonStrict(`[{"q": 1}, {"q": 1}]`, "t");
});

Deno.test("strict JSON rejects malformed documents with an input error", () => {
  const bad = [
    "",
    " ",
    "{",
    "[1,]",
    '{"a":1,}',
    "{'a': 1}",
    "01",
    "1.",
    ".5",
    "+1",
    "-",
    "NaN",
    "Infinity",
    "[1] x",
    '{"a" 1}',
    '{"a":1 "b":2}',
    '"\u0001"',
    '"\\x41"',
    '"\\u12"',
    '"abc',
    "[1, 2",
    "// c\n1",
    "tru",
    "nul",
    "{1: 2}",
  ];
  for (const d of bad) {
    assert.throws(
      () => parseJsonStrict(d, "f.json"),
      (e) =>
        e instanceof TnlError && e.kind === "input" &&
        /f\.json: not valid JSON: .* at character \d+/.test(e.message),
      JSON.stringify(d),
    );
  }
});

Deno.test("strict JSON survives deep nesting without overflowing the stack", () => {
  const depth = 200_000;
  const v = parseJsonStrict("[".repeat(depth) + "]".repeat(depth), "t");
  assert.ok(Array.isArray(v));
  assert.throws(
    () => parseJsonStrict("[".repeat(depth), "t"),
    (e) => e instanceof TnlError && e.kind === "input",
  );
});
