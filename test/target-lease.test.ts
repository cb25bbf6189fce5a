import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TargetBackend } from '../src/target/backend.js';
import { isTargetError } from '../src/target/errors.js';
import { WorkloadLease } from '../src/target/lease.js';
import { openBackend } from '../src/target/open-target.js';
import { tempDir } from './target-fixture.js';
import { newBucket, s3Env } from './target-s3-env.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-target-lease-'));
});
after(() => cleanup());

const A = { installationId: 'install-a', host: 'host-a' };
const B = { installationId: 'install-b', host: 'host-b' };

for (const kind of ['fs', 's3'] as const) {
  describe(`workload leases (${kind})`, () => {
    let backend: TargetBackend;
    before(async () => {
      const location = kind === 'fs' ? join(dir, 'target') : `s3://${await newBucket('lease')}`;
      backend = await openBackend(location, { ...(kind === 's3' ? s3Env() : {}), create: true });
    });
    after(() => backend.close());

    it('excludes a second owner, lets it in after release', async () => {
      const a = await WorkloadLease.acquire(backend, 'wl-x', A);
      await assert.rejects(WorkloadLease.acquire(backend, 'wl-x', B), (e) =>
        isTargetError(e, 'TARGET_LEASE_HELD'),
      );
      await a.renew();
      await a.release();
      const b = await WorkloadLease.acquire(backend, 'wl-x', B);
      await assert.rejects(a.renew(), (e) => isTargetError(e, 'TARGET_LEASE_LOST'));
      await b.release();
    });

    it('an expired lease is taken over, and its old holder learns it lost it', async () => {
      let clock = Date.parse('2030-01-01T00:00:00Z');
      const now = () => new Date(clock);
      const a = await WorkloadLease.acquire(backend, 'wl-y', A, { ttlMs: 60_000, skewMs: 5_000, now });
      clock += 30_000;
      await assert.rejects(
        WorkloadLease.acquire(backend, 'wl-y', B, { ttlMs: 60_000, skewMs: 5_000, now }),
        (e) => isTargetError(e, 'TARGET_LEASE_HELD'),
      );
      clock += 60_000; // past expiry + skew
      const b = await WorkloadLease.acquire(backend, 'wl-y', B, { ttlMs: 60_000, skewMs: 5_000, now });
      await assert.rejects(a.assertHeld(), (e) => isTargetError(e, 'TARGET_LEASE_LOST'));
      await b.release();
    });

    it('an active lease is taken over only when the caller says its holder is gone', async () => {
      const old = await WorkloadLease.acquire(backend, 'wl-t', A);
      const sameInstallation = (o: { installationId: string }) => o.installationId === A.installationId;
      // Another installation may not, even when asking.
      await assert.rejects(
        WorkloadLease.acquire(backend, 'wl-t', B, {
          takeOver: (o) => o.installationId === B.installationId,
        }),
        (e) => isTargetError(e, 'TARGET_LEASE_HELD'),
      );
      await assert.rejects(WorkloadLease.acquire(backend, 'wl-t', A), (e) =>
        isTargetError(e, 'TARGET_LEASE_HELD'),
      );
      const restarted = await WorkloadLease.acquire(backend, 'wl-t', A, { takeOver: sameInstallation });
      assert.notEqual(restarted.token, old.token);
      await assert.rejects(old.assertHeld(), (e) => isTargetError(e, 'TARGET_LEASE_LOST'));
      await restarted.release();
    });

    it('of many owners racing for a free lease, exactly one wins', async () => {
      const owners = Array.from({ length: 6 }, (_, i) => ({ installationId: `racer-${i}`, host: 'h' }));
      const results = await Promise.allSettled(
        owners.map((o) => WorkloadLease.acquire(backend, 'wl-race', o)),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
      for (const r of results) {
        if (r.status === 'rejected')
          assert.ok(isTargetError(r.reason, 'TARGET_LEASE_HELD'), String(r.reason));
      }
    });
  });
}
