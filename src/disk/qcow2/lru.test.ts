import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LruCache } from './lru.js';

test('evicts the least recently used entry', () => {
  const c = new LruCache<number, string>(2);
  c.set(1, 'a');
  c.set(2, 'b');
  assert.equal(c.get(1), 'a'); // 1 is now the most recent
  c.set(3, 'c');
  assert.equal(c.get(2), undefined);
  assert.equal(c.get(1), 'a');
  assert.equal(c.get(3), 'c');
  assert.equal(c.size, 2);
});
