/**
 * Backups of real libvirt domains (QEMU TCG) into real targets: full + incrementals checked against
 * an in-memory model of every disk (our ChainReader AND plain `qemu-img convert` of the newest
 * image), writes made during a backup, discards, the inconsistent-bitmap fallback after QEMU is
 * SIGKILLed, shut-off domains through qemu-nbd, cancel and SIGKILL half-way, the CLI, and S3.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import { type BackupDomainResult, backupDomain } from '../src/datamover/backup.js';
import { readQcow2Bitmaps } from '../src/hypervisor/qcow2-bitmaps.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { diskImageKey } from '../src/target/layout.js';
import { readLease } from '../src/target/lease.js';
import { openBackend } from '../src/target/open-target.js';
import { Target } from '../src/target/target.js';
import { verifyTarget } from '../src/target/verify.js';
import {
  chainSha256,
  DiskModel,
  guestZero,
  KiB,
  MiB,
  qemuImgCheck,
  qemuImgInfo,
  qemuImgRawSha256,
  qemuNbdPidsFor,
  qemuPidOf,
  waitFor,
} from './helpers/backup-fixtures.js';
import {
  type CreateTestDomainOptions,
  createTestDomain,
  guestWrite,
  libvirtTestEnv,
  removeStaleTestDomains,
  type TestDomain,
} from './helpers/libvirt.js';
import { qemuImgMap } from './helpers/qemu-img.js';
import { newBucket, s3Env } from './target-s3-env.js';

const run = promisify(execFile);
type T = TestContext;

await removeStaleTestDomains().catch(() => []);

interface Ctx {
  dom: TestDomain;
  target: Target;
  /** Filesystem targets: the directory (for qemu-img on the images). */
  root?: string;
  scratchDir: string;
  /** Disk target -> model of its content now. */
  models: Map<string, DiskModel>;
}

async function setup(t: T, opts: CreateTestDomainOptions, targetKind: 'fs' | 's3' = 'fs'): Promise<Ctx> {
  const { vmDir } = libvirtTestEnv();
  const dom = await createTestDomain(opts);
  t.after(() => dom.cleanup());
  const scratchDir = await mkdtemp(join(vmDir, 'bk-'));
  // QEMU (libvirt-qemu) must traverse it to reach the job's socket and scratch files.
  await chmod(scratchDir, 0o755);
  t.after(() => rm(scratchDir, { recursive: true, force: true }));
  const models = new Map<string, DiskModel>();
  for (const [i, spec] of opts.disks.entries()) {
    models.set(dom.disks[i]!.target, new DiskModel(spec.sizeMiB * MiB, spec.fill ?? []));
  }
  if (targetKind === 's3') {
    const backend = await openBackend(`s3://${await newBucket('backup')}/lb`, s3Env());
    t.after(() => backend.close());
    return { dom, target: await Target.init(backend), scratchDir, models };
  }
  const root = await mkdtemp(join(vmDir, 'tgt-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return {
    dom,
    target: await Target.init(await FsBackend.open(root, { create: true })),
    root,
    scratchDir,
    models,
  };
}

async function write(ctx: Ctx, disk: string, pattern: number, offset: number, length: number): Promise<void> {
  await guestWrite(ctx.dom, disk, pattern, offset, length);
  ctx.models.get(disk)!.write(pattern, offset, length);
}

async function zero(ctx: Ctx, disk: string, offset: number, length: number): Promise<void> {
  await guestZero(ctx.dom, disk, offset, length);
  ctx.models.get(disk)!.write(0, offset, length);
}

interface Taken {
  r: BackupDomainResult;
  /** Disk -> SHA-256 of what the snapshot must read as. */
  expected: Map<string, string>;
}

/** Backs up and remembers what each disk held at the backup's point in time. */
async function backup(
  ctx: Ctx,
  opts: Partial<Parameters<typeof backupDomain>[0]> = {},
  duringBackup?: () => Promise<void>,
): Promise<Taken> {
  const expected = new Map([...ctx.models].map(([d, m]) => [d, m.sha256()]));
  const r = await backupDomain({
    hypervisor: ctx.dom.hv,
    domain: ctx.dom.name,
    target: ctx.target,
    scratchDir: ctx.scratchDir,
    afterExportsReady: duringBackup,
    ...opts,
  });
  for (const d of opts.excludeDisks ?? []) expected.delete(d);
  return { r, expected };
}

/** The snapshot's chains read exactly as expected, with our reader and with qemu-img; images check clean. */
async function verifyTaken(ctx: Ctx, { r, expected }: Taken): Promise<void> {
  for (const [disk, sha] of expected) {
    const what = `${r.type} snapshot ${r.snapshotId} disk ${disk}`;
    assert.equal(
      await chainSha256(ctx.target, r.workloadId, r.snapshotId, r.vm.vmId, disk),
      sha,
      `${what}: ChainReader`,
    );
    if (ctx.root) {
      const image = join(ctx.root, diskImageKey(r.workloadId, r.snapshotId, r.vm.vmId, disk));
      assert.equal(await qemuImgRawSha256(image, ctx.scratchDir), sha, `${what}: qemu-img convert`);
      await qemuImgCheck(image);
    }
  }
}

const diskOf = (r: BackupDomainResult, target: string) => {
  const d = r.vm.disks.find((x) => x.target === target);
  assert.ok(d, `disk ${target} in the result`);
  return d;
};

async function lifeboatCheckpoints(ctx: Ctx): Promise<string[]> {
  return (await ctx.dom.hv.checkpoints.names(ctx.dom.name)).filter((n) => n.startsWith('lifeboat-'));
}

/** Nothing of a backup is left on the host: no job, no scratch/journal file, no qemu-nbd. */
async function assertNothingLeft(ctx: Ctx): Promise<void> {
  if ((await ctx.dom.hv.domains.state(ctx.dom.name)) === 'running') {
    assert.equal(await ctx.dom.hv.backups.isJobActive(ctx.dom.name), false, 'no libvirt job');
  }
  assert.deepEqual(await readdir(ctx.scratchDir), [], 'scratch dir empty');
  assert.deepEqual(await qemuNbdPidsFor(ctx.dom.dir), [], 'no qemu-nbd');
}

test('full + three incrementals of a running domain with qcow2 and raw disks', async (t) => {
  const ctx = await setup(t, {
    label: 'bk3',
    disks: [
      {
        format: 'qcow2',
        sizeMiB: 64,
        fill: [
          { pattern: 0x01, offset: 0, length: 4 * MiB },
          { pattern: 0x02, offset: 32 * MiB, length: MiB },
        ],
      },
      { format: 'raw', sizeMiB: 64, fill: [{ pattern: 0x03, offset: MiB, length: 2 * MiB }] },
      { format: 'qcow2', sizeMiB: 64 },
    ],
  });
  const taken: Taken[] = [];
  const full = await backup(ctx);
  taken.push(full);
  assert.equal(full.r.type, 'full');
  assert.deepEqual(
    full.r.vm.disks.map((d) => [d.target, d.mode]),
    [
      ['vda', 'full'],
      ['vdb', 'full'],
      ['vdc', 'full'],
    ],
  );
  assert.equal(diskOf(full.r, 'vda').allocatedBytes, 5 * MiB);
  assert.deepEqual(full.r.vm.warnings, []);
  assert.equal(full.r.vm.freeze?.skipped, true, 'no guest agent: freeze recorded as skipped');
  const vmJson = await ctx.target.readVm(full.r.workloadId, full.r.snapshotId, full.r.vm.vmId);
  assert.ok(vmJson?.domainXml.includes(`<name>${ctx.dom.name}</name>`));
  assert.equal(vmJson?.uuid, full.r.vm.uuid);
  assert.equal(vmJson?.memoryBytes, 64 * MiB);
  const cp0 = `lifeboat-${full.r.snapshotId}`;
  assert.deepEqual(
    vmJson?.disks.map((d) => [d.name, d.checkpointName]),
    [
      ['vda', cp0],
      ['vdb', null],
      ['vdc', cp0],
    ],
  );
  assert.ok(vmJson?.disks[0]?.checkpointXml?.includes(cp0));
  assert.deepEqual(await lifeboatCheckpoints(ctx), [cp0]);
  await verifyTaken(ctx, full);

  // Writes, and a discard of data the full holds: the incremental must shadow it with zeros.
  await write(ctx, 'vda', 0x11, 8 * MiB, 256 * KiB);
  await write(ctx, 'vdb', 0x13, 10 * MiB, 64 * KiB);
  await write(ctx, 'vdc', 0x12, 0, 64 * KiB);
  await zero(ctx, 'vda', 32 * MiB, MiB);
  // A write made while the backup runs is not in it (point in time = backup-begin), but in the next.
  const during = { pattern: 0x21, offset: 16 * MiB, length: 128 * KiB };
  const inc1 = await backup(ctx, {}, async () => {
    await guestWrite(ctx.dom, 'vda', during.pattern, during.offset, during.length);
  });
  ctx.models.get('vda')!.write(during.pattern, during.offset, during.length);
  taken.push(inc1);
  assert.equal(inc1.r.type, 'incremental');
  assert.equal(inc1.r.parentSnapshotId, full.r.snapshotId);
  assert.equal(diskOf(inc1.r, 'vda').mode, 'incremental');
  assert.equal(
    diskOf(inc1.r, 'vda').copiedBytes,
    256 * KiB,
    'only the dirty data is copied (discard = zero clusters)',
  );
  assert.ok(diskOf(inc1.r, 'vda').storedBytes < MiB);
  // Independently of our own accounting: qemu-img sees 256 KiB of data in the top image, and the
  // discarded MiB as zeros of the top image (shadowing the full's data).
  const inc1Vda = join(ctx.root!, diskImageKey(inc1.r.workloadId, inc1.r.snapshotId, inc1.r.vm.vmId, 'vda'));
  const top = (await qemuImgMap(inc1Vda)).filter((e) => e.depth === 0);
  assert.equal(
    top.filter((e) => e.data).reduce((n, e) => n + e.length, 0),
    256 * KiB,
  );
  assert.equal(
    top.filter((e) => !e.data && e.zero).reduce((n, e) => n + e.length, 0),
    MiB,
  );
  assert.equal(diskOf(inc1.r, 'vdb').mode, 'full', 'raw: no changed block tracking');
  assert.ok(diskOf(inc1.r, 'vdb').note?.includes('raw'));
  assert.equal(diskOf(inc1.r, 'vdc').copiedBytes, 64 * KiB);
  assert.deepEqual(inc1.r.vm.warnings, []);
  await verifyTaken(ctx, inc1);

  await write(ctx, 'vdc', 0x31, 60 * MiB, 64 * KiB);
  const inc2 = await backup(ctx);
  taken.push(inc2);
  assert.equal(diskOf(inc2.r, 'vda').copiedBytes, 128 * KiB, 'the write made during inc1');
  assert.equal(diskOf(inc2.r, 'vdc').copiedBytes, 64 * KiB);
  await verifyTaken(ctx, inc2);

  await write(ctx, 'vda', 0x41, 0, 64 * KiB);
  const inc3 = await backup(ctx);
  taken.push(inc3);
  assert.equal(diskOf(inc3.r, 'vda').copiedBytes, 64 * KiB);
  assert.equal(diskOf(inc3.r, 'vdc').copiedBytes, 0);
  assert.deepEqual(
    await lifeboatCheckpoints(ctx),
    [`lifeboat-${inc3.r.snapshotId}`],
    'older checkpoints deleted',
  );
  assert.deepEqual(inc3.r.deletedCheckpoints, [`lifeboat-${inc2.r.snapshotId}`]);

  // Every snapshot still reads as it was; chains are relative; the target verifies clean.
  for (const s of taken) await verifyTaken(ctx, s);
  const newest = join(ctx.root!, diskImageKey(inc3.r.workloadId, inc3.r.snapshotId, inc3.r.vm.vmId, 'vda'));
  const info = await qemuImgInfo(newest);
  assert.equal(
    info['backing-filename'],
    `../../../${inc2.r.snapshotId}/vms/${inc3.r.vm.vmId}/vda.qcow2`,
    'backing file named by a relative path',
  );
  const report = await verifyTarget(ctx.target.backend);
  assert.deepEqual(report.findings, []);
  assert.equal(report.snapshots, 4);
  await assertNothingLeft(ctx);
});

test('bitmap made inconsistent by SIGKILLed QEMU: that disk falls back to full with a warning, next one incremental', async (t) => {
  const ctx = await setup(t, {
    label: 'bkkill',
    disks: [{ format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x05, offset: 0, length: 2 * MiB }] }],
  });
  const full = await backup(ctx);
  await write(ctx, 'vda', 0x15, 4 * MiB, 64 * KiB);
  process.kill(await qemuPidOf(ctx.dom), 'SIGKILL');
  await waitFor(
    'the domain to be shut off',
    async () => (await ctx.dom.hv.domains.state(ctx.dom.name)) === 'shutoff',
  );
  await ctx.dom.hv.domains.start(ctx.dom.name);
  // The write before the kill reached the image (HMP qemu-io completes it); the bitmap did not.
  await write(ctx, 'vda', 0x25, 6 * MiB, 64 * KiB);
  const fallback = await backup(ctx);
  assert.equal(diskOf(fallback.r, 'vda').mode, 'full');
  assert.equal(fallback.r.snapshot.status, 'warnings');
  assert.equal(fallback.r.snapshot.warnings.length, 1);
  assert.equal(fallback.r.snapshot.warnings[0]?.code, 'INCREMENTAL_FALLBACK_FULL');
  assert.match(fallback.r.snapshot.warnings[0]!.message, /inconsistent|missing/);
  const vm = await ctx.target.readVm(fallback.r.workloadId, fallback.r.snapshotId, fallback.r.vm.vmId);
  assert.match(vm?.disks[0]?.fallbackWarning ?? '', /vda/);
  await verifyTaken(ctx, fallback);

  await write(ctx, 'vda', 0x35, 8 * MiB, 64 * KiB);
  const again = await backup(ctx);
  assert.equal(diskOf(again.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(again.r, 'vda').copiedBytes, 64 * KiB);
  assert.equal(again.r.snapshot.status, 'ok');
  await verifyTaken(ctx, again);
  await verifyTaken(ctx, full);
  assert.deepEqual(await lifeboatCheckpoints(ctx), [`lifeboat-${again.r.snapshotId}`]);
  await assertNothingLeft(ctx);
});

test('shut-off domain: qemu-nbd exports, incremental from the persistent bitmap, checkpoint made offline', async (t) => {
  const ctx = await setup(t, {
    label: 'bkoff',
    disks: [
      { format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x06, offset: 0, length: 3 * MiB }] },
      { format: 'raw', sizeMiB: 64, fill: [{ pattern: 0x07, offset: 5 * MiB, length: MiB }] },
    ],
  });
  const full = await backup(ctx);
  await write(ctx, 'vda', 0x16, 12 * MiB, 128 * KiB);
  await ctx.dom.hv.domains.destroy(ctx.dom.name);
  const off1 = await backup(ctx);
  assert.equal(off1.r.vm.state, 'shutoff');
  assert.equal(off1.r.vm.source, 'qemu-nbd');
  assert.equal(diskOf(off1.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(off1.r, 'vda').copiedBytes, 128 * KiB);
  assert.equal(diskOf(off1.r, 'vdb').mode, 'full');
  const cp1 = `lifeboat-${off1.r.snapshotId}`;
  assert.deepEqual(await lifeboatCheckpoints(ctx), [cp1], 'the offline checkpoint is known to libvirt');
  assert.deepEqual(
    (await readQcow2Bitmaps(ctx.dom.disks[0]!.path)).map((b) => b.name),
    [cp1],
    'old bitmap removed, new one in the image',
  );
  await verifyTaken(ctx, off1);
  await assertNothingLeft(ctx);

  const off2 = await backup(ctx);
  assert.equal(diskOf(off2.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(off2.r, 'vda').copiedBytes, 0, 'nothing changed while shut off');
  await verifyTaken(ctx, off2);

  // Started again: QEMU tracks writes in the offline-made bitmap; a running incremental uses it.
  await ctx.dom.hv.domains.start(ctx.dom.name);
  await write(ctx, 'vda', 0x26, 20 * MiB, 64 * KiB);
  const on = await backup(ctx);
  assert.equal(on.r.vm.source, 'pull-backup');
  assert.equal(diskOf(on.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(on.r, 'vda').copiedBytes, 64 * KiB);
  assert.deepEqual(on.r.vm.warnings, []);
  for (const s of [full, off1, off2, on]) await verifyTaken(ctx, s);
  await assertNothingLeft(ctx);
});

test('excluded disk is skipped; a checkpoint libvirt lost is redefined from the saved XML', async (t) => {
  const ctx = await setup(t, {
    label: 'bkexcl',
    disks: [
      { format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x08, offset: 0, length: MiB }] },
      { format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x09, offset: 0, length: MiB }] },
    ],
  });
  const full = await backup(ctx, { excludeDisks: ['vdb'] });
  assert.deepEqual(
    full.r.vm.disks.map((d) => d.target),
    ['vda'],
  );
  assert.deepEqual(full.r.vm.skipped, [{ target: 'vdb', reason: 'excluded' }]);
  const vm = await ctx.target.readVm(full.r.workloadId, full.r.snapshotId, full.r.vm.vmId);
  assert.deepEqual(
    vm?.disks.map((d) => d.name),
    ['vda'],
  );
  // libvirt forgets the checkpoint (as when a domain is undefined and defined again); the bitmap stays.
  await ctx.dom.hv.checkpoints.delete(ctx.dom.name, `lifeboat-${full.r.snapshotId}`, { metadataOnly: true });
  await write(ctx, 'vda', 0x18, 2 * MiB, 64 * KiB);
  const inc = await backup(ctx, { excludeDisks: ['vdb'] });
  assert.equal(diskOf(inc.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(inc.r, 'vda').copiedBytes, 64 * KiB);
  assert.deepEqual(inc.r.vm.warnings, []);
  await verifyTaken(ctx, inc);
  await assertNothingLeft(ctx);
});

test('cancel half-way: nothing left behind, earlier snapshots intact, next backup incremental', async (t) => {
  const ctx = await setup(t, {
    label: 'bkcancel',
    disks: [{ format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x0a, offset: 0, length: 24 * MiB }] }],
  });
  const full = await backup(ctx);
  await write(ctx, 'vda', 0x1a, 30 * MiB, 64 * KiB);
  const ac = new AbortController();
  await assert.rejects(
    backupDomain({
      hypervisor: ctx.dom.hv,
      domain: ctx.dom.name,
      target: ctx.target,
      scratchDir: ctx.scratchDir,
      full: true,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.bytesDone > 0) ac.abort(new Error('test cancel'));
      },
    }),
    (err: Error & { code?: string }) => err.code === 'BACKUP_CANCELLED',
  );
  await assertNothingLeft(ctx);
  assert.deepEqual(await ctx.target.listSnapshotFolders(full.r.workloadId), [full.r.snapshotId]);
  assert.deepEqual(await lifeboatCheckpoints(ctx), [`lifeboat-${full.r.snapshotId}`]);
  assert.equal((await readLease(ctx.target.backend, full.r.workloadId))?.lease?.released, true);
  await verifyTaken(ctx, full);
  const inc = await backup(ctx);
  assert.equal(diskOf(inc.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(inc.r, 'vda').copiedBytes, 64 * KiB);
  await verifyTaken(ctx, inc);
});

function startChild(ctx: Ctx): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(import.meta.dirname, 'helpers', 'backup-child.ts'),
      JSON.stringify({ domain: ctx.dom.name, targetDir: ctx.root, scratchDir: ctx.scratchDir }),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      if (b.toString().includes('EXPORTS-READY')) resolve();
    });
    child.on('exit', (code) =>
      reject(new Error(`backup child exited (${code}) before its exports were ready: ${err}`)),
    );
  });
  return { child, ready };
}

async function killChild(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

test('backup process SIGKILLed half-way (running and shut off): the next run cleans up and succeeds', async (t) => {
  const ctx = await setup(t, {
    label: 'bksigkill',
    disks: [{ format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x0b, offset: 0, length: 2 * MiB }] }],
  });
  const full = await backup(ctx);
  await write(ctx, 'vda', 0x1b, 4 * MiB, 64 * KiB);

  const running = startChild(ctx);
  await running.ready;
  await killChild(running.child);
  assert.equal(await ctx.dom.hv.backups.isJobActive(ctx.dom.name), true, 'the dead run left its libvirt job');
  assert.equal((await lifeboatCheckpoints(ctx)).length, 2, 'and its checkpoint');
  await verifyTaken(ctx, full);
  const inc = await backup(ctx);
  assert.equal(diskOf(inc.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(inc.r, 'vda').copiedBytes, 64 * KiB);
  await verifyTaken(ctx, inc);
  assert.deepEqual(await lifeboatCheckpoints(ctx), [`lifeboat-${inc.r.snapshotId}`]);
  assert.deepEqual(
    await ctx.target.listSnapshotFolders(full.r.workloadId),
    [full.r.snapshotId, inc.r.snapshotId].sort(),
  );
  await assertNothingLeft(ctx);

  await ctx.dom.hv.domains.destroy(ctx.dom.name);
  const offline = startChild(ctx);
  await offline.ready;
  await killChild(offline.child);
  assert.ok((await qemuNbdPidsFor(ctx.dom.dir)).length > 0, 'the dead run left its qemu-nbd');
  const after = await backup(ctx);
  assert.equal(diskOf(after.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(after.r, 'vda').copiedBytes, 0);
  await verifyTaken(ctx, after);
  assert.deepEqual(
    (await readQcow2Bitmaps(ctx.dom.disks[0]!.path)).map((b) => b.name),
    [`lifeboat-${after.r.snapshotId}`],
    "the dead run's bitmap is gone",
  );
  await assertNothingLeft(ctx);
  assert.deepEqual((await verifyTarget(ctx.target.backend)).findings, []);
});

test('lifeboat vm backup: full, incremental, excluded disk, clear errors', async (t) => {
  const ctx = await setup(t, {
    label: 'bkcli',
    disks: [
      { format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x0c, offset: 0, length: MiB }] },
      { format: 'raw', sizeMiB: 64 },
    ],
  });
  const cli = async (...args: string[]) => {
    try {
      const r = await run(process.execPath, [
        '--import',
        'tsx',
        join(import.meta.dirname, '..', 'src', 'cli', 'main.ts'),
        ...args,
      ]);
      return { code: 0, ...r };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const base = ['vm', 'backup', ctx.dom.name, '--to', ctx.root!, '--scratch-dir', ctx.scratchDir, '-q'];
  const first = await cli(...base, '--exclude-disk', 'vdb', '--workload', 'cli-test');
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^snapshot \S+ \(full\) of domain /);
  assert.match(first.stdout, /vda\s+full/);
  assert.match(first.stdout, /vdb\s+skipped: excluded/);
  await write(ctx, 'vda', 0x1c, 2 * MiB, 64 * KiB);
  const second = await cli(...base, '--workload', 'cli-test');
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /\(incremental, parent /);
  assert.match(second.stdout, /vda\s+incremental copied\s+64\.0 KiB/);
  assert.match(second.stdout, /vdb\s+full/);
  const json = await cli(...base, '--workload', 'cli-test', '--full', '--json');
  assert.equal(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout).type, 'full');

  const unknown = await cli('vm', 'backup', 'lbtest-no-such-domain', '--to', ctx.root!);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /BACKUP_DOMAIN_NOT_FOUND/);
  const unreachable = await cli(
    ...['vm', 'backup', ctx.dom.name, '--to', 's3://lb-nowhere/x', '--endpoint', 'http://127.0.0.1:9'],
    ...['--access-key', 'a', '--secret-key', 'b', '--region', 'r'],
  );
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /TARGET_UNREACHABLE/);
  assert.ok(existsSync(ctx.root!));
  await assertNothingLeft(ctx);
});

test('backup to S3 (Ceph RGW): full + incremental, chains read back, target verifies', async (t) => {
  const ctx = await setup(
    t,
    {
      label: 'bks3',
      disks: [{ format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x0d, offset: 0, length: 6 * MiB }] }],
    },
    's3',
  );
  const full = await backup(ctx);
  await write(ctx, 'vda', 0x1d, 40 * MiB, 192 * KiB);
  await zero(ctx, 'vda', 0, MiB);
  const inc = await backup(ctx);
  assert.equal(diskOf(inc.r, 'vda').mode, 'incremental');
  assert.equal(diskOf(inc.r, 'vda').copiedBytes, 192 * KiB);
  await verifyTaken(ctx, full);
  await verifyTaken(ctx, inc);
  const report = await verifyTarget(ctx.target.backend);
  assert.deepEqual(report.findings, []);
  await assertNothingLeft(ctx);
});
