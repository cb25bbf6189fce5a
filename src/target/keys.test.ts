import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTargetError } from './errors.js';
import { assertKey, isSafeId, relativeKey, resolveRelativeKey } from './keys.js';
import { backingReference } from './layout.js';

describe('target keys', () => {
  it('accepts UUIDs and slugs, refuses path tricks', () => {
    assert.ok(isSafeId('6b0c8d3e-1111-2222-3333-444455556666'));
    assert.ok(isSafeId('web_app.v2'));
    for (const bad of ['', '.', '..', 'a..b', '.hidden', 'a/b', 'a b', 'é', 'x'.repeat(201)]) {
      assert.equal(isSafeId(bad), false, bad);
    }
    for (const bad of ['', '/a', 'a/', 'a//b', 'a/../b', './a', 'a\\b']) {
      assert.throws(
        () => assertKey(bad),
        (e) => isTargetError(e, 'TARGET_BAD_KEY'),
        bad,
      );
    }
  });

  it('resolves relative backing names like qemu and never outside the target', () => {
    const from = 'workloads/w/snapshots/s2/vms/v/vda.qcow2';
    const ref = backingReference('w', 's2', 's1', 'v', 'vda');
    assert.equal(ref, '../../../s1/vms/v/vda.qcow2');
    assert.equal(resolveRelativeKey(from, ref), 'workloads/w/snapshots/s1/vms/v/vda.qcow2');
    assert.equal(relativeKey(from, resolveRelativeKey(from, ref)), ref);
    for (const bad of ['/etc/passwd', '../../../../../../../x', 'C:\\x', 'http://x/y']) {
      assert.throws(
        () => resolveRelativeKey(from, bad),
        (e) => isTargetError(e, 'TARGET_BAD_KEY'),
        bad,
      );
    }
  });
});
