// UTF-8 helpers the tokenizers share: strict one-character validation (the rule sentencepiece applies),
// lossy decoding that keeps a map back to byte offsets (so byte-level BPE can encode invalid input
// byte-exactly), and a streaming decoder that never splits a character.

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function encodeUtf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** The text of `bytes` when they are valid UTF-8 (a leading BOM is kept as U+FEFF), else null. */
export function decodeUtf8Strict(bytes: Uint8Array): string | null {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Length of the valid UTF-8 character starting at `bytes[i]` (1..4), -1 when the bytes there are not
 * the start of a valid character (overlong forms, surrogates and values over U+10FFFF are invalid), or 0
 * when `end` cuts off a sequence that is valid so far (more bytes may complete it).
 */
export function utf8CharLength(bytes: Uint8Array, i: number, end: number): number {
  const b0 = bytes[i];
  if (b0 < 0x80) return 1;
  let need: number, min: number, max: number;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    need = 1;
    min = 0x80;
    max = 0xbf;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    need = 2;
    // E0: no overlong forms; ED: no surrogates.
    min = b0 === 0xe0 ? 0xa0 : 0x80;
    max = b0 === 0xed ? 0x9f : 0xbf;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    need = 3;
    min = b0 === 0xf0 ? 0x90 : 0x80;
    max = b0 === 0xf4 ? 0x8f : 0xbf;
  } else {
    return -1;
  }
  for (let k = 1; k <= need; k++) {
    if (i + k >= end) return 0;
    const b = bytes[i + k];
    if (k === 1 ? b < min || b > max : b < 0x80 || b > 0xbf) return -1;
  }
  return need + 1;
}

/**
 * Decodes possibly invalid UTF-8, replacing every byte that does not start a valid character by U+FFFD
 * (one replacement per byte, as sentencepiece does), and returns for every UTF-16 index of the text the
 * byte offset it came from (`offsets[text.length] === bytes.length`).
 */
export function decodeUtf8WithOffsets(bytes: Uint8Array): { text: string; offsets: Uint32Array } {
  // A character never takes more UTF-16 units than bytes, so both arrays fit in bytes.length.
  const units = new Uint16Array(bytes.length);
  const offsets = new Uint32Array(bytes.length + 1);
  let u = 0, i = 0;
  while (i < bytes.length) {
    let len = utf8CharLength(bytes, i, bytes.length);
    let cp: number;
    if (len <= 0) {
      cp = 0xfffd;
      len = 1;
    } else {
      cp = len === 1 ? bytes[i] : bytes[i] & (0xff >> (len + 1));
      for (let k = 1; k < len; k++) cp = (cp << 6) | (bytes[i + k] & 0x3f);
    }
    offsets[u] = i;
    if (cp >= 0x10000) {
      units[u++] = 0xd800 + ((cp - 0x10000) >> 10);
      offsets[u] = i;
      units[u++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
    } else {
      units[u++] = cp;
    }
    i += len;
  }
  offsets[u] = bytes.length;
  let text = "";
  for (let k = 0; k < u; k += 8192) {
    text += String.fromCharCode(...units.subarray(k, Math.min(u, k + 8192)));
  }
  return { text, offsets: offsets.subarray(0, u + 1) };
}

/**
 * Streaming UTF-8 → text: `push` returns the characters completed so far, holding back an incomplete
 * trailing sequence; a byte that can never start a valid character becomes U+FFFD. `flush` ends the
 * stream (an incomplete tail becomes one U+FFFD per byte).
 */
export class Utf8Stream {
  #pending = new Uint8Array(0);

  push(bytes: Uint8Array): string {
    let buf = bytes;
    if (this.#pending.length > 0) {
      buf = new Uint8Array(this.#pending.length + bytes.length);
      buf.set(this.#pending);
      buf.set(bytes, this.#pending.length);
    }
    let out = "";
    let i = 0, start = 0;
    while (i < buf.length) {
      const len = utf8CharLength(buf, i, buf.length);
      if (len > 0) {
        i += len;
      } else if (len === 0) {
        break;
      } else {
        if (i > start) out += strictDecoder.decode(buf.subarray(start, i));
        out += "\uFFFD";
        i += 1;
        start = i;
      }
    }
    if (i > start) out += strictDecoder.decode(buf.subarray(start, i));
    this.#pending = buf.slice(i);
    return out;
  }

  flush(): string {
    const n = this.#pending.length;
    this.#pending = new Uint8Array(0);
    return "\uFFFD".repeat(n);
  }
}
