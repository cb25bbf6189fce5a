import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LifeboatError } from '../errors.js';
import { DatamoverServiceError, isRetryable } from './service-errors.js';
import { TaskHandlerRegistry } from './task-handlers.js';
import { describeFailure } from './task-runner.js';

test('describeFailure keeps a LifeboatError code, message and JSON details', () => {
  const f = describeFailure(
    new LifeboatError('DOMAIN_NOT_FOUND', 'no domain vm1', { details: { name: 'vm1' } }),
  );
  assert.deepEqual(f, { code: 'DOMAIN_NOT_FOUND', message: 'no domain vm1', details: { name: 'vm1' } });
});

test('describeFailure names untyped errors DATAMOVER_HANDLER_FAILED', () => {
  assert.deepEqual(describeFailure(new TypeError('x is undefined')), {
    code: 'DATAMOVER_HANDLER_FAILED',
    message: 'x is undefined',
  });
  assert.equal(describeFailure('plain string').message, 'plain string');
});

test('describeFailure drops details that are not JSON', () => {
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const f = describeFailure(new LifeboatError('X', 'y', { details: circular }));
  assert.equal(f.details, undefined);
});

test('only an unreachable controller is worth retrying', () => {
  assert.equal(isRetryable(new DatamoverServiceError('DATAMOVER_CONTROLLER_UNREACHABLE', 'down')), true);
  assert.equal(isRetryable(new DatamoverServiceError('DATAMOVER_CONTROLLER_REFUSED', 'bad token')), false);
  assert.equal(isRetryable(new Error('x')), false);
});

test('the handler registry refuses odd kinds and lists kinds sorted', () => {
  const r = new TaskHandlerRegistry();
  assert.throws(() => r.register('Bad Kind', async () => null));
  r.register('b.two', async () => 2).register('a.one', async () => 1);
  assert.deepEqual(r.kinds(), ['a.one', 'b.two']);
  assert.equal(r.get('nope'), undefined);
});
