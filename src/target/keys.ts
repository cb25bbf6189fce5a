import { TargetError } from './errors.js';

/**
 * Keys name objects on a target: '/'-separated segments relative to the target root, the same on a
 * filesystem and on S3. Every key that reaches a backend passes through here, so a crafted id or a
 * corrupt metadata file can never read or write outside the target.
 */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** True for an id usable as one path segment: UUIDs and safe slugs. */
export function isSafeId(id: string): boolean {
  return id.length > 0 && id.length <= 200 && SEGMENT.test(id) && !id.includes('..');
}

export function assertSafeId(id: string, what: string): void {
  if (!isSafeId(id)) {
    throw new TargetError(
      'TARGET_BAD_KEY',
      `${what} ${JSON.stringify(id)} is not a safe id ([A-Za-z0-9._-], no ..)`,
    );
  }
}

/** Throws TARGET_BAD_KEY unless `key` is a relative, normalized key of safe segments. */
export function assertKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024) {
    throw new TargetError('TARGET_BAD_KEY', `bad key ${JSON.stringify(key)}`);
  }
  if (key.startsWith('/')) throw new TargetError('TARGET_BAD_KEY', `absolute key ${JSON.stringify(key)}`);
  for (const seg of key.split('/')) {
    if (seg === '') throw new TargetError('TARGET_BAD_KEY', `empty segment in key ${JSON.stringify(key)}`);
    if (!isSafeId(seg))
      throw new TargetError(
        'TARGET_BAD_KEY',
        `bad segment ${JSON.stringify(seg)} in key ${JSON.stringify(key)}`,
      );
  }
}

/** A prefix is '' (the whole target) or a key followed by '/'. */
export function assertPrefix(prefix: string): void {
  if (prefix === '') return;
  if (!prefix.endsWith('/'))
    throw new TargetError('TARGET_BAD_KEY', `prefix ${JSON.stringify(prefix)} must end with /`);
  assertKey(prefix.slice(0, -1));
}

export function joinKey(...segments: string[]): string {
  const key = segments.join('/');
  assertKey(key);
  return key;
}

/** The folder part of a key ('' at the root). */
export function keyDir(key: string): string {
  const i = key.lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

export function keyBase(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/**
 * Resolves a relative reference (a qcow2 backing file name) against the folder of `fromKey`, as
 * qemu does, and returns the target key it names. A reference that is absolute or climbs above the
 * target root is refused: a relocated target must be self-contained.
 */
export function resolveRelativeKey(fromKey: string, ref: string): string {
  if (ref.startsWith('/') || ref.includes('\\') || ref.includes(':')) {
    throw new TargetError('TARGET_BAD_KEY', `reference ${JSON.stringify(ref)} is not a relative path`);
  }
  const parts = keyDir(fromKey) === '' ? [] : keyDir(fromKey).split('/');
  for (const seg of ref.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) {
        throw new TargetError(
          'TARGET_BAD_KEY',
          `reference ${JSON.stringify(ref)} from ${fromKey} leaves the target`,
        );
      }
      parts.pop();
    } else {
      parts.push(seg);
    }
  }
  const key = parts.join('/');
  assertKey(key);
  return key;
}

/** The relative reference from the folder of `fromKey` to `toKey` (inverse of resolveRelativeKey). */
export function relativeKey(fromKey: string, toKey: string): string {
  const from = keyDir(fromKey) === '' ? [] : keyDir(fromKey).split('/');
  const to = toKey.split('/');
  let common = 0;
  while (common < from.length && common < to.length - 1 && from[common] === to[common]) common++;
  return [...Array(from.length - common).fill('..'), ...to.slice(common)].join('/');
}
