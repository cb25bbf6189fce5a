import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskError } from './errors.js';
import { MemoryFile } from './memory-file.js';
import { openDiskFile, openDiskImage, probeFormat } from './open.js';
import { ChainReader } from './qcow2/chain.js';
import { buildTestQcow2 } from './qcow2/test-image.js';
import { RawDisk } from './raw.js';

test('probeFormat: qcow2 by magic, anything else raw', async () => {
  assert.equal(await probeFormat(new MemoryFile('q', buildTestQcow2({ size: 65536 }))), 'qcow2');
  assert.equal(await probeFormat(new MemoryFile('r', Buffer.alloc(4096, 1))), 'raw');
  assert.equal(await probeFormat(new MemoryFile('empty', Buffer.alloc(0))), 'raw');
});

test('openDiskFile returns a chain reader for qcow2 and a raw disk otherwise', async () => {
  const q = await openDiskFile(new MemoryFile('q', buildTestQcow2({ size: 65536 })));
  assert.ok(q instanceof ChainReader);
  const r = await openDiskFile(new MemoryFile('r', Buffer.alloc(512)));
  assert.ok(r instanceof RawDisk);
  assert.equal(r.virtualSize, 512);
});

test('openDiskImage: files on disk, missing files are DISK_NOT_FOUND', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-open-'));
  try {
    await writeFile(join(dir, 'a.qcow2'), buildTestQcow2({ size: 65536 }));
    const d = await openDiskImage(join(dir, 'a.qcow2'));
    assert.equal(d.virtualSize, 65536);
    await d.close();
    await assert.rejects(
      openDiskImage(join(dir, 'nope')),
      (e: unknown) => e instanceof DiskError && e.code === 'DISK_NOT_FOUND',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
