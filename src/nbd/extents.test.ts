import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Extent } from '../disk/extent.js';
import { intersectDirtyWithAllocation } from './extents.js';

const K = 1024;

test('dirty ∩ allocation: changed data, changed-to-zero, unchanged', () => {
  const dirty: Extent[] = [
    { offset: 0, length: 64 * K, kind: 'unallocated' },
    { offset: 64 * K, length: 128 * K, kind: 'data' },
    { offset: 192 * K, length: 64 * K, kind: 'unallocated' },
  ];
  const allocation: Extent[] = [
    { offset: 0, length: 96 * K, kind: 'data' },
    { offset: 96 * K, length: 64 * K, kind: 'zero' },
    { offset: 160 * K, length: 96 * K, kind: 'data' },
  ];
  assert.deepEqual(intersectDirtyWithAllocation(dirty, allocation), [
    { offset: 0, length: 64 * K, kind: 'unallocated' },
    { offset: 64 * K, length: 32 * K, kind: 'data' },
    { offset: 96 * K, length: 64 * K, kind: 'zero' },
    { offset: 160 * K, length: 32 * K, kind: 'data' },
    { offset: 192 * K, length: 64 * K, kind: 'unallocated' },
  ]);
});

test('a dirty range that is now unallocated becomes zero; gaps in the allocation map stay data', () => {
  const dirty: Extent[] = [{ offset: 0, length: 300, kind: 'data' }];
  const allocation: Extent[] = [
    { offset: 0, length: 100, kind: 'unallocated' },
    { offset: 200, length: 50, kind: 'data' },
  ];
  assert.deepEqual(intersectDirtyWithAllocation(dirty, allocation), [
    { offset: 0, length: 100, kind: 'zero' },
    { offset: 100, length: 200, kind: 'data' },
  ]);
});

test('empty inputs', () => {
  assert.deepEqual(intersectDirtyWithAllocation([], []), []);
  assert.deepEqual(intersectDirtyWithAllocation([{ offset: 0, length: 10, kind: 'unallocated' }], []), [
    { offset: 0, length: 10, kind: 'unallocated' },
  ]);
});
