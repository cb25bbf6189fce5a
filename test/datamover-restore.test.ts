import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isRestoreError } from '../src/datamover/restore-errors.js';
import { writeDiskInPlace } from '../src/datamover/restore-in-place-copy.js';
import { NbdInPlaceTarget, RawFileInPlaceTarget } from '../src/datamover/restore-in-place-target.js';
import {
  findSnapshot,
  findVm,
  listCommittedSnapshots,
  locateBackupFolder,
  openBackupDisk,
} from '../src/datamover/restore-source.js';
import { restoreSnapshotToDirectory } from '../src/datamover/restore-to-directory.js';
import { restoreDiskToFile } from '../src/datamover/restore-to-file.js';
import { FsBackend } from '../src/target/fs-backend.js';
import type { Target } from '../src/target/target.js';
import {
  buildLocalChain,
  type FixtureVm,
  flattenState,
  type LocalChain,
  sampleDomainXml,
  writeFixtureSnapshots,
} from './datamover-restore-fixture.js';
import { qemuImg, qemuRawSha256, tempDir } from './helpers/qemu-img.js';

const SNAPS = ['s0-full', 's1-inc', 's2-inc', 's3-inc'];

describe('restore from a filesystem target (full + 3 incrementals)', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let backend: FsBackend;
  let target: Target;
  let vda: LocalChain;
  let vdb: LocalChain;

  before(async () => {
    work = await tempDir('lb-restore-');
    vda = await buildLocalChain(work.dir, 'vda', 16);
    vdb = await buildLocalChain(work.dir, 'vdb', 8, [
      ['write -P 0x51 0 1M', 'write -P 0x52 7M 1M'],
      ['write -P 0x61 3M 64k'],
      ['write -z 0 512k'],
      ['write -P 0x71 4M 2M', 'discard 7M 1M'],
    ]);
    const vms: FixtureVm[] = [
      {
        id: 'vm-web',
        name: 'web',
        uuid: '11111111-2222-3333-4444-555555555555',
        domainXml: sampleDomainXml('web', '11111111-2222-3333-4444-555555555555', ['vda', 'vdb']),
        disks: [
          { name: 'vda', targetDev: 'vda', chain: vda },
          { name: 'vdb', targetDev: 'vdb', chain: vdb },
        ],
      },
      {
        id: 'vm-db',
        name: 'db',
        uuid: '11111111-2222-3333-4444-666666666666',
        domainXml: sampleDomainXml('db', '11111111-2222-3333-4444-666666666666', ['vda']),
        disks: [{ name: 'vda', targetDev: 'vda', chain: vdb }],
      },
    ];
    backend = await FsBackend.open(join(work.dir, 'target'), { create: true });
    target = await writeFixtureSnapshots(backend, 'wl-app', vms, SNAPS);
  });

  after(async () => {
    await backend?.close();
    await work?.cleanup();
  });

  test('every snapshot restores byte-identical to its state, qcow2 and raw, world-readable and sparse', async () => {
    for (const [k, sid] of SNAPS.entries()) {
      const snap = await findSnapshot(target, 'wl-app', sid);
      const vm = await findVm(target, snap, 'web');
      for (const [d, chain] of [
        ['vda', vda],
        ['vdb', vdb],
      ] as const) {
        const meta = vm.disks.find((x) => x.name === d)!;
        for (const format of ['qcow2', 'raw'] as const) {
          const out = join(work.dir, `out-${sid}-${d}.${format}`);
          const disk = await openBackupDisk(backend, vm, meta);
          const seen: number[] = [];
          try {
            await restoreDiskToFile(disk, out, { format, onProgress: (done) => seen.push(done) });
          } finally {
            await disk.close();
          }
          assert.equal(await qemuRawSha256(out, work.dir), chain.hashes[k], `${sid} ${d} ${format}`);
          const st = await stat(out);
          assert.equal(st.mode & 0o777, 0o644);
          if (format === 'raw') assert.ok(st.blocks * 512 < st.size, 'raw output is sparse');
          else await qemuImg('check', out);
          assert.ok(seen.length >= 2 && seen.every((v, i) => i === 0 || v >= seen[i - 1]!), 'progress grows');
        }
      }
    }
  });

  test('latest, unknown snapshot, unknown workload, VM choice', async () => {
    assert.equal((await findSnapshot(target, 'wl-app')).id, 's3-inc');
    assert.deepEqual(
      (await listCommittedSnapshots(target, 'wl-app')).map((s) => s.id),
      SNAPS,
    );
    await assert.rejects(findSnapshot(target, 'wl-app', 'nope'), (e) =>
      isRestoreError(e, 'RESTORE_SNAPSHOT_NOT_FOUND'),
    );
    await assert.rejects(findSnapshot(target, 'wl-nope'), (e) =>
      isRestoreError(e, 'RESTORE_WORKLOAD_NOT_FOUND'),
    );
    await assert.rejects(findSnapshot(target, 'wl-nope', 's0-full'), (e) =>
      isRestoreError(e, 'RESTORE_WORKLOAD_NOT_FOUND'),
    );
    const snap = await findSnapshot(target, 'wl-app');
    await assert.rejects(findVm(target, snap), (e) => isRestoreError(e, 'RESTORE_VM_AMBIGUOUS'));
    await assert.rejects(findVm(target, snap, 'mail'), (e) => isRestoreError(e, 'RESTORE_VM_NOT_FOUND'));
    assert.equal((await findVm(target, snap, 'vm-db')).name, 'db');
  });

  test('a snapshot folder path on the target names its workload, snapshot and VM', async () => {
    const root = join(work.dir, 'target');
    assert.deepEqual(await locateBackupFolder(join(root, 'workloads/wl-app/snapshots/s2-inc')), {
      root,
      workloadId: 'wl-app',
      snapshotId: 's2-inc',
    });
    assert.deepEqual(await locateBackupFolder(join(root, 'workloads/wl-app/snapshots/s2-inc/vms/vm-db')), {
      root,
      workloadId: 'wl-app',
      snapshotId: 's2-inc',
      vmId: 'vm-db',
    });
    assert.equal(await locateBackupFolder(work.dir), undefined);
    assert.equal(await locateBackupFolder(join(root, 'workloads')), undefined);
  });

  test('restore to a directory: every VM, disks as synthetic fulls, definitions beside them', async () => {
    const out = join(work.dir, 'dr-out');
    const snap = await findSnapshot(target, 'wl-app', 's2-inc');
    const progress: number[] = [];
    const r = await restoreSnapshotToDirectory({
      target,
      snapshot: snap,
      dir: out,
      onProgress: (p) => progress.push(p.bytesDone),
    });
    assert.deepEqual(r.vms.map((v) => v.id).sort(), ['vm-db', 'vm-web']);
    assert.deepEqual((await readdir(join(out, 'vm-web'))).sort(), [
      'domain-restored.xml',
      'domain.xml',
      'vda.raw',
      'vdb.raw',
      'vm.json',
    ]);
    assert.equal(await qemuRawSha256(join(out, 'vm-web/vda.raw'), work.dir), vda.hashes[2]);
    assert.equal(await qemuRawSha256(join(out, 'vm-web/vdb.raw'), work.dir), vdb.hashes[2]);
    assert.equal(await qemuRawSha256(join(out, 'vm-db/vda.raw'), work.dir), vdb.hashes[2]);
    const stored = await backend.readAll('workloads/wl-app/snapshots/s2-inc/vms/vm-web/vm.json');
    assert.deepEqual(await readFile(join(out, 'vm-web/vm.json')), stored);
    const restoredXml = await readFile(join(out, 'vm-web/domain-restored.xml'), 'utf8');
    assert.match(
      restoredXml,
      new RegExp(`file="${join(out, 'vm-web/vda.raw')}"|file='${join(out, 'vm-web/vda.raw')}'`),
    );
    assert.match(restoredXml, /<uuid>11111111-2222-3333-4444-555555555555<\/uuid>/);
    assert.ok(progress.length > 0 && progress[progress.length - 1]! > 0);
    // A second restore into the same place refuses rather than overwrite.
    await assert.rejects(restoreSnapshotToDirectory({ target, snapshot: snap, dir: out }), (e) =>
      isRestoreError(e, 'RESTORE_OUTPUT_EXISTS'),
    );
  });

  test('cancel mid-restore removes the partial output', async () => {
    const snap = await findSnapshot(target, 'wl-app', 's3-inc');
    const vm = await findVm(target, snap, 'web');
    const out = join(work.dir, 'cancelled.raw');
    const ac = new AbortController();
    const disk = await openBackupDisk(backend, vm, vm.disks[0]!);
    try {
      await assert.rejects(
        restoreDiskToFile(disk, out, {
          format: 'raw',
          readAhead: 1,
          signal: ac.signal,
          onProgress: (done) => {
            if (done > 0) ac.abort();
          },
        }),
        (e) => isRestoreError(e, 'RESTORE_ABORTED'),
      );
    } finally {
      await disk.close();
    }
    assert.deepEqual(
      (await readdir(work.dir)).filter((f) => f.includes('cancelled')),
      [],
    );
    const dirOut = join(work.dir, 'dr-cancelled');
    const ac2 = new AbortController();
    await assert.rejects(
      restoreSnapshotToDirectory({
        target,
        snapshot: snap,
        dir: dirOut,
        signal: ac2.signal,
        onProgress: (p) => {
          if (p.bytesDone > 0) ac2.abort();
        },
      }),
      (e) => isRestoreError(e, 'RESTORE_ABORTED'),
    );
    assert.deepEqual(await readdir(dirOut), ['snapshot.json']);
  });

  for (const format of ['qcow2', 'raw'] as const) {
    test(`in-place write over a ${format} disk in another state gives the snapshot byte for byte`, async () => {
      // Current disk = state 3 (more data, other zeros); restore snapshot 1 over it, then 3 over 0.
      for (const [from, to] of [
        [3, 1],
        [0, 3],
        [2, 0],
      ] as const) {
        const current = join(work.dir, `inplace-${from}-${to}.${format}`);
        await flattenState(vda, from, current, format);
        const snap = await findSnapshot(target, 'wl-app', SNAPS[to]);
        const vm = await findVm(target, snap, 'web');
        const src = await openBackupDisk(backend, vm, vm.disks.find((d) => d.name === 'vda')!);
        const dest =
          format === 'qcow2'
            ? await NbdInPlaceTarget.open(current, 'qcow2')
            : await RawFileInPlaceTarget.open(current);
        let ok = false;
        try {
          const r = await writeDiskInPlace(src, dest);
          assert.ok(r.dataBytes > 0);
          ok = true;
        } finally {
          await src.close();
          await (ok ? dest.close() : dest.abort());
        }
        assert.equal(await qemuRawSha256(current, work.dir), vda.hashes[to], `${format} ${from}->${to}`);
        if (format === 'qcow2') await qemuImg('check', current);
      }
    });
  }
});
