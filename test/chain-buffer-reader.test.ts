import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openDiskImage } from '../src/disk/open.js';
import { bufferReaderFor } from '../src/disk/qcow2/chain-buffer-reader.js';
import { qemuImg, qemuIo, tempDir } from './helpers/qemu-img.js';

const M = 1024 * 1024;

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-buffer-reader-'));
});
after(() => cleanup());

/** readInto must give exactly what Disk.read gives, for ranges cutting across every kind of layer. */
async function assertSameAsRead(image: string, perRangeMap = false): Promise<void> {
  const disk = await openDiskImage(image);
  try {
    const reader = bufferReaderFor(disk, { perRangeMap });
    const size = disk.virtualSize;
    const ranges: [number, number][] = [
      [0, size],
      [12345, 3 * M + 7],
      [size - 70000, 70000],
    ];
    for (let i = 0; i < 20; i++) {
      const offset = Math.floor(Math.random() * (size - 1));
      ranges.push([offset, Math.min(size - offset, 1 + Math.floor(Math.random() * 2 * M))]);
    }
    for (const [offset, length] of ranges) {
      const target = Buffer.alloc(length, 0xee); // stale bytes must be overwritten, zeros included
      await reader.readInto(target, offset);
      const expected = await disk.read(offset, length);
      assert.ok(target.equals(expected), `${image}: range ${offset}+${length} differs`);
    }
  } finally {
    await disk.close();
  }
}

describe('bufferReaderFor', () => {
  it('reads a chain over a raw base, with compressed, zero and extended-L2 layers', async () => {
    const base = join(dir, 'base.raw');
    await qemuImg('create', '-q', '-f', 'raw', base, '8M');
    await qemuIo(base, ['write -P 0x01 0 8M'], 'raw');
    const mid = join(dir, 'mid.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', mid);
    await qemuIo(mid, ['write -c -P 0x02 1M 64k', 'write -P 0x03 2M 1M', 'write -z 4M 512k']);
    const top = join(dir, 'top.qcow2');
    await qemuImg(
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      'extended_l2=on',
      '-b',
      'mid.qcow2',
      '-F',
      'qcow2',
      top,
    );
    await qemuIo(top, ['write -P 0x04 2100k 4k', 'write -P 0x05 6M 300k', 'write -z 7M 8k']);
    await assertSameAsRead(top);
    await assertSameAsRead(top, true);
    await assertSameAsRead(mid);
    await assertSameAsRead(mid, true);
    await assertSameAsRead(base);
  });
});
