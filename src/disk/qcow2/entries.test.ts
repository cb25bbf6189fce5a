import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskError } from '../errors.js';
import {
  decodeL2Entry,
  l1EntryCopied,
  l1EntryL2Offset,
  readRefcount,
  refcountTableEntry,
  writeCompressedL2Entry,
  writeL1Entry,
  writeRefcount,
  writeRefcountTableEntry,
  writeStandardL2Entry,
  writeU64,
} from './entries.js';
import { parseQcow2Header } from './header.js';
import { buildTestQcow2 } from './test-image.js';

function header(clusterBits: number, extendedL2 = false) {
  const buf = buildTestQcow2({ size: 1 << 20, clusterBits });
  if (extendedL2) buf.writeBigUInt64BE(1n << 4n, 72);
  return parseQcow2Header(buf.subarray(0, 2 ** clusterBits), buf.length, 't');
}

test('L1 entries round-trip offsets up to 2^56 and the COPIED bit', () => {
  const l1 = Buffer.alloc(32);
  const big = 2 ** 55 + 2 ** 40 + 512 * 7;
  writeL1Entry(l1, 1, big, true);
  writeL1Entry(l1, 2, 65536, false);
  assert.equal(l1EntryL2Offset(l1, 0), 0);
  assert.equal(l1EntryL2Offset(l1, 1), big);
  assert.equal(l1EntryCopied(l1, 1), true);
  assert.equal(l1EntryL2Offset(l1, 2), 65536);
  assert.equal(l1EntryCopied(l1, 2), false);
});

test('standard L2 entries: data, zero flag, unallocated, unaligned', () => {
  const h = header(16);
  const l2 = Buffer.alloc(h.clusterSize);
  writeStandardL2Entry(l2, 0, h, { hostOffset: 3 * 65536 });
  writeStandardL2Entry(l2, 1, h, { hostOffset: 0, zeroMask: 1 });
  writeStandardL2Entry(l2, 2, h, { hostOffset: 5 * 65536, zeroMask: 1 });
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => decodeL2Entry(l2, i, h).kind),
    ['data', 'zero', 'zero', 'unallocated'],
  );
  assert.equal(decodeL2Entry(l2, 0, h).hostOffset, 3 * 65536);
  assert.equal(decodeL2Entry(l2, 0, h).copied, true);
  assert.equal(decodeL2Entry(l2, 2, h).hostOffset, 5 * 65536); // preallocated zero cluster
  writeU64(l2, 8 * 4, 65536 + 512);
  assert.throws(
    () => decodeL2Entry(l2, 4, h),
    (e: unknown) => e instanceof DiskError && e.code === 'QCOW2_MALFORMED',
  );
});

test('extended L2 entries: subcluster masks, mixed clusters, invalid combinations', () => {
  const h = header(16, true);
  assert.equal(h.l2EntrySize, 16);
  assert.equal(h.subclusterSize, 2048);
  const l2 = Buffer.alloc(h.clusterSize);
  writeStandardL2Entry(l2, 0, h, { hostOffset: 65536, allocMask: 0b1011, zeroMask: 0b0100 });
  writeStandardL2Entry(l2, 1, h, { hostOffset: 0, zeroMask: 0xffffffff });
  writeStandardL2Entry(l2, 2, h, { hostOffset: 131072 });
  const e0 = decodeL2Entry(l2, 0, h);
  assert.equal(e0.kind, 'mixed');
  assert.equal(e0.allocMask, 0b1011);
  assert.equal(e0.zeroMask, 0b0100);
  assert.equal(decodeL2Entry(l2, 1, h).kind, 'zero');
  assert.equal(decodeL2Entry(l2, 2, h).kind, 'data');
  assert.equal(decodeL2Entry(l2, 3, h).kind, 'unallocated');
  writeStandardL2Entry(l2, 4, h, { hostOffset: 65536, allocMask: 1, zeroMask: 1 });
  assert.throws(() => decodeL2Entry(l2, 4, h), /both allocated and zero/);
  writeStandardL2Entry(l2, 5, h, { hostOffset: 0, allocMask: 1 });
  assert.throws(() => decodeL2Entry(l2, 5, h), /without host offset/);
});

test('compressed descriptors round-trip for every cluster size', () => {
  for (let bits = 9; bits <= 21; bits++) {
    const h = header(bits);
    const l2 = Buffer.alloc(h.clusterSize);
    const host = 12345 * 512 + 77;
    const size = Math.min(h.clusterSize, 3000);
    writeCompressedL2Entry(l2, 1, h, host, size);
    const e = decodeL2Entry(l2, 1, h);
    assert.equal(e.kind, 'compressed', `bits ${bits}`);
    assert.equal(e.hostOffset, host);
    // The descriptor counts whole sectors: at least `size` bytes, less than one more sector.
    assert.ok(e.compressedSize >= size && e.compressedSize < size + 512, `bits ${bits}: ${e.compressedSize}`);
  }
});

test('refcounts of every width (1..64 bits) round-trip without touching neighbours', () => {
  for (let order = 0; order <= 6; order++) {
    const bits = 1 << order;
    const block = Buffer.alloc(64);
    const max = order === 6 ? 2 ** 40 : 2 ** bits - 1;
    const entries = (64 * 8) / bits;
    for (let i = 0; i < entries; i++) writeRefcount(block, i, order, i % 3 === 0 ? max : i % 2);
    for (let i = 0; i < entries; i++) {
      assert.equal(readRefcount(block, i, order), i % 3 === 0 ? max : i % 2, `order ${order} entry ${i}`);
    }
  }
  // Sub-byte widths: entry 0 is the least significant bit(s) of byte 0.
  const b = Buffer.alloc(1);
  writeRefcount(b, 0, 0, 1);
  assert.equal(b[0], 1);
  writeRefcount(b, 1, 2, 0xf);
  assert.equal(b[0], 0xf1);
});

test('refcount table entries', () => {
  const t = Buffer.alloc(16);
  writeRefcountTableEntry(t, 1, 7 * 65536);
  assert.equal(refcountTableEntry(t, 0), 0);
  assert.equal(refcountTableEntry(t, 1), 7 * 65536);
});
