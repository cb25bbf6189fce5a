import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseListen } from './server.js';
import { Wakeup } from './wakeup.js';

test('notify wakes every waiter; later waiters wait for the next notify', async () => {
  const w = new Wakeup();
  let woken = 0;
  const a = w.wait(60_000).then(() => woken++);
  const b = w.wait(60_000).then(() => woken++);
  w.notify();
  await Promise.all([a, b]);
  assert.equal(woken, 2);
  w.close();
});

test('close ends waits and makes new ones return at once', async () => {
  const w = new Wakeup();
  const pending = w.wait(60_000);
  w.close();
  await pending;
  await w.wait(60_000);
  assert.equal(w.isClosed, true);
});

test('an aborted signal ends a wait', async () => {
  const w = new Wakeup();
  const ac = new AbortController();
  const pending = w.wait(60_000, ac.signal);
  ac.abort();
  await pending;
  w.close();
});

test('parseListen takes HOST:PORT and [IPv6]:PORT', () => {
  assert.deepEqual(parseListen('127.0.0.1:7780'), { host: '127.0.0.1', port: 7780 });
  assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
  assert.throws(() => parseListen('7780'));
  assert.throws(() => parseListen('host:99999'));
});
