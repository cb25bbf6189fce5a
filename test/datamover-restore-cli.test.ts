import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseDomainXml } from '../src/hypervisor/domain-xml.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { openBackend } from '../src/target/open-target.js';
import { buildLocalChain, type LocalChain, writeFixtureSnapshots } from './datamover-restore-fixture.js';
import {
  createTestDomain,
  destroyTestDomain,
  libvirtTestEnv,
  removeStaleTestDomains,
  type TestDomain,
  testDomainName,
  testHypervisor,
} from './helpers/libvirt.js';
import { qemuRawSha256 } from './helpers/qemu-img.js';
import { newBucket, s3Env } from './target-s3-env.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'lifeboat.js');
const SNAPS = ['s0', 's1', 's2', 's3'];
const hv = testHypervisor();

function lifeboat(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** `lifeboat vm restore` and `lifeboat restore --from-target` as a user runs them. */
describe('restore CLI', () => {
  let work: string;
  let root: string;
  let source: TestDomain;
  let vda: LocalChain;
  const names: string[] = [];

  before(async () => {
    await removeStaleTestDomains(hv);
    work = join(libvirtTestEnv().vmDir, testDomainName('clirestore'));
    await mkdir(work, { recursive: true, mode: 0o755 });
    source = await createTestDomain({
      label: 'clisrc',
      disks: [{ format: 'qcow2', sizeMiB: 16 }],
      start: false,
    });
    vda = await buildLocalChain(work, 'vda', 16);
    const xml = await hv.domains.dumpXml(source.name, { inactive: true });
    root = join(work, 'target');
    const backend = await FsBackend.open(root, { create: true });
    await writeFixtureSnapshots(
      backend,
      'wl-cli',
      [
        {
          id: 'vm-lv',
          name: 'lv',
          uuid: parseDomainXml(xml).uuid!,
          domainXml: xml,
          disks: [{ name: 'vda', targetDev: 'vda', chain: vda }],
        },
      ],
      SNAPS,
    );
    await backend.close();
  });

  after(async () => {
    for (const n of names) await destroyTestDomain(hv, n, join(work, 'none')).catch(() => {});
    await source?.cleanup();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('vm restore from a snapshot folder: a new domain that starts, disk identical', async () => {
    const name = testDomainName('clinew');
    names.push(name);
    const folder = join(root, 'workloads/wl-cli/snapshots/s2/vms/vm-lv');
    const r = await lifeboat(
      'vm',
      'restore',
      folder,
      '--name',
      name,
      '--dir',
      join(work, name),
      '--start',
      '-q',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`as domain ${name} .*started`));
    assert.equal(await hv.domains.state(name), 'running');
    await hv.domains.destroy(name);
    assert.equal(await qemuRawSha256(join(work, name, `${name}-vda.qcow2`), work), vda.hashes[2]);
  });

  test('vm restore --in-place over the shut-off domain; running or unknown domains are refused', async () => {
    const r = await lifeboat(
      'vm',
      'restore',
      root,
      '--workload',
      'wl-cli',
      '--snapshot',
      's1',
      '--in-place',
      source.name,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await qemuRawSha256(source.disks[0]!.path, work), vda.hashes[1]);
    const unknown = await lifeboat('vm', 'restore', root, '--in-place', 'lbtest-no-such-domain');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^lifeboat: RESTORE_DOMAIN_NOT_FOUND: /);
    await hv.domains.start(source.name);
    try {
      const running = await lifeboat('vm', 'restore', root, '--in-place', source.name);
      assert.equal(running.code, 1);
      assert.match(running.stderr, /^lifeboat: RESTORE_DOMAIN_RUNNING: .*shut it off/);
    } finally {
      await hv.domains.destroy(source.name);
    }
  });

  test('clear errors: not a backup, unknown snapshot, unknown workload, missing --name', async () => {
    const notBackup = await lifeboat('vm', 'restore', work, '--name', 'x');
    assert.match(notBackup.stderr, /^lifeboat: RESTORE_NOT_A_BACKUP: /);
    const missing = await lifeboat('vm', 'restore', join(work, 'nope'), '--name', 'x');
    assert.match(missing.stderr, /^lifeboat: RESTORE_NOT_A_BACKUP: /);
    const snap = await lifeboat('vm', 'restore', root, '--snapshot', 'zz', '--name', 'x');
    assert.match(snap.stderr, /^lifeboat: RESTORE_SNAPSHOT_NOT_FOUND: /);
    const wl = await lifeboat(
      'restore',
      '--from-target',
      root,
      '--workload',
      'wl-none',
      '--to',
      join(work, 'x'),
    );
    assert.match(wl.stderr, /^lifeboat: RESTORE_WORKLOAD_NOT_FOUND: /);
    const noName = await lifeboat('vm', 'restore', root);
    assert.match(noName.stderr, /^lifeboat: RESTORE_BAD_OPTION: give either --name/);
    for (const r of [notBackup, missing, snap, wl, noName]) assert.equal(r.code, 1);
  });

  test('restore --from-target from a directory and from S3 (RGW)', async () => {
    const out = join(work, 'dr-fs');
    const fs = await lifeboat(
      'restore',
      '--from-target',
      root,
      '--workload',
      'wl-cli',
      '--snapshot',
      's3',
      '--to',
      out,
    );
    assert.equal(fs.code, 0, fs.stderr);
    assert.match(fs.stdout, /virsh define .*domain-restored\.xml/);
    assert.deepEqual((await readdir(join(out, 'vm-lv'))).sort(), [
      'domain-restored.xml',
      'domain.xml',
      'vda.raw',
      'vm.json',
    ]);
    assert.equal(await qemuRawSha256(join(out, 'vm-lv/vda.raw'), work), vda.hashes[3]);

    const env = s3Env();
    const url = `s3://${await newBucket('clirestore')}/dr/target`;
    const s3 = await openBackend(url, env);
    try {
      const files = (await readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
      for (const f of files) {
        const path = join(f.parentPath, f.name);
        await s3.putAtomic(relative(root, path), await readFile(path));
      }
    } finally {
      await s3.close();
    }
    const out2 = join(work, 'dr-s3');
    const r = await lifeboat(
      'restore',
      '--from-target',
      url,
      '--snapshot',
      's1',
      '--to',
      out2,
      '--format',
      'qcow2',
      '--endpoint',
      env.endpoint,
      '--access-key',
      env.accessKeyId,
      '--secret-key',
      env.secretAccessKey,
      '--region',
      env.region,
      '--json',
    );
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { snapshotId: string; vms: { disks: { path: string }[] }[] };
    assert.equal(result.snapshotId, 's1');
    assert.equal(await qemuRawSha256(result.vms[0]!.disks[0]!.path, work), vda.hashes[1]);
  });
});
