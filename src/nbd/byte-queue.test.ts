import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByteQueue } from './byte-queue.js';

test('take/peek across chunk boundaries', () => {
  const q = new ByteQueue();
  q.push(Buffer.from([1, 2]));
  q.push(Buffer.from([3, 4, 5]));
  q.push(Buffer.from([6]));
  assert.equal(q.length, 6);
  assert.equal(q.peekUInt32(), 0x01020304);
  assert.deepEqual([...q.take(3)], [1, 2, 3]);
  assert.deepEqual([...q.takeCopy(2)], [4, 5]);
  assert.equal(q.length, 1);
  q.skip(5);
  assert.equal(q.length, 0);
});

test('copyInto moves bytes into a destination and reports how many', () => {
  const q = new ByteQueue();
  q.push(Buffer.from('hello '));
  q.push(Buffer.from('world'));
  const dest = Buffer.alloc(20, 0x2e);
  assert.equal(q.copyInto(dest, 2, 8), 8);
  assert.equal(dest.toString('latin1', 0, 12), '..hello wo..');
  assert.equal(q.copyInto(dest, 10, 100), 3);
  assert.equal(q.length, 0);
});

test('detach copies borrowed views so the reused buffer can be overwritten', () => {
  const q = new ByteQueue();
  const shared = Buffer.from([9, 9, 9, 9]);
  q.push(Buffer.from([1]));
  q.push(shared.subarray(1, 3), true);
  q.detach();
  shared.fill(0);
  assert.deepEqual([...q.takeCopy(3)], [1, 9, 9]);
});
