import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskError } from './errors.js';
import { MemoryFile } from './memory-file.js';
import { RAW_SCAN_CHUNK, RawDisk } from './raw.js';

test('extents: 64 KiB chunks compared with zeros, a short last chunk included', async () => {
  const c = RAW_SCAN_CHUNK;
  const bytes = Buffer.alloc(5 * c + 1000);
  bytes[c + 500] = 1; // chunk 1: data
  bytes[3 * c] = 1; // chunk 3: data
  bytes[5 * c + 999] = 7; // short tail: data
  const disk = new RawDisk(new MemoryFile('raw', bytes));
  assert.equal(disk.virtualSize, bytes.length);
  assert.deepEqual(await disk.extents(), [
    { offset: 0, length: c, kind: 'zero' },
    { offset: c, length: c, kind: 'data' },
    { offset: 2 * c, length: c, kind: 'zero' },
    { offset: 3 * c, length: c, kind: 'data' },
    { offset: 4 * c, length: c, kind: 'zero' },
    { offset: 5 * c, length: 1000, kind: 'data' },
  ]);
  // A sub-range starting mid-chunk is clipped to the request.
  assert.deepEqual(await disk.extents(c + 100, c), [
    { offset: c + 100, length: c - 100, kind: 'data' },
    { offset: 2 * c, length: 100, kind: 'zero' },
  ]);
  assert.ok((await disk.read(c, 10)).equals(bytes.subarray(c, c + 10)));
  await assert.rejects(
    disk.read(bytes.length - 1, 2),
    (e: unknown) => e instanceof DiskError && e.code === 'DISK_RANGE',
  );
});

test('a large all-zero file is one zero extent', async () => {
  const disk = new RawDisk(new MemoryFile('z', Buffer.alloc(9 * 1024 * 1024)));
  assert.deepEqual(await disk.extents(), [{ offset: 0, length: 9 * 1024 * 1024, kind: 'zero' }]);
});
