// A restricted unpickler: it reads the pickle opcodes that torch.save uses (protocol 2, and the protocol
// 4/5 forms of the same operations) into plain values, and never imports or runs anything. A GLOBAL is
// only a name: the caller's policy says which names may appear at all (any other is refused on sight),
// and it alone gives meaning to calling one (REDUCE) and to persistent ids (BINPERSID).

import { TnlError } from "./errors.ts";

export type DictKey = null | boolean | number | bigint | string;

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[] // list
  | PickleTuple
  | PickleDict
  | PickleGlobal
  | PickleObject;

export class PickleTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** A dict (or OrderedDict); `state` is what BUILD set on it (torch keeps a state dict's `_metadata` there). */
export class PickleDict {
  readonly items = new Map<DictKey, PickleValue>();
  state: PickleValue | undefined;
  constructor(readonly type: "dict" | "OrderedDict" = "dict") {}
}

/** A `module.name` reference that the policy allowed; nothing was imported. */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A value the policy built from an allowed call or a persistent id. */
export class PickleObject<T = unknown> {
  constructor(readonly type: string, readonly value: T) {}
}

export interface UnpicklePolicy {
  /** Whether `module.name` may appear; any other global is refused. */
  allowGlobal(module: string, name: string): boolean;
  /** REDUCE: the result of calling an allowed global with `args`. */
  call(fn: PickleGlobal, args: readonly PickleValue[]): PickleValue;
  /** BINPERSID: the object a persistent id stands for. */
  persistentLoad(pid: PickleValue): PickleValue;
}

const MARK = Symbol("mark");
type StackItem = PickleValue | typeof MARK;

const UNSUPPORTED: Record<number, string> = {
  0x49: "INT",
  0x4c: "LONG",
  0x53: "STRING",
  0x54: "BINSTRING",
  0x55: "SHORT_BINSTRING",
  0x56: "UNICODE",
  0x46: "FLOAT",
  0x69: "INST",
  0x6f: "OBJ",
  0x81: "NEWOBJ",
  0x92: "NEWOBJ_EX",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x50: "PERSID",
  0x70: "PUT",
  0x67: "GET",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Largest LONG4 accepted: far beyond any integer torch writes. */
const MAX_LONG_BYTES = 64;

/** Unpickles `data` under `policy`. `source` names the pickle in errors. The pickle must end at its STOP. */
export function unpickle(data: Uint8Array, source: string, policy: UnpicklePolicy): PickleValue {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = 0;
  let opAt = 0;

  const fail = (why: string): never => {
    throw new TnlError("input", `${source}: pickle: ${why} (byte ${opAt})`);
  };
  const need = (n: number) => {
    if (pos + n > data.length) fail("truncated");
  };
  const u8 = () => {
    need(1);
    return data[pos++];
  };
  const u16 = () => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(data.length)) fail("length beyond the end of the pickle");
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const text = (n: number) => {
    const b = bytes(n);
    try {
      return utf8.decode(b);
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail("truncated");
    if (end - pos > 1000) fail("GLOBAL name of over 1000 characters");
    const b = data.subarray(pos, end);
    pos = end + 1;
    for (const c of b) if (c < 0x20 || c > 0x7e) fail("GLOBAL name is not printable ASCII");
    return String.fromCharCode(...b);
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK || (marks.length > 0 && stack.length < marks[marks.length - 1])) {
      return fail("stack underflow");
    }
    return v;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK || (marks.length > 0 && stack.length - 1 < marks[marks.length - 1])) {
      return fail("stack underflow");
    }
    return v;
  };
  // Items pushed since the last MARK, which is removed.
  const popMark = (): PickleValue[] => {
    const m = marks.pop();
    if (m === undefined) return fail("no MARK");
    const items = stack.splice(m) as PickleValue[];
    stack.pop(); // the MARK itself
    return items;
  };
  const pushMark = () => {
    stack.push(MARK);
    marks.push(stack.length);
  };
  const intFromBytes = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let k = b.length - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[k]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, name: string): PickleGlobal => {
    if (!policy.allowGlobal(module, name)) {
      fail(
        `refuses global '${module}.${name}' (only the torch tensor and container globals load; nothing runs)`,
      );
    }
    return new PickleGlobal(module, name);
  };
  const setItems = (target: PickleValue, kv: PickleValue[]) => {
    if (!(target instanceof PickleDict)) return fail("SETITEM(S) on something that is not a dict");
    if (kv.length % 2 !== 0) return fail("SETITEMS with an odd number of items");
    for (let k = 0; k < kv.length; k += 2) target.items.set(dictKey(kv[k]), kv[k + 1]);
  };
  const dictKey = (k: PickleValue): DictKey => {
    if (
      k === null || typeof k === "boolean" || typeof k === "number" || typeof k === "bigint" ||
      typeof k === "string"
    ) {
      return k;
    }
    return fail("unsupported dict key type");
  };
  const memoGet = (i: number): PickleValue => {
    const v = memo.get(i);
    if (v === undefined) return fail(`memo ${i} was never stored`);
    return v;
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v > 5) fail(`protocol ${v} is not supported`);
        break;
      }
      case 0x95: // FRAME: only a hint for buffered reading
        if (u64() > data.length - pos) fail("frame beyond the end of the pickle");
        break;
      case 0x2e: { // STOP
        if (marks.length > 0) fail("STOP inside an open MARK");
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`);
        if (pos !== data.length) fail(`${data.length - pos} bytes after STOP`);
        return pop();
      }
      case 0x28: // MARK
        pushMark();
        break;
      case 0x30: // POP
        if (stack[stack.length - 1] === MARK) popMark();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(dv.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(intFromBytes(bytes(u8())));
        break;
      case 0x8b: { // LONG4
        need(4);
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n < 0 || n > MAX_LONG_BYTES) fail(`LONG4 of ${n} bytes`);
        stack.push(intFromBytes(bytes(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PickleDict());
        break;
      case 0x64: { // DICT
        const d = new PickleDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PickleTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PickleTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push(new PickleTuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        stack.push(new PickleTuple([a, b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        stack.push(new PickleTuple([a, b, c]));
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) fail("APPEND to something that is not a list");
        (list as PickleValue[]).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail("APPENDS to something that is not a list");
        for (const v of items) (list as PickleValue[]).push(v);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        if (!(fn instanceof PickleGlobal)) fail("REDUCE of something that is not a global");
        if (!(args instanceof PickleTuple)) fail("REDUCE arguments are not a tuple");
        stack.push(callPolicy(() => policy.call(fn as PickleGlobal, (args as PickleTuple).items)));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (!(obj instanceof PickleDict)) fail("BUILD on something that is not a dict");
        (obj as PickleDict).state = state;
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        stack.push(callPolicy(() => policy.persistentLoad(pid)));
        break;
      }
      default:
        fail(
          `unsupported opcode ${UNSUPPORTED[op] ?? "0x" + op.toString(16).padStart(2, "0")}`,
        );
    }
  }

  // The policy throws TnlError("input") for bad arguments; the position is added here.
  function callPolicy(f: () => PickleValue): PickleValue {
    try {
      return f();
    } catch (e) {
      if (e instanceof TnlError && e.kind === "input") {
        throw new TnlError("input", `${source}: pickle: ${e.message} (byte ${opAt})`);
      }
      throw e;
    }
  }
}
