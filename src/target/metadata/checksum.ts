import { createHash } from 'node:crypto';

/**
 * Every metadata file (format major >= 1) carries its own checksum in a top-level member
 * `"checksum": "sha256:<64 hex>"`: the SHA-256 of the file's exact bytes in which those 64 hex digits
 * are replaced by 64 '0' characters. It covers every byte of the file (whitespace included), so one
 * flipped byte anywhere is found, and any JSON writer can produce it.
 */
export const CHECKSUM_PATTERN = /"checksum"\s*:\s*"sha256:([0-9a-f]{64})"/g;
const ZEROS = '0'.repeat(64);

export type ChecksumCheck = { ok: true } | { ok: false; reason: string };

/** Serializes a document with its checksum as the first member. */
export function encodeWithChecksum(doc: Record<string, unknown>): Buffer {
  const { checksum: _drop, ...rest } = doc;
  const text = `${JSON.stringify({ checksum: `sha256:${ZEROS}`, ...rest }, null, 2)}\n`;
  const i = text.indexOf(ZEROS);
  const digest = createHash('sha256').update(text, 'utf8').digest('hex');
  return Buffer.from(text.slice(0, i) + digest + text.slice(i + 64), 'utf8');
}

export function checkChecksum(bytes: Buffer): ChecksumCheck {
  const text = bytes.toString('latin1'); // byte-exact: one char per byte, so indexes are byte offsets
  const matches = [...text.matchAll(CHECKSUM_PATTERN)];
  if (matches.length === 0) return { ok: false, reason: 'no "checksum" member' };
  if (matches.length > 1) return { ok: false, reason: 'more than one "checksum" member' };
  const m = matches[0];
  const start = m.index! + m[0].length - 65; // the 64 hex digits end one char before the match end
  const zeroed = Buffer.from(bytes);
  zeroed.fill(0x30, start, start + 64);
  const digest = createHash('sha256').update(zeroed).digest('hex');
  return digest === m[1]
    ? { ok: true }
    : { ok: false, reason: `checksum mismatch (stored ${m[1]}, computed ${digest})` };
}
