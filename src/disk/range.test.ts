import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskError } from './errors.js';
import { checkDiskRange } from './range.js';

function rangeError(fn: () => void): DiskError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof DiskError);
    assert.equal(err.code, 'DISK_RANGE');
    return err;
  }
  assert.fail('expected DISK_RANGE');
}

test('checkDiskRange accepts whole ranges inside the disk, up to its end', () => {
  checkDiskRange(0, 0, 0);
  checkDiskRange(0, 4096, 4096, 'a.raw');
  checkDiskRange(4096, 0, 4096);
});

test('checkDiskRange refuses negative, fractional and out-of-bounds ranges, naming the disk', () => {
  assert.match(rangeError(() => checkDiskRange(-1, 1, 10, 'a.raw')).message, /^a\.raw: invalid range -1\+1$/);
  rangeError(() => checkDiskRange(0.5, 1, 10));
  rangeError(() => checkDiskRange(0, Number.MAX_SAFE_INTEGER + 1, 10));
  const beyond = rangeError(() => checkDiskRange(8, 4, 10));
  assert.equal(beyond.message, 'range 8+4 beyond the virtual size 10');
  assert.deepEqual(beyond.details, { offset: 8, length: 4, size: 10 });
});
