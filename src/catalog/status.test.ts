import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CatalogError } from './errors.js';
import {
  allowedFrom,
  assertTransition,
  canTransition,
  isTerminal,
  JOB_STATUSES,
  TASK_STATUSES,
} from './status.js';

test('jobs: finished is final, cancelling can still end either way', () => {
  for (const s of ['succeeded', 'failed', 'cancelled'] as const) {
    assert.ok(isTerminal('job', s));
    for (const to of JOB_STATUSES) assert.equal(canTransition('job', s, to), false, `${s} → ${to}`);
  }
  assert.ok(canTransition('job', 'queued', 'running'));
  assert.ok(canTransition('job', 'running', 'cancelling'));
  assert.ok(canTransition('job', 'cancelling', 'succeeded'));
  assert.equal(canTransition('job', 'queued', 'succeeded'), false);
  assert.equal(canTransition('job', 'queued', 'cancelling'), false);
});

test('tasks: only a running task goes back to the queue', () => {
  assert.deepEqual(allowedFrom('task', 'queued'), ['running']);
  assert.deepEqual(allowedFrom('task', 'cancelled').sort(), ['queued', 'running']);
  for (const s of TASK_STATUSES) assert.equal(canTransition('task', s, s), false, `${s} → ${s}`);
});

test('allowedFrom is the inverse of the transition table', () => {
  for (const to of JOB_STATUSES) {
    for (const from of JOB_STATUSES) {
      assert.equal(allowedFrom('job', to).includes(from), canTransition('job', from, to), `${from} → ${to}`);
    }
  }
});

test('assertTransition names both ends', () => {
  assert.throws(
    () => assertTransition('snapshot', 'available', 'creating'),
    (e: unknown) =>
      e instanceof CatalogError &&
      e.code === 'CATALOG_BAD_TRANSITION' &&
      /available to creating/.test(e.message),
  );
  assert.doesNotThrow(() => assertTransition('snapshot', 'creating', 'available'));
});
