import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { cleanupUnfinished } from '../src/target/cleanup.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { scanTarget } from '../src/target/scan.js';
import { verifyTarget } from '../src/target/verify.js';
import { M, tempDir, writeSampleWorkload } from './target-fixture.js';

const run = promisify(execFile);

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-target-fs-'));
});
after(() => cleanup());

async function freshTarget(name: string): Promise<{ root: string; backend: FsBackend }> {
  const root = join(dir, name);
  const backend = await FsBackend.open(root, { create: true });
  await writeSampleWorkload(backend);
  return { root, backend };
}

async function flipByte(path: string, offset: number): Promise<void> {
  const buf = await readFile(path);
  buf[offset] ^= 0x01;
  await writeFile(path, buf);
}

describe('filesystem target', () => {
  it('scans a written workload: full + incremental, VMs, disks, healthy chain', async () => {
    const { backend } = await freshTarget('scan');
    const scan = await scanTarget(backend);
    assert.equal(scan.target.targetId, 'target-test');
    assert.equal(scan.workloads.length, 1);
    const w = scan.workloads[0];
    assert.equal(w.workload?.name, 'web app');
    assert.equal(w.workload?.labels['owner.name'], 'alice');
    assert.deepEqual(
      w.snapshots.map((s) => [s.id, s.type, s.parentSnapshotId, s.chainHealthy]),
      [
        ['s1', 'full', null, true],
        ['s2', 'incremental', 's1', true],
      ],
    );
    const disk = w.snapshots[1].vms[0].disks[0];
    assert.equal(disk.backingKey, 'workloads/wl-1/snapshots/s1/vms/vm-1/vda.qcow2');
    assert.ok(w.snapshots[0].sizes.storedBytes > 5 * M);
    assert.equal(w.lease?.active, false, 'released lease');
  });

  it('stores relative backing names that plain qemu-img follows, and no secrets', async () => {
    const { root } = await freshTarget('qemu');
    const img = join(root, 'workloads/wl-1/snapshots/s2/vms/vm-1/vda.qcow2');
    const { stdout } = await run('qemu-img', ['info', '--backing-chain', '--output=json', img]);
    const chain = JSON.parse(stdout) as Array<{ 'backing-filename'?: string }>;
    assert.equal(chain.length, 2);
    assert.equal(chain[0]['backing-filename'], '../../../s1/vms/vm-1/vda.qcow2');
    await run('qemu-img', ['check', img]);
    const vmJson = await readFile(join(root, 'workloads/wl-1/snapshots/s2/vms/vm-1/vm.json'), 'utf8');
    assert.ok(!vmJson.includes('hunter2'), 'graphics password must not reach the target');
  });

  it('verify passes on an intact target and finds a flipped byte in an image (with block index)', async () => {
    const { root, backend } = await freshTarget('verify-image');
    assert.deepEqual((await verifyTarget(backend)).findings, []);
    await flipByte(join(root, 'workloads/wl-1/snapshots/s1/vms/vm-1/vda.qcow2'), 4 * M + 123);
    const report = await verifyTarget(backend);
    const f = report.findings.filter((x) => x.kind === 'block-mismatch');
    assert.equal(f.length, 1);
    assert.equal(f[0].blockIndex, 1);
    assert.equal(f[0].snapshotId, 's1');
  });

  it('verify finds a flipped byte in every kind of metadata file', async () => {
    const { root, backend } = await freshTarget('verify-meta');
    const files = [
      'workloads/wl-1/workload.json',
      'workloads/wl-1/lease.json',
      'workloads/wl-1/snapshots/s1/snapshot.json',
      'workloads/wl-1/snapshots/s2/vms/vm-1/vm.json',
      'workloads/wl-1/snapshots/s2/vms/vm-1/vda.qcow2.manifest.json',
    ];
    for (const f of files) {
      const path = join(root, f);
      const original = await readFile(path);
      // A byte inside a value, and one in the whitespace between members: both must be caught.
      for (const offset of [original.indexOf('"', 120) + 1, original.indexOf('\n  ') + 1]) {
        await flipByte(path, offset);
        const report = await verifyTarget(backend);
        assert.ok(
          report.findings.some((x) => x.key === f && x.kind === 'metadata-invalid'),
          `${f} @${offset}: ${JSON.stringify(report.findings)}`,
        );
        await writeFile(path, original);
      }
    }
    assert.deepEqual((await verifyTarget(backend)).findings, []);
  });

  it('verify reports missing files and broken chains', async () => {
    const { root, backend } = await freshTarget('verify-missing');
    const { rm } = await import('node:fs/promises');
    await rm(join(root, 'workloads/wl-1/snapshots/s1/vms/vm-1/vda.qcow2'));
    const report = await verifyTarget(backend);
    const kinds = new Set(report.findings.map((f) => `${f.kind}:${f.snapshotId}`));
    assert.ok(kinds.has('missing:s1'), JSON.stringify(report.findings));
    assert.ok(kinds.has('broken-chain:s2'), JSON.stringify(report.findings));
    const scan = await scanTarget(backend);
    assert.equal(scan.workloads[0].snapshots[1].chainHealthy, false);
  });

  it('a half-written snapshot is ignored by scan and removed by cleanup; stale temp files too', async () => {
    const { root, backend } = await freshTarget('unfinished');
    const half = 'workloads/wl-1/snapshots/s3/vms/vm-1/';
    await backend.putAtomic(`${half}vda.qcow2`, Buffer.alloc(1000, 1));
    await writeFile(join(root, 'workloads/wl-1/snapshots/s3/vms/vm-1/.lifeboat-tmp-abc-vm.json'), 'partial');
    const scan = await scanTarget(backend);
    assert.deepEqual(
      scan.workloads[0].snapshots.map((s) => s.id),
      ['s1', 's2'],
    );
    assert.deepEqual(
      scan.workloads[0].unfinished.map((u) => [u.id, u.objects]),
      [['s3', 1]],
    );
    // Too recent for the default age: kept.
    const kept = await cleanupUnfinished(backend);
    assert.equal(kept.removed.length, 0);
    const report = await cleanupUnfinished(backend, { olderThanMs: 0 });
    assert.deepEqual(
      report.removed.map((r) => r.snapshotId),
      ['s3'],
    );
    assert.deepEqual(await readdir(join(root, 'workloads/wl-1/snapshots')), ['s1', 's2']);
    assert.deepEqual((await verifyTarget(backend)).findings, []);
  });

  it('cleanup leaves an unfinished snapshot alone while its writer holds the lease', async () => {
    const { backend } = await freshTarget('cleanup-lease');
    const { WorkloadLease } = await import('../src/target/lease.js');
    const writer = await WorkloadLease.acquire(backend, 'wl-1', { installationId: 'other', host: 'h2' });
    await backend.putAtomic('workloads/wl-1/snapshots/s9/vms/vm-1/vda.qcow2', Buffer.alloc(10));
    const report = await cleanupUnfinished(backend, { olderThanMs: 0 });
    assert.equal(report.removed.length, 0);
    assert.match(report.skipped[0].reason, /being written by other/);
    await writer.release();
    assert.equal((await cleanupUnfinished(backend, { olderThanMs: 0 })).removed.length, 1);
  });

  it('deletes a snapshot commit marker first, and never a parent still in use', async () => {
    const { root, backend } = await freshTarget('delete');
    const { Target } = await import('../src/target/target.js');
    const { WorkloadLease } = await import('../src/target/lease.js');
    const target = await Target.open(backend);
    const lease = await WorkloadLease.acquire(backend, 'wl-1', { installationId: 'a', host: 'h' });
    await assert.rejects(target.deleteSnapshot(lease, 's1'), /parent of s2/);
    assert.ok((await target.deleteSnapshot(lease, 's2')) >= 3);
    await lease.release();
    assert.deepEqual(await readdir(join(root, 'workloads/wl-1/snapshots')), ['s1']);
    assert.deepEqual((await verifyTarget(backend)).findings, []);
  });

  it('a target copied to another directory still scans, verifies and opens in qemu-img', async () => {
    const { root } = await freshTarget('original');
    const copy = join(dir, 'elsewhere', 'moved-target');
    await cp(root, copy, { recursive: true });
    const backend = await FsBackend.open(copy);
    const scan = await scanTarget(backend);
    assert.equal(scan.workloads[0].snapshots.length, 2);
    assert.ok(scan.workloads[0].snapshots.every((s) => s.chainHealthy));
    assert.deepEqual((await verifyTarget(backend)).findings, []);
    await run('qemu-img', [
      'compare',
      '-f',
      'qcow2',
      '-F',
      'qcow2',
      join(root, 'workloads/wl-1/snapshots/s2/vms/vm-1/vda.qcow2'),
      join(copy, 'workloads/wl-1/snapshots/s2/vms/vm-1/vda.qcow2'),
    ]);
  });
});
