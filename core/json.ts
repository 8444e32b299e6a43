// A strict JSON parser for file formats whose rules JSON.parse cannot enforce: it rejects duplicate keys
// (JSON.parse silently keeps the last), keeps each number's literal text (so "1.0", "1e3" and integers beyond
// 2^53 can be told apart from exact integers), keeps key order, and builds objects as Maps (no prototype
// keys). Iterative, so no nesting depth overflows the stack. Errors are TnlError("input") naming `what`
// and the character position.

import { TnlError } from "./errors.ts";

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

export class JsonNumber {
  constructor(readonly text: string) {}
  get value(): number {
    return Number(this.text);
  }
  /** The value when the literal is a non-negative integer without fraction or exponent that is exact as a
   * double (≤ 2^53 − 1); otherwise null. */
  get safeUint(): number | null {
    if (!/^(0|[1-9][0-9]*)$/.test(this.text)) return null;
    const v = Number(this.text);
    return Number.isSafeInteger(v) ? v : null;
  }
}

export function isJsonObject(v: JsonValue): v is JsonObject {
  return v instanceof Map;
}

/** A short description of a value's type, for messages. */
export function jsonType(v: JsonValue): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return "a boolean";
  if (typeof v === "string") return "a string";
  if (v instanceof JsonNumber) return `the number ${v.text}`;
  if (Array.isArray(v)) return "an array";
  return "an object";
}

type Frame =
  | { kind: "array"; value: JsonValue[] }
  | { kind: "object"; value: JsonObject; key: string | null };

const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

export function parseJsonStrict(text: string, what: string): JsonValue {
  let i = 0;
  const fail = (why: string, at = i): never => {
    throw new TnlError("input", `${what}: not valid JSON: ${why} at character ${at}`);
  };
  const skipSpace = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const parseString = (): string => {
    // text[i] is the opening quote.
    const start = i;
    i++;
    let out = "";
    let run = i;
    for (;;) {
      if (i >= text.length) fail("unterminated string", start);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(run, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(run, i);
      const e = text[i + 1];
      if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
        out += ESCAPES[e];
        i += 2;
      } else if (e === "u") {
        const hex = text.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else {
        fail("bad escape");
      }
      run = i;
    }
  };

  const stack: Frame[] = [];
  let result: JsonValue | undefined;
  // Places a finished value into the enclosing container, or makes it the result.
  const emit = (v: JsonValue) => {
    const top = stack[stack.length - 1];
    if (top === undefined) result = v;
    else if (top.kind === "array") top.value.push(v);
    else {
      top.value.set(top.key as string, v);
      top.key = null;
    }
  };

  skipSpace();
  for (;;) {
    // Expect a value.
    skipSpace();
    if (i >= text.length) fail("unexpected end");
    const c = text[i];
    if (c === "{" || c === "[") {
      i++;
      skipSpace();
      if (c === "[") {
        if (text[i] === "]") {
          i++;
          emit([]);
        } else {
          stack.push({ kind: "array", value: [] });
          continue;
        }
      } else {
        const obj: JsonObject = new Map();
        if (text[i] === "}") {
          i++;
          emit(obj);
        } else {
          const frame: Frame = { kind: "object", value: obj, key: null };
          stack.push(frame);
          readKey(frame);
          continue;
        }
      }
    } else if (c === '"') {
      emit(parseString());
    } else if (text.startsWith("true", i)) {
      i += 4;
      emit(true);
    } else if (text.startsWith("false", i)) {
      i += 5;
      emit(false);
    } else if (text.startsWith("null", i)) {
      i += 4;
      emit(null);
    } else {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (m === null) fail(`unexpected ${JSON.stringify(c)}`);
      else {
        i += m[0].length;
        emit(new JsonNumber(m[0]));
      }
    }
    // After a value: close containers or move to the next element.
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        skipSpace();
        if (i < text.length) fail("trailing characters after the value");
        return result as JsonValue;
      }
      skipSpace();
      const d = text[i];
      if (d === ",") {
        i++;
        skipSpace();
        if (top.kind === "object") readKey(top);
        break;
      }
      const close = top.kind === "array" ? "]" : "}";
      if (d !== close) fail(i >= text.length ? "unexpected end" : `expected ',' or '${close}'`);
      i++;
      stack.pop();
      emit(top.value);
    }
  }

  function readKey(frame: Frame & { kind: "object" }): void {
    if (text[i] !== '"') fail("expected a string key");
    const at = i;
    const key = parseString();
    if (frame.value.has(key)) {
      throw new TnlError("input", `${what}: duplicate key ${JSON.stringify(key)} at character ${at}`);
    }
    frame.value.set(key, null); // keeps the key's place in the order; the value replaces it
    frame.key = key;
    skipSpace();
    if (text[i] !== ":") fail("expected ':'");
    i++;
  }
}
