import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseVirshInfo } from './host-inventory.js';

test('parseVirshInfo reads net-info and pool-info key/value lines', () => {
  const net = parseVirshInfo(
    'Name:           default\nUUID:           2e00bee3-032a-462c-bf4c-cf8193f30d98\nActive:         no\nPersistent:     yes\nAutostart:      no\nBridge:         virbr0\n',
  );
  assert.equal(net.get('name'), 'default');
  assert.equal(net.get('uuid'), '2e00bee3-032a-462c-bf4c-cf8193f30d98');
  assert.equal(net.get('active'), 'no');
  assert.equal(net.get('bridge'), 'virbr0');
  const pool = parseVirshInfo(
    'Name: images\nState: running\nCapacity: 1000\nAllocation: 10\nAvailable: 990\n\n',
  );
  assert.equal(pool.get('state'), 'running');
  assert.equal(pool.get('available'), '990');
  assert.equal(parseVirshInfo('no colon here\n:\n').size, 0);
});
