import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskError } from '../errors.js';
import { EXT_FEATURE_NAME_TABLE, parseQcow2Header } from './header.js';
import { buildTestQcow2 } from './test-image.js';

const base = () => buildTestQcow2({ size: 8 << 20, backing: '../base.qcow2', backingFormat: 'qcow2' });
const parse = (b: Buffer) => parseQcow2Header(b.subarray(0, 65536), b.length, 'img');

function fails(b: Buffer, code: string, message?: RegExp): void {
  assert.throws(
    () => parse(b),
    (e: unknown) => e instanceof DiskError && e.code === code && (!message || message.test(e.message)),
  );
}

test('parses a v3 header with backing name and format', () => {
  const h = parse(base());
  assert.equal(h.version, 3);
  assert.equal(h.clusterSize, 65536);
  assert.equal(h.size, 8 << 20);
  assert.equal(h.backingFileName, '../base.qcow2');
  assert.equal(h.backingFormat, 'qcow2');
  assert.equal(h.refcountBits, 16);
  assert.equal(h.l2Entries, 8192);
  assert.equal(h.extendedL2, false);
});

test('refuses what is not qcow2, or a version we do not know', () => {
  const b = base();
  b.write('QFI\xfc', 0, 'latin1');
  fails(b, 'QCOW2_BAD_MAGIC');
  const v = base();
  v.writeUInt32BE(4, 4);
  fails(v, 'QCOW2_UNSUPPORTED', /version 4/);
});

test('cluster_bits must be 9..21 and refcount_order 0..6', () => {
  for (const bits of [0, 8, 22, 63]) {
    const b = base();
    b.writeUInt32BE(bits, 20);
    fails(b, 'QCOW2_MALFORMED', /cluster_bits/);
  }
  const r = base();
  r.writeUInt32BE(7, 96);
  fails(r, 'QCOW2_MALFORMED', /refcount_order/);
});

test('refuses encryption, external data files and zstd with typed UNSUPPORTED errors', () => {
  const enc = base();
  enc.writeUInt32BE(2, 32);
  fails(enc, 'QCOW2_UNSUPPORTED', /encrypt/);
  const ext = base();
  ext.writeBigUInt64BE(1n << 2n, 72);
  fails(ext, 'QCOW2_UNSUPPORTED', /external data file/);
  // zstd: incompatible bit 3 and compression_type 1 in a 112-byte header.
  const z = buildTestQcow2({ size: 1 << 20 });
  z.writeUInt32BE(112, 100);
  z[104] = 1;
  z.writeBigUInt64BE(1n << 3n, 72);
  fails(z, 'QCOW2_UNSUPPORTED', /unsupported compression/);
});

test('unknown incompatible features are refused, named from the feature table', () => {
  const b = buildTestQcow2({ size: 1 << 20 });
  b.writeBigUInt64BE(1n << 9n, 72);
  b.writeUInt32BE(EXT_FEATURE_NAME_TABLE, 104);
  b.writeUInt32BE(48, 108);
  b[112] = 0;
  b[113] = 9;
  b.write('time travel', 114);
  fails(b, 'QCOW2_UNSUPPORTED', /time travel/);
});

test('dirty bit and lazy refcounts are fine for reading', () => {
  const b = base();
  b.writeBigUInt64BE(1n, 72);
  b.writeBigUInt64BE(1n, 80);
  const h = parse(b);
  assert.equal(h.dirty, true);
  assert.equal(h.lazyRefcounts, true);
});

test('tables must lie inside the file and the L1 must cover the virtual size', () => {
  const small = base();
  small.writeBigUInt64BE(BigInt(2 ** 40), 24); // 1 TiB needs 2048 L1 entries, the table has 1
  fails(small, 'QCOW2_MALFORMED', /L1 table too small/);
  const past = base();
  past.writeUInt32BE(100000, 36);
  fails(past, 'QCOW2_MALFORMED', /L1 table beyond/);
  const rt = base();
  rt.writeBigUInt64BE(BigInt(2 ** 40), 48);
  fails(rt, 'QCOW2_MALFORMED', /refcount table/);
  const huge = base();
  huge.writeBigUInt64BE(2n ** 60n, 24);
  fails(huge, 'QCOW2_MALFORMED', /size out of range/);
  const snaps = base();
  snaps.writeUInt32BE(10, 60);
  snaps.writeBigUInt64BE(BigInt(2 ** 30), 64);
  fails(snaps, 'QCOW2_MALFORMED', /snapshot table/);
});

test('header extensions and backing names are bounds-checked', () => {
  const ext = buildTestQcow2({ size: 1 << 20 });
  ext.writeUInt32BE(0x12345678, 104);
  ext.writeUInt32BE(0x7fffffff, 108);
  fails(ext, 'QCOW2_MALFORMED', /overruns/);
  const name = base();
  name.writeUInt32BE(5000, 16);
  fails(name, 'QCOW2_MALFORMED', /backing file name/);
  const off = base();
  off.writeBigUInt64BE(70000n, 8);
  fails(off, 'QCOW2_MALFORMED', /backing file name/);
});

test('v2 headers: 72 bytes, refcount order 4, backing name right after the header', () => {
  const b = Buffer.alloc(3 * 65536 + 8);
  buildTestQcow2({ size: 1 << 20 }).copy(b, 0, 0, 72);
  b.writeUInt32BE(2, 4);
  b.write('base.img', 72);
  b.writeBigUInt64BE(72n, 8);
  b.writeUInt32BE(8, 16);
  const h = parse(b);
  assert.equal(h.version, 2);
  assert.equal(h.headerLength, 72);
  assert.equal(h.refcountOrder, 4);
  assert.equal(h.backingFileName, 'base.img');
  assert.equal(h.extensions.length, 0);
});
