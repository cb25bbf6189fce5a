import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dataRangesOf, rawDiskExtents } from '../src/disk/hole-map.js';
import { RawDisk } from '../src/disk/raw.js';
import { tempDir } from './helpers/qemu-img.js';
import { makeSparseRaw } from './helpers/sparse-fixtures.js';

const M = 1024 * 1024;

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-hole-map-'));
});
after(() => cleanup());

describe('hole map of raw files (xfs_io seek)', () => {
  it('finds the data ranges of a sparse file and nothing in its holes', async () => {
    const path = join(dir, 'sparse.raw');
    await makeSparseRaw(path, 8 * M, [
      [M, 4096],
      [5 * M, M],
    ]);
    const ranges = await dataRangesOf(path, 8 * M);
    assert.ok(ranges, 'xfs_io is installed by scripts/install-deps.sh');
    const covered = (o: number) => ranges.some((r) => r.offset <= o && o < r.offset + r.length);
    for (const o of [M, M + 4095, 5 * M, 6 * M - 1]) assert.ok(covered(o), `data at ${o} not found`);
    const total = ranges.reduce((n, r) => n + r.length, 0);
    assert.ok(total < 2 * M, `holes reported as data: ${JSON.stringify(ranges)}`);
    const disk = await RawDisk.open(path);
    try {
      const extents = await rawDiskExtents(disk);
      assert.equal(
        extents.reduce((n, e) => n + e.length, 0),
        8 * M,
      );
      assert.ok(extents.every((e) => e.kind !== 'data' || covered(e.offset)));
    } finally {
      await disk.close();
    }
  });

  it('answers undefined (callers scan instead) when the tool is missing', async () => {
    const path = join(dir, 'other.raw');
    await makeSparseRaw(path, M, [[0, 4096]]);
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      assert.equal(await dataRangesOf(path, M), undefined);
    } finally {
      process.env.PATH = saved;
    }
  });
});
