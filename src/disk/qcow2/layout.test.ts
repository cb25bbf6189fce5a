import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClusterRun } from './cluster-plan.js';
import {
  computeLayout,
  encodeHeaderCluster,
  encodeL1Table,
  encodeL2Tables,
  encodeRefcountBlock,
  QCOW2_MAGIC,
} from './layout.js';

describe('computeLayout', () => {
  it('places the tables in order and counts every cluster once', () => {
    const runs: ClusterRun[] = [
      { start: 0, count: 10, kind: 'data' },
      { start: 20000, count: 5, kind: 'zero' },
      { start: 40000, count: 3, kind: 'data' },
    ];
    const l = computeLayout(runs, 3 * 2 ** 30, 65536);
    assert.equal(l.l1Entries, 6);
    assert.deepEqual(l.l2Indexes, [0, 2, 4]);
    assert.equal(l.refcountTableOffset, 65536);
    assert.ok(l.refcountBlocksOffset < l.l1Offset && l.l1Offset < l.l2Offset && l.l2Offset < l.dataOffset);
    assert.equal(l.dataClusters, 13);
    assert.equal(l.fileSize, l.dataOffset + 13 * 65536);
    assert.equal(l.totalClusters * 65536, l.fileSize);
  });

  it('reaches a fixed point where refcount blocks cover themselves', () => {
    for (const cs of [512, 4096, 65536]) {
      for (const dataClusters of [0, 1, 255, 256, 257, 5000, 70000]) {
        const runs: ClusterRun[] = dataClusters ? [{ start: 0, count: dataClusters, kind: 'data' }] : [];
        const l = computeLayout(runs, Math.max(1, dataClusters) * cs, cs);
        const perBlock = (cs * 8) / 16;
        assert.ok(l.refcountBlockCount * perBlock >= l.totalClusters, `cs ${cs} n ${dataClusters}`);
        assert.ok(l.refcountTableClusters * (cs / 8) >= l.refcountBlockCount);
        const last = encodeRefcountBlock(l, l.refcountBlockCount - 1);
        const inLast = l.totalClusters - (l.refcountBlockCount - 1) * perBlock;
        assert.equal(last.readUInt16BE((inLast - 1) * 2), 1);
        if (inLast < perBlock) assert.equal(last.readUInt16BE(inLast * 2), 0);
      }
    }
  });

  it('refuses cluster sizes qcow2 cannot have', () => {
    assert.throws(() => computeLayout([], 1 << 20, 256), { code: 'QCOW2_UNSUPPORTED' });
    assert.throws(() => computeLayout([], 1 << 20, 3 * 4096), { code: 'QCOW2_UNSUPPORTED' });
    assert.throws(() => computeLayout([], 1 << 20, 4 << 20), { code: 'QCOW2_UNSUPPORTED' });
  });
});

describe('table encoders', () => {
  const runs: ClusterRun[] = [
    { start: 1, count: 2, kind: 'data' },
    { start: 3, count: 1, kind: 'zero' },
    { start: 63, count: 3, kind: 'data' },
  ];
  const l = computeLayout(runs, 1 << 20, 512);

  it('numbers data clusters in guest order across L2 tables', () => {
    assert.deepEqual(l.l2Indexes, [0, 1]);
    const [t0, t1] = [...encodeL2Tables(l, runs)];
    const host = (t: Buffer, i: number) => Number(t.readBigUInt64BE(i * 8) & 0x00fffffffffffe00n);
    assert.equal(host(t0, 1), l.dataOffset);
    assert.equal(host(t0, 2), l.dataOffset + 512);
    assert.equal(t0.readBigUInt64BE(3 * 8), 1n); // zero flag, no host cluster
    assert.equal(host(t0, 63), l.dataOffset + 2 * 512);
    assert.equal(host(t1, 0), l.dataOffset + 3 * 512);
    assert.equal(host(t1, 1), l.dataOffset + 4 * 512);
    assert.equal(t1.readBigUInt64BE(2 * 8), 0n);
    assert.equal(t0.readBigUInt64BE(8) >> 63n, 1n); // COPIED
  });

  it('points the L1 table at the L2 tables', () => {
    const l1 = encodeL1Table(l);
    assert.equal(l1.readBigUInt64BE(8) & 0x00fffffffffffe00n, BigInt(l.l2Offset + 512));
    assert.equal(l1.readBigUInt64BE(16), 0n);
  });

  it('stores the backing file name and format in the header cluster', () => {
    const h = encodeHeaderCluster(l, { name: '../base/disk.qcow2', format: 'qcow2' });
    assert.equal(h.readUInt32BE(0), QCOW2_MAGIC);
    const off = Number(h.readBigUInt64BE(8));
    const len = h.readUInt32BE(16);
    assert.equal(h.subarray(off, off + len).toString(), '../base/disk.qcow2');
    assert.throws(() => encodeHeaderCluster(l, { name: 'x'.repeat(400), format: 'qcow2' }), {
      code: 'QCOW2_UNSUPPORTED',
    });
  });
});
