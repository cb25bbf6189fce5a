/**
 * The lease a standalone backup holds on a real filesystem target: background renewals and the
 * snapshot writer's checks never race each other into a false "lease lost"; a dead run's lease is
 * released only with its own token; an unfinished snapshot folder is removed, a committed one never.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  HeldLease,
  latestCommittedSnapshot,
  releaseDeadLease,
  removeUnfinishedSnapshot,
} from '../src/datamover/backup-workload.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { readLease, WorkloadLease } from '../src/target/lease.js';
import { SnapshotWriter } from '../src/target/snapshot-writer.js';
import { Target } from '../src/target/target.js';

async function fsTarget(t: { after: (fn: () => Promise<void>) => void }): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'lb-backup-lease-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return Target.init(await FsBackend.open(dir));
}

const owner = { installationId: 'test', host: 'here' };

test('concurrent lease checks and background renewals are serialized: no false lease loss', async (t) => {
  const target = await fsTarget(t);
  const held = await HeldLease.acquire(target, 'w1', owner, 2000);
  try {
    // Without serialization these compare-and-swap renewals would overwrite each other's version.
    await Promise.all(Array.from({ length: 20 }, () => held.lease.assertHeld()));
    await new Promise((r) => setTimeout(r, 1200)); // a background renewal happened meanwhile
    await Promise.all(Array.from({ length: 5 }, () => held.lease.assertHeld()));
    held.check();
  } finally {
    await held.stop();
  }
  assert.equal((await readLease(target.backend, 'w1'))?.lease?.released, true);
});

test('a dead run lease is released only with its token; unfinished folders go, committed ones stay', async (t) => {
  const target = await fsTarget(t);
  const dead = await WorkloadLease.acquire(target.backend, 'w2', owner);
  const writer = await SnapshotWriter.begin(target, dead, {
    snapshotId: 's1',
    type: 'full',
    parentSnapshotId: null,
  });
  const img = await writer.createDiskWriter('vm', 'vda');
  await img.write(Buffer.alloc(4096, 1));
  await img.close();
  // The process "dies" here: lease held, s1 unfinished.
  assert.equal(await releaseDeadLease(target, 'w2', 'not-the-token'), false);
  await assert.rejects(WorkloadLease.acquire(target.backend, 'w2', owner), /being written/);
  assert.equal(await releaseDeadLease(target, 'w2', dead.token), true);
  const next = await HeldLease.acquire(target, 'w2', owner);
  try {
    assert.equal(await removeUnfinishedSnapshot(target, 'w2', 's1'), true);
    assert.deepEqual(await target.listSnapshotFolders('w2'), []);
    const w = await SnapshotWriter.begin(target, next.lease, {
      snapshotId: 's2',
      type: 'full',
      parentSnapshotId: null,
    });
    await w.commit();
    assert.equal(
      await removeUnfinishedSnapshot(target, 'w2', 's2'),
      false,
      'a committed snapshot is never removed',
    );
    assert.equal((await latestCommittedSnapshot(target, 'w2'))?.id, 's2');
  } finally {
    await next.stop();
  }
});
