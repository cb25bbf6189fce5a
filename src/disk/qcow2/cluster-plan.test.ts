import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Extent } from '../extent.js';
import { clustersOfKind, planClusters } from './cluster-plan.js';

const K = 1024;
const d = (offset: number, length: number): Extent => ({ offset, length, kind: 'data' });
const z = (offset: number, length: number): Extent => ({ offset, length, kind: 'zero' });
const u = (offset: number, length: number): Extent => ({ offset, length, kind: 'unallocated' });

describe('planClusters', () => {
  it('keeps only data clusters when there is no backing file', () => {
    const runs = planClusters([d(0, 8 * K), z(8 * K, 8 * K), u(16 * K, 16 * K)], 32 * K, 4 * K, false);
    assert.deepEqual(runs, [{ start: 0, count: 2, kind: 'data' }]);
  });

  it('turns zero extents into zero clusters over a backing file', () => {
    const runs = planClusters([d(0, 8 * K), z(8 * K, 8 * K), u(16 * K, 16 * K)], 32 * K, 4 * K, true);
    assert.deepEqual(runs, [
      { start: 0, count: 2, kind: 'data' },
      { start: 2, count: 2, kind: 'zero' },
    ]);
  });

  it('makes a cluster touched by any data byte a data cluster', () => {
    const runs = planClusters([u(0, 5000), d(5000, 10), u(5010, 20000 - 5010)], 20000, 4 * K, false);
    assert.deepEqual(runs, [{ start: 1, count: 1, kind: 'data' }]);
  });

  it('stores a cluster mixing zero and unallocated as data when it has a backing file', () => {
    const runs = planClusters([z(0, 6 * K), u(6 * K, 10 * K)], 16 * K, 4 * K, true);
    assert.deepEqual(runs, [
      { start: 0, count: 1, kind: 'zero' },
      { start: 1, count: 1, kind: 'data' },
    ]);
  });

  it('counts bytes covered by no extent as unallocated', () => {
    const runs = planClusters([z(0, 2 * K), z(3 * K, K)], 4 * K, 4 * K, true);
    assert.deepEqual(runs, [{ start: 0, count: 1, kind: 'data' }]);
    const full = planClusters([z(0, 2 * K), z(2 * K, 2 * K)], 4 * K, 4 * K, true);
    assert.deepEqual(full, [{ start: 0, count: 1, kind: 'zero' }]);
  });

  it('treats the last cluster past the virtual size as fully covered by what is inside', () => {
    const runs = planClusters([u(0, 4 * K), z(4 * K, 1000)], 4 * K + 1000, 4 * K, true);
    assert.deepEqual(runs, [{ start: 1, count: 1, kind: 'zero' }]);
  });

  it('merges adjacent runs of one kind across extents', () => {
    const runs = planClusters([d(0, 3 * K), d(3 * K, 5 * K), d(8 * K, 8 * K)], 16 * K, 4 * K, false);
    assert.deepEqual(runs, [{ start: 0, count: 4, kind: 'data' }]);
    assert.equal(clustersOfKind(runs, 'data'), 4);
  });

  it('clips extents to the virtual size and refuses overlapping ones', () => {
    assert.deepEqual(planClusters([d(0, 64 * K)], 8 * K, 4 * K, false), [
      { start: 0, count: 2, kind: 'data' },
    ]);
    assert.throws(() => planClusters([d(0, 8 * K), d(4 * K, 8 * K)], 16 * K, 4 * K, false), {
      code: 'DISK_RANGE',
    });
  });
});
