// Test-only pickle builder: the opcodes torch.save emits for a state dict (protocol 2), to craft
// checkpoints the fixture does not contain (views, other dtypes, hostile globals).

type Part = number | string | Uint8Array | Part[];

/** Concatenates opcodes: numbers are bytes, strings their Latin-1 bytes. */
export function pkl(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  const add = (p: Part) => {
    if (typeof p === "number") out.push(p);
    else if (typeof p === "string") { for (const c of p) out.push(c.charCodeAt(0)); }
    else if (p instanceof Uint8Array) out.push(...p);
    else p.forEach(add);
  };
  parts.forEach(add);
  return new Uint8Array(out);
}

export const PROTO2: Part = [0x80, 2];
export const MARK: Part = "(";
export const STOP: Part = ".";

export function str(s: string): Part {
  const b = new TextEncoder().encode(s);
  return ["X", u32(b.length), b];
}

export function int(n: number): Part {
  if (n >= 0 && n < 256) return ["K", n];
  if (n >= 0 && n < 65536) return ["M", n & 0xff, n >> 8];
  return ["J", u32(n >>> 0)];
}

export function global(module: string, name: string): Part {
  return ["c", `${module}\n${name}\n`];
}

export function tuple(items: Part[]): Part {
  return [MARK, ...items, "t"];
}

/** _rebuild_tensor_v2(('storage', storageType, key, 'cpu', numel), offset, size, stride, False, OrderedDict()) */
export function tensor(
  storageType: string,
  key: string,
  numel: number,
  offset: number,
  size: number[],
  stride: number[],
): Part {
  return [
    global("torch._utils", "_rebuild_tensor_v2"),
    MARK,
    tuple(["X", u32(7), "storage", global("torch", storageType), str(key), str("cpu"), int(numel)]),
    "Q",
    int(offset),
    tuple(size.map(int)),
    tuple(stride.map(int)),
    0x89,
    global("collections", "OrderedDict"),
    ")",
    "R",
    "t",
    "R",
  ];
}

/** A pickled state dict {name: tensor part}. */
export function stateDict(entries: [string, Part][]): Uint8Array {
  return pkl(PROTO2, "}", MARK, entries.map(([k, v]) => [str(k), v]), "u", STOP);
}

function u32(v: number): Uint8Array {
  return new Uint8Array(new Uint32Array([v]).buffer);
}
