import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { DiskError } from '../errors.js';
import { MemoryFile } from '../memory-file.js';
import { l1EntryL2Offset, parseQcow2Header, writeCompressedL2Entry, writeL1Entry } from './format.js';
import { Qcow2Image } from './reader.js';
import { buildTestQcow2 } from './test-image.js';

const CS = 65536;
const isMalformed = (e: unknown) => e instanceof DiskError && e.code === 'QCOW2_MALFORMED';

test('extents, reads and cluster lookups of a small image', async () => {
  const bytes = buildTestQcow2({ size: 4 * CS + 1000, data: { 1: 0xaa, 4: 0xbb }, zero: [2] });
  const img = await Qcow2Image.open(new MemoryFile('t', bytes));
  assert.deepEqual(await img.extents(), [
    { offset: 0, length: CS, kind: 'unallocated' },
    { offset: CS, length: CS, kind: 'data' },
    { offset: 2 * CS, length: CS, kind: 'zero' },
    { offset: 3 * CS, length: CS, kind: 'unallocated' },
    { offset: 4 * CS, length: 1000, kind: 'data' },
  ]);
  const buf = await img.read(CS - 2, 4);
  assert.deepEqual([...buf], [0, 0, 0xaa, 0xaa]);
  const m = await img.lookupCluster(1);
  assert.equal(m.entry.kind, 'data');
  assert.equal(m.l1Index, 0);
  assert.equal(m.l2Index, 1);
  assert.ok(m.l2TableOffset > 0);
  assert.equal(await img.allocatedBytes(), 2 * CS);
  await assert.rejects(
    img.read(4 * CS, 1001),
    (e: unknown) => e instanceof DiskError && e.code === 'DISK_RANGE',
  );
  await img.close();
});

test('compressed clusters inflate (deflate, raw stream)', async () => {
  const bytes = buildTestQcow2({ size: 2 * CS, data: { 0: 0x01 } });
  const h = parseQcow2Header(bytes.subarray(0, CS), bytes.length, 't');
  const cluster = Buffer.alloc(CS);
  for (let i = 0; i < CS; i++) cluster[i] = (i * 7) & 0xff;
  const packed = deflateRawSync(cluster);
  const host = bytes.length + 100; // not aligned: compressed data needs no alignment
  const file = Buffer.concat([bytes, Buffer.alloc(100), packed]);
  const l2Offset = l1EntryL2Offset(file.subarray(h.l1TableOffset), 0);
  writeCompressedL2Entry(file.subarray(l2Offset, l2Offset + CS), 1, h, host, packed.length);
  const img = await Qcow2Image.open(new MemoryFile('c', file));
  assert.ok((await img.read(CS, CS)).equals(cluster));
  assert.deepEqual(await img.extents(), [{ offset: 0, length: 2 * CS, kind: 'data' }]);
  // Garbage instead of deflate data is a typed error.
  file.fill(0xff, host, host + packed.length);
  const bad = await Qcow2Image.open(new MemoryFile('bad', file));
  await assert.rejects(bad.read(CS, 10), isMalformed);
});

test('hostile L1/L2 entries are refused with QCOW2_MALFORMED', async () => {
  // Two L1 entries naming the same L2 table.
  const size = 2 * CS * (CS / 8);
  const twice = buildTestQcow2({ size, data: { 0: 1 } });
  const h = parseQcow2Header(twice.subarray(0, CS), twice.length, 't');
  const l1 = twice.subarray(h.l1TableOffset, h.l1TableOffset + 16);
  writeL1Entry(l1, 1, l1EntryL2Offset(l1, 0));
  await assert.rejects(Qcow2Image.open(new MemoryFile('twice', twice)), isMalformed);

  // A data cluster past the end of the file.
  const past = buildTestQcow2({ size: 2 * CS, data: { 0: 1 } });
  const hp = parseQcow2Header(past.subarray(0, CS), past.length, 't');
  const l2 = l1EntryL2Offset(past.subarray(hp.l1TableOffset), 0);
  past.writeBigUInt64BE((1n << 63n) | BigInt(CS * 1000), l2 + 8);
  const img = await Qcow2Image.open(new MemoryFile('past', past));
  await assert.rejects(img.extents(), isMalformed);
  await assert.rejects(img.read(0, 2 * CS), isMalformed);
});
