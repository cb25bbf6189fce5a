import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { backupDomain } from '../src/datamover/backup.js';
import { restoreDomain } from '../src/datamover/restore-domain.js';
import { isRestoreError } from '../src/datamover/restore-errors.js';
import { restoreInPlace } from '../src/datamover/restore-in-place.js';
import { findSnapshot, findVm } from '../src/datamover/restore-source.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { Target } from '../src/target/target.js';
import {
  createTestDomain,
  destroyTestDomain,
  guestWrite,
  libvirtTestEnv,
  removeStaleTestDomains,
  type TestDomain,
  testDomainName,
  testHypervisor,
} from './helpers/libvirt.js';
import { qemuRawSha256 } from './helpers/qemu-img.js';

const MiB = 1024 * 1024;
const hv = testHypervisor();

/** The guest-visible content of each disk, kept in memory: the oracle at every snapshot. */
class DiskModel {
  readonly bytes: Buffer;
  constructor(size: number) {
    this.bytes = Buffer.alloc(size);
  }
  fill(pattern: number, offset: number, length: number): void {
    this.bytes.fill(pattern, offset, offset + length);
  }
  hash(): string {
    return createHash('sha256').update(this.bytes).digest('hex');
  }
}

/**
 * End to end with the real backup: a running TCG domain backed up by backupDomain (full + 3
 * incrementals, guest writes in between), then restored from every snapshot as new domains that
 * start, and in place over the shut-off original; after an in-place restore the next backup is full.
 */
describe('backup then restore, end to end', () => {
  let work: string;
  let dom: TestDomain;
  let backend: FsBackend;
  let target: Target;
  const models = { vda: new DiskModel(16 * MiB), vdb: new DiskModel(8 * MiB) };
  const expected: Array<{ sid: string; vda: string; vdb: string }> = [];
  const restored: string[] = [];

  before(async () => {
    await removeStaleTestDomains(hv);
    work = join(libvirtTestEnv().vmDir, testDomainName('e2e'));
    await mkdir(join(work, 'scratch'), { recursive: true, mode: 0o755 });
    dom = await createTestDomain({
      label: 'e2e',
      disks: [
        { format: 'qcow2', sizeMiB: 16, fill: [{ pattern: 0x11, offset: 0, length: 4 * MiB }] },
        { format: 'raw', sizeMiB: 8, fill: [{ pattern: 0x22, offset: MiB, length: MiB }] },
      ],
    });
    models.vda.fill(0x11, 0, 4 * MiB);
    models.vdb.fill(0x22, MiB, MiB);
    backend = await FsBackend.open(join(work, 'target'), { create: true });
    target = await Target.init(backend);
    const writes: Array<Array<[keyof typeof models, number, number, number]>> = [
      [],
      [
        ['vda', 0x33, 2 * MiB, MiB],
        ['vdb', 0x44, 0, 512 * 1024],
      ],
      [
        ['vda', 0x55, 10 * MiB, 3 * MiB],
        ['vda', 0x00, 0, MiB],
      ],
      [
        ['vda', 0x66, 15 * MiB, MiB],
        ['vdb', 0x77, 6 * MiB, 2 * MiB],
      ],
    ];
    for (const round of writes) {
      for (const [disk, pattern, offset, length] of round) {
        await guestWrite(dom, disk, pattern, offset, length);
        models[disk].fill(pattern, offset, length);
      }
      const r = await backupDomain({
        hypervisor: hv,
        domain: dom.name,
        target,
        workloadId: 'wl-e2e',
        scratchDir: join(work, 'scratch'),
      });
      expected.push({ sid: r.snapshotId, vda: models.vda.hash(), vdb: models.vdb.hash() });
    }
  });

  after(async () => {
    for (const n of restored) await destroyTestDomain(hv, n, join(work, 'none')).catch(() => {});
    await dom?.cleanup();
    await backend?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const vmOf = async (sid: string) => findVm(target, await findSnapshot(target, 'wl-e2e', sid));

  test('the chain is a full and three incrementals', async () => {
    const types = [];
    for (const e of expected) types.push((await findSnapshot(target, 'wl-e2e', e.sid)).type);
    assert.deepEqual(types, ['full', 'incremental', 'incremental', 'incremental']);
  });

  test('every snapshot restores as a new domain that starts, disks identical to the source then', async () => {
    for (const [i, e] of expected.entries()) {
      const name = testDomainName(`e2er${i}`);
      restored.push(name);
      const r = await restoreDomain({
        backend,
        vm: await vmOf(e.sid),
        hypervisor: hv,
        name,
        dir: join(work, name),
        format: i % 2 === 0 ? 'qcow2' : 'raw',
        start: true,
      });
      assert.equal(await hv.domains.state(name), 'running');
      await hv.domains.destroy(name);
      const byDev = Object.fromEntries(r.disks.map((d) => [d.targetDev, d.path]));
      assert.equal(await qemuRawSha256(byDev.vda!, work), e.vda, `vda at ${i}`);
      assert.equal(await qemuRawSha256(byDev.vdb!, work), e.vdb, `vdb at ${i}`);
    }
  });

  test('in place over the shut-off source: identical disks; running refused; the next backup reads every disk in full', async () => {
    await assert.rejects(
      restoreInPlace({ backend, vm: await vmOf(expected[1]!.sid), hypervisor: hv, domain: dom.name }),
      (err) => isRestoreError(err, 'RESTORE_DOMAIN_RUNNING'),
    );
    await hv.domains.destroy(dom.name);
    const r = await restoreInPlace({
      backend,
      vm: await vmOf(expected[1]!.sid),
      hypervisor: hv,
      domain: dom.name,
    });
    assert.ok(r.deletedCheckpoints.length > 0, 'the checkpoints of the backups were deleted');
    assert.equal(await qemuRawSha256(dom.disks[0]!.path, work), expected[1]!.vda);
    assert.equal(await qemuRawSha256(dom.disks[1]!.path, work), expected[1]!.vdb);
    await hv.domains.start(dom.name);
    const next = await backupDomain({
      hypervisor: hv,
      domain: dom.name,
      target,
      workloadId: 'wl-e2e',
      scratchDir: join(work, 'scratch'),
    });
    const vm = await vmOf(next.snapshotId);
    // The snapshot may still be typed incremental (it has a parent), but no disk is read as a delta.
    assert.deepEqual(
      vm.disks.map((d) => [d.targetDev, d.mode]),
      [
        ['vda', 'full'],
        ['vdb', 'full'],
      ],
    );
    const name = testDomainName('e2eafter');
    restored.push(name);
    const again = await restoreDomain({ backend, vm, hypervisor: hv, name, dir: join(work, name) });
    assert.equal(await qemuRawSha256(again.disks[0]!.path, work), expected[1]!.vda);
  });
});
