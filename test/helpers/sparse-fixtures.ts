import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Extent } from '../../src/disk/extent.js';

/** Fixtures for writer/convert/merge tests: sparse raw files with random data, and qemu-img check. */

const run = promisify(execFile);

/**
 * Creates a sparse raw file of `size` bytes with random data at `ranges` ([offset, length], sorted,
 * disjoint) and returns its extent map (data for the ranges, unallocated elsewhere).
 */
export async function makeSparseRaw(
  path: string,
  size: number,
  ranges: [number, number][],
): Promise<Extent[]> {
  const fh = await open(path, 'w');
  const extents: Extent[] = [];
  try {
    await fh.truncate(size);
    let pos = 0;
    for (const [offset, length] of ranges) {
      if (offset > pos) extents.push({ offset: pos, length: offset - pos, kind: 'unallocated' });
      await fh.write(randomBytes(length), 0, length, offset);
      extents.push({ offset, length, kind: 'data' });
      pos = offset + length;
    }
    if (pos < size) extents.push({ offset: pos, length: size - pos, kind: 'unallocated' });
  } finally {
    await fh.close();
  }
  return extents;
}

export interface QemuCheck {
  'check-errors'?: number;
  corruptions?: number;
  leaks?: number;
  'allocated-clusters'?: number;
  [key: string]: unknown;
}

/** `qemu-img check --output=json`, whatever its exit code (it is non-zero for leaks or corruption). */
export async function qemuCheck(image: string): Promise<QemuCheck> {
  try {
    const { stdout } = await run('qemu-img', ['check', '--output=json', image]);
    return JSON.parse(stdout) as QemuCheck;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    if (e.stdout?.trim().startsWith('{')) return JSON.parse(e.stdout) as QemuCheck;
    throw new Error(`qemu-img check ${image}: ${e.stderr ?? String(err)}`);
  }
}

/** Asserts `qemu-img check` finds no errors, no corruption and no leaked cluster. */
export async function assertCheckClean(image: string): Promise<void> {
  const c = await qemuCheck(image);
  assert.equal(c['check-errors'] ?? 0, 0, `${image}: check errors ${JSON.stringify(c)}`);
  assert.equal(c.corruptions ?? 0, 0, `${image}: corruptions ${JSON.stringify(c)}`);
  assert.equal(c.leaks ?? 0, 0, `${image}: leaks ${JSON.stringify(c)}`);
}

/** Asserts `qemu-img compare` finds the two images identical (formats probed unless given). */
export async function assertSameContent(a: string, b: string, formatA?: string, formatB?: string) {
  const args = ['compare'];
  if (formatA) args.push('-f', formatA);
  if (formatB) args.push('-F', formatB);
  args.push(a, b);
  try {
    await run('qemu-img', args);
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    assert.fail(`qemu-img compare ${a} ${b}: ${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}
