import assert from "node:assert/strict";
import { TnlError } from "../core/errors.ts";
import {
  PickleDict,
  type PickleGlobal,
  PickleObject,
  PickleTuple,
  type PickleValue,
  unpickle,
  type UnpicklePolicy,
} from "../core/pickle.ts";

// Pickles written by CPython 3.11's pickle module (the expression that made each is beside it).
const PY = {
  // pickle.dumps({'a': [1, -2, 300, 70000, -70000, 2**40, -2**70, 3.5, None, True, False, 'é€'],
  //   'b': (1, 2, 3), 'c': (), 'd': (7,), 'e': (1, 2), 'f': {}, 'g': [[1], [1]]}, protocol=2)
  p2Values:
    "80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a090000000000000000c047400c0000000000004e88895805000000c3a9e282ac71036558010000006271044b014b024b0387710558010000006371062958010000006471074b0785710858010000006571094b014b0286710a580100000066710b7d710c580100000067710d5d710e285d710f4b01615d71104b016165752e",
  // the same without -70000, False, the small tuples and lists, plus 'x': b'xy', protocol=4
  p4Values:
    "80049557000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101008a060000000000018a090000000000000000c047400c0000000000004e888c05c3a9e282ac94658c0162944b014b024b0387948c0178944302787994752e",
  // pickle.dumps({'k': 'v'*300, 'n': list(range(5))}, protocol=5)
  p5Values: "8005954d010000000000007d94288c016b94582c010000" + "76".repeat(300) +
    "948c016e945d94284b004b014b024b034b0465752e",
  // pickle.dumps(collections.OrderedDict([('x', 1), ('y', 'z')]), protocol=2)
  p2Ordered:
    "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000007871024b01580100000079710358010000007a7104752e",
  // l = [1]; pickle.dumps({'a': l, 'b': l}, protocol=2): the memo shares the list
  p2Shared: "80027d71002858010000006171015d71024b016158010000006271036802752e",
  // an object whose __reduce__ is (os.system, ('echo pwned',)), protocol 2 and 4
  p2OsSystem: "800263706f7369780a73797374656d0a7100580a0000006563686f2070776e656471018571025271032e",
  p4OsSystem:
    "80049525000000000000008c05706f736978948c0673797374656d9493948c0a6563686f2070776e656494859452942e",
  // an object whose __reduce__ is (eval, ('1+1',)), protocol 2 (which spells builtins "__builtin__")
  p2Eval: "8002635f5f6275696c74696e5f5f0a6576616c0a71005803000000312b3171018571025271032e",
};

function hex(s: string): Uint8Array {
  return new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

/** Allows OrderedDict only (calls it), like the torch policy does. */
const POLICY: UnpicklePolicy = {
  allowGlobal: (m, n) => m === "collections" && n === "OrderedDict",
  call: (fn: PickleGlobal, args: readonly PickleValue[]) => {
    assert.equal(fn.qualifiedName, "collections.OrderedDict");
    assert.equal(args.length, 0);
    return new PickleDict("OrderedDict");
  },
  persistentLoad: (pid) => new PickleObject("pid", pid),
};

/** Plain JS for comparisons. */
function plain(v: PickleValue): unknown {
  if (v instanceof PickleTuple) return { tuple: v.items.map(plain) };
  if (v instanceof PickleDict) return Object.fromEntries([...v.items].map(([k, x]) => [String(k), plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Uint8Array) return { bytes: [...v] };
  return v;
}

Deno.test("unpickles CPython's protocol 2 values: ints of every width, floats, strings, containers", () => {
  const v = unpickle(hex(PY.p2Values), "t", POLICY);
  assert.deepEqual(plain(v), {
    a: [1, -2, 300, 70000, -70000, 2 ** 40, -(2n ** 70n), 3.5, null, true, false, "é€"],
    b: { tuple: [1, 2, 3] },
    c: { tuple: [] },
    d: { tuple: [7] },
    e: { tuple: [1, 2] },
    f: {},
    g: [[1], [1]],
  });
});

Deno.test("unpickles protocols 4 and 5: frames, short strings, memoize, bytes", () => {
  assert.deepEqual(plain(unpickle(hex(PY.p4Values), "t", POLICY)), {
    a: [1, -2, 300, 70000, 2 ** 40, -(2n ** 70n), 3.5, null, true, "é€"],
    b: { tuple: [1, 2, 3] },
    x: { bytes: [0x78, 0x79] },
  });
  assert.deepEqual(plain(unpickle(hex(PY.p5Values), "t", POLICY)), {
    k: "v".repeat(300),
    n: [0, 1, 2, 3, 4],
  });
});

Deno.test("OrderedDict through an allowed REDUCE; memo references are shared", () => {
  const d = unpickle(hex(PY.p2Ordered), "t", POLICY);
  assert.ok(d instanceof PickleDict && d.type === "OrderedDict");
  assert.deepEqual(plain(d), { x: 1, y: "z" });
  const s = unpickle(hex(PY.p2Shared), "t", POLICY) as PickleDict;
  assert.equal(s.items.get("a"), s.items.get("b"));
});

Deno.test("refuses os.system, posix.system, builtins.eval at the GLOBAL, before anything is called", () => {
  let called = 0;
  const counting: UnpicklePolicy = {
    allowGlobal: (m, n) => m === "collections" && n === "OrderedDict",
    call: () => {
      called++;
      return null;
    },
    persistentLoad: () => null,
  };
  const cases: [string, string, number][] = [
    [PY.p2OsSystem, "posix.system", 2],
    [PY.p4OsSystem, "posix.system", 28],
    [PY.p2Eval, "__builtin__.eval", 2],
    ["8002" + "63" + hexOf("os\nsystem\n") + "2e", "os.system", 2],
    ["8002" + "63" + hexOf("builtins\neval\n") + "2e", "builtins.eval", 2],
    ["8002" + "63" + hexOf("torch\nload\n") + "2e", "torch.load", 2],
  ];
  for (const [h, name, at] of cases) {
    assert.throws(
      () => unpickle(hex(h), "evil.pkl", counting),
      (e) =>
        e instanceof TnlError && e.kind === "input" &&
        e.message ===
          `evil.pkl: pickle: refuses global '${name}' (only the torch tensor and container globals load; nothing runs) (byte ${at})`,
      name,
    );
  }
  assert.equal(called, 0);
});

function hexOf(s: string): string {
  return [...new TextEncoder().encode(s)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("malformed pickles are input errors naming the source, fault and byte", () => {
  const bad: [string, string][] = [
    ["8002", "truncated (byte 2)"], // no STOP
    ["80024b", "truncated (byte 2)"], // BININT1 without its byte
    ["80022e", "STOP with 0 values on the stack"],
    ["80024b014b012e", "STOP with 2 values on the stack"],
    ["80024b012e00", "1 bytes after STOP"],
    ["800274", "no MARK"],
    ["8002284b0186", "stack underflow"], // TUPLE2 would take the MARK as its first item
    ["80026800", "memo 0 was never stored"],
    ["80024b0173", "stack underflow"],
    ["80024b014b024b0373", "SETITEM(S) on something that is not a dict"],
    ["80024b014b0261", "APPEND to something that is not a list"],
    ["8002" + "49" + hexOf("1\n"), "unsupported opcode INT"],
    ["8002" + "81", "unsupported opcode NEWOBJ"],
    ["8002" + "ff", "unsupported opcode 0xff"],
    ["8006", "protocol 6 is not supported"],
    ["8002580500000061", "truncated"],
    ["80025802000000c3282e", "string is not valid UTF-8"],
    ["80024b014b0252", "REDUCE of something that is not a global"],
    ["8002" + "63" + hexOf("collections\nOrderedDict\n") + "4b0152", "REDUCE arguments are not a tuple"],
    ["80024b014b0162", "BUILD on something that is not a dict"],
    ["80027d5d4b0173", "unsupported dict key type"], // a list as a key
    ["80028b00010000", "LONG4 of 256 bytes"],
    ["8002" + "63" + hexOf("a".repeat(1200) + "\nb\n"), "GLOBAL name of over 1000 characters"],
    ["8002" + "63" + hexOf("os\x01\nsystem\n"), "GLOBAL name is not printable ASCII"],
  ];
  for (const [h, fault] of bad) {
    assert.throws(
      () => unpickle(hex(h), "x.pkl", POLICY),
      (e) =>
        e instanceof TnlError && e.kind === "input" && e.message.startsWith("x.pkl: pickle: ") &&
        e.message.includes(fault),
      `${h}: ${fault}`,
    );
  }
});

Deno.test("the policy's own errors gain the pickle's name and byte", () => {
  const strict: UnpicklePolicy = {
    ...POLICY,
    persistentLoad: () => {
      throw new TnlError("input", "bad pid");
    },
  };
  assert.throws(
    () => unpickle(hex("80024b0151" + "2e"), "p.pkl", strict),
    (e) => e instanceof TnlError && e.message === "p.pkl: pickle: bad pid (byte 4)",
  );
});
