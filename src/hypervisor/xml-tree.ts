import { XMLParser } from 'fast-xml-parser';
import { HypervisorError } from './errors.js';

/**
 * A small, ordered, editable XML tree. libvirt XML is rewritten (restore with a new name, MACs,
 * disk paths) by editing what the domain had, so the tree must keep every element, attribute and
 * their order; fast-xml-parser's `preserveOrder` output holds all of that but is awkward to edit,
 * hence this shape. Comments and processing instructions are dropped: libvirt ignores them.
 */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** Text content of a leaf element (libvirt XML has no mixed content that matters). */
  text?: string;
}

type OrderedNode = Record<string, unknown> & { ':@'?: Record<string, string> };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

function convert(node: OrderedNode): XmlElement | undefined {
  const name = Object.keys(node).find((k) => k !== ':@');
  if (name === undefined || name === '#text' || name === '#comment') return undefined;
  const el: XmlElement = { name, attrs: { ...(node[':@'] ?? {}) }, children: [] };
  const kids = node[name] as OrderedNode[];
  const texts: string[] = [];
  for (const kid of kids) {
    if ('#text' in kid) texts.push(String(kid['#text']));
    else {
      const child = convert(kid);
      if (child) el.children.push(child);
    }
  }
  if (texts.length > 0) el.text = texts.join('');
  return el;
}

/** Parses a document and returns its root element. */
export function parseXml(xml: string): XmlElement {
  let nodes: OrderedNode[];
  try {
    nodes = parser.parse(xml, true) as OrderedNode[];
  } catch (err) {
    throw new HypervisorError('INVALID_XML', `not well-formed XML: ${(err as Error).message}`, {
      cause: err,
    });
  }
  for (const n of nodes) {
    const el = convert(n);
    if (el) return el;
  }
  throw new HypervisorError('INVALID_XML', 'XML document has no root element');
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttr(s: string): string {
  return escapeText(s).replace(/'/g, '&apos;');
}

/** Serializes with two-space indentation and single-quoted attributes, as libvirt writes its XML. */
export function serializeXml(el: XmlElement, indent = ''): string {
  const attrs = Object.entries(el.attrs)
    .map(([k, v]) => ` ${k}='${escapeAttr(v)}'`)
    .join('');
  const open = `${indent}<${el.name}${attrs}`;
  if (el.children.length === 0) {
    if (el.text === undefined || el.text === '') return `${open}/>\n`;
    return `${open}>${escapeText(el.text)}</${el.name}>\n`;
  }
  const inner = el.children.map((c) => serializeXml(c, `${indent}  `)).join('');
  const text = el.text ? `${indent}  ${escapeText(el.text)}\n` : '';
  return `${open}>\n${text}${inner}${indent}</${el.name}>\n`;
}

export function element(
  name: string,
  attrs: Record<string, string> = {},
  children: XmlElement[] = [],
  text?: string,
): XmlElement {
  return text === undefined ? { name, attrs, children } : { name, attrs, children, text };
}

/** First child element with this name. */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

/** Every child element with this name, in document order. */
export function childrenNamed(el: XmlElement | undefined, name: string): XmlElement[] {
  return el ? el.children.filter((c) => c.name === name) : [];
}

/** Follows a path of element names from `el` (first match at each step). */
export function descend(el: XmlElement | undefined, ...path: string[]): XmlElement | undefined {
  let cur = el;
  for (const p of path) cur = child(cur, p);
  return cur;
}

/** Text of the element at `path` below `el`, if there is one. */
export function textAt(el: XmlElement | undefined, ...path: string[]): string | undefined {
  return descend(el, ...path)?.text;
}

/** Removes every child with this name; returns how many were removed. */
export function removeChildren(el: XmlElement, name: string): number {
  const before = el.children.length;
  el.children = el.children.filter((c) => c.name !== name);
  return before - el.children.length;
}

/** Returns the child with this name, creating it (appended) when absent. */
export function ensureChild(el: XmlElement, name: string): XmlElement {
  const found = child(el, name);
  if (found) return found;
  const created = element(name);
  el.children.push(created);
  return created;
}
