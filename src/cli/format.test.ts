import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, progressBar, table } from './format.js';

test('formatBytes picks binary units', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(64 * 1024 * 1024), '64 MiB');
  assert.equal(formatBytes(null), '-');
});

test('progressBar fills in proportion and clamps', () => {
  assert.equal(progressBar(5, 10, 10, 'units'), '[#####.....]  50%  5 / 10');
  assert.equal(progressBar(20, 10, 4, 'units'), '[####] 100%  20 / 10');
  assert.equal(progressBar(0, 0, 4), '[....]');
});

test('table pads all columns but the last', () => {
  assert.equal(table(['A', 'BB'], [['xyz', 'q']]), 'A    BB\nxyz  q\n');
});
