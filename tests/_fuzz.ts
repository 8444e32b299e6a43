// Seeded mutations of valid files for the readers' fuzz tests: bit flips, byte changes (random and
// structurally interesting values), truncations, splices, insertions and deletions. Positions favour the
// given hot ranges (headers, directories, pickles), where a mutation reaches the parsing code.

import { Rng } from "../core/random.ts";

const INTERESTING = [
  0x00,
  0x01,
  0x7f,
  0x80,
  0xff,
  0x20,
  ...'"{}[],:.-+eE0123456789\\'.split("").map((c) => c.charCodeAt(0)),
  // pickle opcodes and zip signature bytes
  0x28,
  0x2e,
  0x52,
  0x63,
  0x71,
  0x68,
  0x50,
  0x4b,
  0x03,
  0x04,
  0x05,
  0x06,
];

export function mutate(base: Uint8Array, rng: Rng, hot: [number, number][]): Uint8Array {
  let b = base;
  let copied = false;
  const own = () => {
    if (!copied) {
      b = b.slice();
      copied = true;
    }
  };
  const pos = (len: number) => {
    if (len === 0) return 0;
    if (rng.next() < 0.8) {
      const [lo, hi] = hot[rng.int(hot.length)];
      return Math.min(len - 1, lo + rng.int(Math.max(1, hi - lo)));
    }
    return rng.int(len);
  };
  const ops = 1 + rng.int(3);
  for (let k = 0; k < ops; k++) {
    const p = pos(b.length);
    switch (rng.int(8)) {
      case 0:
      case 1: // bit flips
        own();
        for (let f = 1 + rng.int(3); f > 0; f--) b[Math.min(b.length - 1, p + rng.int(8))] ^= 1 << rng.int(8);
        break;
      case 2: // random byte
        own();
        b[p] = rng.int(256);
        break;
      case 3: // interesting byte
        own();
        b[p] = INTERESTING[rng.int(INTERESTING.length)];
        break;
      case 4: // truncation
        b = b.subarray(0, p);
        copied = false;
        break;
      case 5: { // splice: overwrite with a chunk from elsewhere in the file
        own();
        const n = 1 + rng.int(64);
        const from = rng.int(Math.max(1, b.length - n));
        b.copyWithin(p, from, from + n);
        break;
      }
      case 6: { // insertion of a chunk from elsewhere
        const n = 1 + rng.int(32);
        const from = rng.int(Math.max(1, b.length - n));
        const out = new Uint8Array(b.length + n);
        out.set(b.subarray(0, p));
        out.set(b.subarray(from, from + n), p);
        out.set(b.subarray(p), p + n);
        b = out;
        copied = true;
        break;
      }
      default: { // deletion
        const n = Math.min(b.length - p, 1 + rng.int(32));
        const out = new Uint8Array(b.length - n);
        out.set(b.subarray(0, p));
        out.set(b.subarray(p + n), p);
        b = out;
        copied = true;
      }
    }
  }
  return b;
}
