// A small XML well-formedness checker for tests of generated documents (the bench SVG): one root element,
// properly nested and matched tags, quoted attributes without duplicates, `<` never in text or attribute
// values, `&` only in the five predefined entities or character references, comments and the XML
// declaration. Returns the element tree; throws an Error naming the offset on the first fault.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;
const ENTITY = /^&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/;

function decode(raw: string, at: number): string {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i];
    if (ch === "<") throw new Error(`XML: '<' in character data at ${at + i}`);
    if (ch !== "&") {
      out += ch;
      continue;
    }
    const m = ENTITY.exec(raw.slice(i));
    if (!m) throw new Error(`XML: bare '&' at ${at + i}`);
    const body = m[0].slice(1, -1);
    out += body === "amp"
      ? "&"
      : body === "lt"
      ? "<"
      : body === "gt"
      ? ">"
      : body === "quot"
      ? '"'
      : body === "apos"
      ? "'"
      : String.fromCodePoint(
        body.startsWith("#x") ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10),
      );
    i += m[0].length - 1;
  }
  return out;
}

export function parseXml(doc: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  const fail = (why: string): never => {
    throw new Error(`XML: ${why} at ${i}`);
  };
  if (doc.startsWith("<?xml")) {
    const end = doc.indexOf("?>");
    if (end < 0) fail("unterminated XML declaration");
    i = end + 2;
  }
  while (i < doc.length) {
    const lt = doc.indexOf("<", i);
    const text = doc.slice(i, lt < 0 ? doc.length : lt);
    if (stack.length) stack[stack.length - 1].text += decode(text, i);
    else if (text.trim()) fail("text outside the root element");
    if (lt < 0) break;
    i = lt;
    if (doc.startsWith("<!--", i)) {
      const end = doc.indexOf("-->", i + 4);
      if (end < 0) fail("unterminated comment");
      if (doc.slice(i + 4, end).includes("--")) fail("'--' inside a comment");
      i = end + 3;
      continue;
    }
    if (doc.startsWith("</", i)) {
      i += 2;
      const m = NAME.exec(doc.slice(i)) ?? fail("bad end tag name");
      i += m[0].length;
      while (/\s/.test(doc[i] ?? "")) i++;
      if (doc[i] !== ">") fail("'>' expected in end tag");
      i++;
      const open = stack.pop() ?? fail(`end tag </${m[0]}> without a start tag`);
      if (open.name !== m[0]) fail(`</${m[0]}> closes <${open.name}>`);
      continue;
    }
    i++;
    const m = NAME.exec(doc.slice(i)) ?? fail("bad tag name");
    i += m[0].length;
    const el: XmlElement = { name: m[0], attrs: {}, children: [], text: "" };
    for (;;) {
      const ws = /^\s*/.exec(doc.slice(i))![0].length;
      i += ws;
      if (doc.startsWith("/>", i) || doc[i] === ">") break;
      if (!ws) fail("whitespace expected before an attribute");
      const an = NAME.exec(doc.slice(i)) ?? fail("bad attribute name");
      i += an[0].length;
      while (/\s/.test(doc[i] ?? "")) i++;
      if (doc[i] !== "=") fail(`'=' expected after attribute ${an[0]}`);
      i++;
      while (/\s/.test(doc[i] ?? "")) i++;
      const q = doc[i];
      if (q !== '"' && q !== "'") fail(`attribute ${an[0]} is not quoted`);
      const end = doc.indexOf(q, i + 1);
      if (end < 0) fail("unterminated attribute value");
      if (an[0] in el.attrs) fail(`duplicate attribute ${an[0]}`);
      el.attrs[an[0]] = decode(doc.slice(i + 1, end), i + 1);
      i = end + 1;
    }
    const selfClosing = doc.startsWith("/>", i);
    i += selfClosing ? 2 : 1;
    if (stack.length) stack[stack.length - 1].children.push(el);
    else if (root) fail("a second root element");
    else root = el;
    if (!selfClosing) stack.push(el);
  }
  if (stack.length) throw new Error(`XML: <${stack[stack.length - 1].name}> is never closed`);
  if (!root) throw new Error("XML: no root element");
  return root;
}

/** Every element of the tree, depth first. */
export function allElements(el: XmlElement): XmlElement[] {
  return [el, ...el.children.flatMap(allElements)];
}
