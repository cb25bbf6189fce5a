import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { findSnapshot, findVm, openBackupDisk } from '../src/datamover/restore-source.js';
import { restoreDiskToFile } from '../src/datamover/restore-to-file.js';
import type { TargetBackend } from '../src/target/backend.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { openBackend } from '../src/target/open-target.js';
import { scanTarget } from '../src/target/scan.js';
import { Target } from '../src/target/target.js';
import { verifyTarget } from '../src/target/verify.js';
import {
  buildLocalChain,
  type LocalChain,
  sampleDomainXml,
  writeFixtureSnapshots,
} from './datamover-restore-fixture.js';
import { qemuRawSha256, tempDir } from './helpers/qemu-img.js';
import { newBucket, s3Env } from './target-s3-env.js';

const run = promisify(execFile);
const SNAPS = ['full-0', 'inc-1', 'inc-2', 'inc-3'];

/**
 * A target is self-contained (docs/target-format.md, "Relocation guarantees"): copied with `cp -a`
 * and moved elsewhere, or copied to another bucket and prefix, it still scans, verifies and restores
 * every snapshot, and plain qemu-img opens every chain where the files lie.
 */
describe('relocated targets', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let vda: LocalChain;
  let vdb: LocalChain;
  const hashes = (disk: string) => (disk === 'vda' ? vda : vdb).hashes;

  before(async () => {
    work = await tempDir('lb-reloc-');
    vda = await buildLocalChain(work.dir, 'vda', 16);
    vdb = await buildLocalChain(work.dir, 'vdb', 8, [
      ['write -P 0x51 0 1M'],
      ['write -P 0x61 3M 64k'],
      ['write -z 0 512k', 'write -P 0x62 6M 1M'],
      ['discard 3M 1M'],
    ]);
    const original = await FsBackend.open(join(work.dir, 'original'), { create: true });
    const uuid = '22222222-2222-3333-4444-555555555555';
    await writeFixtureSnapshots(
      original,
      'wl-reloc',
      [
        {
          id: 'vm-1',
          name: 'app',
          uuid,
          domainXml: sampleDomainXml('app', uuid, ['vda', 'vdb']),
          disks: [
            { name: 'vda', targetDev: 'vda', chain: vda },
            { name: 'vdb', targetDev: 'vdb', chain: vdb },
          ],
        },
      ],
      SNAPS,
    );
    await original.close();
  });

  after(async () => {
    await work?.cleanup();
  });

  /** Scan, verify and restore every snapshot of the relocated copy, comparing with the oracle. */
  async function checkTarget(backend: TargetBackend, outDir: string): Promise<void> {
    const scan = await scanTarget(backend);
    const wl = scan.workloads.find((w) => w.id === 'wl-reloc');
    assert.ok(wl, 'workload listed');
    assert.deepEqual(
      wl.snapshots.map((s) => [s.id, s.chainHealthy]),
      SNAPS.map((s) => [s, true]),
    );
    const report = await verifyTarget(backend);
    assert.deepEqual(report.findings, []);
    assert.equal(report.snapshots, SNAPS.length);
    const target = await Target.open(backend);
    for (const [k, sid] of SNAPS.entries()) {
      const vm = await findVm(target, await findSnapshot(target, 'wl-reloc', sid));
      for (const d of vm.disks) {
        const out = join(outDir, `${sid}-${d.name}.raw`);
        const disk = await openBackupDisk(backend, vm, d);
        try {
          await restoreDiskToFile(disk, out, { format: 'raw' });
        } finally {
          await disk.close();
        }
        assert.equal(await qemuRawSha256(out, work.dir), hashes(d.name)[k], `${sid} ${d.name}`);
        await rm(out);
      }
    }
  }

  test('cp -a to another directory, then moved again, original gone: scan, verify, restore, qemu-img', async () => {
    const copy = join(work.dir, 'copy');
    await run('cp', ['-a', join(work.dir, 'original'), copy]);
    const moved = join(work.dir, 'elsewhere', 'mounted-here');
    await run('mkdir', ['-p', join(work.dir, 'elsewhere')]);
    await rename(copy, moved);
    const out = join(work.dir, 'out-fs');
    await run('mkdir', ['-p', out]);
    // The original disappears: nothing may still point at it.
    await rename(join(work.dir, 'original'), join(work.dir, 'original-hidden'));
    try {
      const backend = await FsBackend.open(moved);
      try {
        await checkTarget(backend, out);
      } finally {
        await backend.close();
      }
      // Plain qemu-img, with nothing but the files: the newest image of each chain is the disk.
      for (const disk of ['vda', 'vdb']) {
        const newest = join(moved, 'workloads/wl-reloc/snapshots/inc-3/vms/vm-1', `${disk}.qcow2`);
        assert.equal(await qemuRawSha256(newest, work.dir), hashes(disk)[3], `qemu-img ${disk}`);
      }
    } finally {
      await rename(join(work.dir, 'original-hidden'), join(work.dir, 'original'));
    }
  });

  test('copied to S3, then to another bucket and prefix: scan, verify, restore every snapshot', async () => {
    const env = s3Env();
    const root = join(work.dir, 'original');
    const first = await openBackend(`s3://${await newBucket('reloc')}/site-a/targets`, env);
    const second = await openBackend(`s3://${await newBucket('reloc2')}/dr/copy`, env);
    try {
      // A byte-for-byte upload of every file (what `aws s3 sync` would do).
      const files = (await readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
      for (const f of files) {
        const path = join(f.parentPath ?? (f as unknown as { path: string }).path, f.name);
        await first.putAtomic(relative(root, path), await readFile(path));
      }
      for await (const o of first.list('')) await second.putAtomic(o.key, await first.readAll(o.key));
      const out = join(work.dir, 'out-s3');
      await run('mkdir', ['-p', out]);
      await checkTarget(second, out);
    } finally {
      await first.close();
      await second.close();
    }
  });
});
