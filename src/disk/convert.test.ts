import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { convertImage } from './convert.js';
import type { Disk } from './disk.js';
import { coalesceExtents, type Extent } from './extent.js';
import { openDiskImage } from './open.js';
import type { ChainReader } from './qcow2/chain.js';

const K = 1024;

/** A disk in memory: content plus the extent map it claims. */
class MemoryDisk implements Disk {
  constructor(
    readonly content: Buffer,
    private readonly map: Extent[],
  ) {}
  get virtualSize(): number {
    return this.content.length;
  }
  async extents(): Promise<Extent[]> {
    return this.map.map((e) => ({ ...e }));
  }
  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.content.subarray(offset, offset + length));
  }
  async close(): Promise<void> {}
}

/** Content with data in `ranges` (filled with `fill`), zeros elsewhere, and the matching map. */
function memoryDisk(size: number, ranges: [number, number, number][]): MemoryDisk {
  const content = Buffer.alloc(size);
  const map: Extent[] = [];
  let pos = 0;
  for (const [offset, length, fill] of ranges) {
    if (offset > pos) map.push({ offset: pos, length: offset - pos, kind: 'zero' });
    content.fill(fill, offset, offset + length);
    map.push({ offset, length, kind: 'data' });
    pos = offset + length;
  }
  if (pos < size) map.push({ offset: pos, length: size - pos, kind: 'zero' });
  return new MemoryDisk(content, map);
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lifeboat-convert-unit-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function readBack(path: string): Promise<{ content: Buffer; top: Extent[] }> {
  const d = (await openDiskImage(path)) as ChainReader;
  try {
    const content = await d.read(0, d.virtualSize);
    const top = coalesceExtents((await d.top.extents()).map((e) => ({ ...e, depth: undefined })));
    return { content, top };
  } finally {
    await d.close();
  }
}

describe('convertImage', () => {
  it('writes a standalone qcow2 holding only the data extents', async () => {
    const src = memoryDisk(256 * K, [[64 * K, 64 * K, 0x11]]);
    const out = join(dir, 'plain.qcow2');
    const r = await convertImage(src, out, { format: 'qcow2', clusterSize: 4096 });
    assert.equal(r.dataBytes, 64 * K);
    const back = await readBack(out);
    assert.ok(back.content.equals(src.content));
  });

  it('with a backing: identical clusters fall through, zeroed ones become zero clusters', async () => {
    const base = memoryDisk(256 * K, [
      [0, 128 * K, 0x22],
      [192 * K, 32 * K, 0x33],
    ]);
    const basePath = join(dir, 'base.qcow2');
    await convertImage(base, basePath, { format: 'qcow2', clusterSize: 4096 });
    // Same as the base except: 8 KiB changed at 16 KiB, 64 KiB zeroed at 64 KiB, new data at 240 KiB.
    const content = Buffer.from(base.content);
    content.fill(0x44, 16 * K, 24 * K);
    content.fill(0, 64 * K, 128 * K);
    content.fill(0x55, 240 * K, 244 * K);
    const src = new MemoryDisk(content, [
      { offset: 0, length: 64 * K, kind: 'data' },
      { offset: 64 * K, length: 128 * K, kind: 'zero' },
      { offset: 192 * K, length: 64 * K, kind: 'data' },
    ]);
    const out = join(dir, 'overlay.qcow2');
    const r = await convertImage(src, out, { format: 'qcow2', clusterSize: 4096, backing: basePath });
    assert.equal(r.dataBytes, 12 * K);
    const back = await readBack(out);
    assert.ok(back.content.equals(content));
    assert.deepEqual(back.top, [
      { offset: 0, length: 16 * K, kind: 'unallocated', depth: undefined },
      { offset: 16 * K, length: 8 * K, kind: 'data', depth: undefined },
      { offset: 24 * K, length: 40 * K, kind: 'unallocated', depth: undefined },
      { offset: 64 * K, length: 64 * K, kind: 'zero', depth: undefined },
      { offset: 128 * K, length: 112 * K, kind: 'unallocated', depth: undefined },
      { offset: 240 * K, length: 4 * K, kind: 'data', depth: undefined },
      { offset: 244 * K, length: 12 * K, kind: 'unallocated', depth: undefined },
    ]);
  });

  it('reads a smaller backing as zeros past its end', async () => {
    const base = memoryDisk(64 * K, [[0, 64 * K, 0x66]]);
    const basePath = join(dir, 'small-base.qcow2');
    await convertImage(base, basePath, { format: 'qcow2', clusterSize: 4096 });
    const src = memoryDisk(128 * K, [
      [0, 64 * K, 0x66],
      [100 * K, 4 * K, 0x77],
    ]);
    const out = join(dir, 'bigger.qcow2');
    const r = await convertImage(src, out, { format: 'qcow2', clusterSize: 4096, backing: basePath });
    assert.equal(r.dataBytes, 4 * K);
    assert.ok((await readBack(out)).content.equals(src.content));
  });

  it('refuses a raw image with a backing file and bad cluster sizes', async () => {
    const src = memoryDisk(64 * K, []);
    await assert.rejects(convertImage(src, join(dir, 'x.raw'), { format: 'raw', backing: 'y' }), {
      code: 'QCOW2_UNSUPPORTED',
    });
    await assert.rejects(convertImage(src, join(dir, 'x.qcow2'), { format: 'qcow2', clusterSize: 1000 }), {
      code: 'QCOW2_UNSUPPORTED',
    });
  });
});
