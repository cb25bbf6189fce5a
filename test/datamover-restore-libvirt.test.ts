import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { restoreDomain } from '../src/datamover/restore-domain.js';
import { isRestoreError } from '../src/datamover/restore-errors.js';
import { restoreInPlace } from '../src/datamover/restore-in-place.js';
import { findSnapshot, findVm } from '../src/datamover/restore-source.js';
import { parseDomainXml } from '../src/hypervisor/domain-xml.js';
import { checkpointDisksFor } from '../src/hypervisor/libvirt.js';
import { FsBackend } from '../src/target/fs-backend.js';
import type { Target } from '../src/target/target.js';
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

const SNAPS = ['s0', 's1', 's2', 's3'];
const hv = testHypervisor();

/**
 * Restores with real libvirt + QEMU (TCG): snapshots whose saved definition is a real test domain's,
 * restored as new domains that define and start, and in place over the shut-off original.
 */
describe('restore with libvirt', () => {
  let work: string;
  let source: TestDomain;
  let backend: FsBackend;
  let target: Target;
  let vda: LocalChain;
  let vdb: LocalChain;
  const restoredNames: string[] = [];

  before(async () => {
    await removeStaleTestDomains(hv);
    work = join(libvirtTestEnv().vmDir, testDomainName('restorework'));
    await mkdir(work, { recursive: true, mode: 0o755 });
    source = await createTestDomain({
      label: 'rsrc',
      disks: [
        { format: 'qcow2', sizeMiB: 16, fill: [{ pattern: 0x99, offset: 0, length: 16 << 20 }] },
        { format: 'raw', sizeMiB: 8, fill: [{ pattern: 0x98, offset: 1 << 20, length: 2 << 20 }] },
      ],
      start: false,
    });
    vda = await buildLocalChain(work, 'vda', 16);
    vdb = await buildLocalChain(work, 'vdb', 8, [
      ['write -P 0x51 0 1M', 'write -P 0x52 7M 1M'],
      ['write -P 0x61 3M 64k'],
      ['write -z 0 512k'],
      ['write -P 0x71 4M 2M', 'discard 7M 1M'],
    ]);
    const xml = await hv.domains.dumpXml(source.name, { inactive: true });
    backend = await FsBackend.open(join(work, 'target'), { create: true });
    target = await writeFixtureSnapshots(
      backend,
      'wl-lv',
      [
        {
          id: 'vm-src',
          name: source.name,
          uuid: parseDomainXml(xml).uuid!,
          domainXml: xml,
          disks: [
            { name: 'vda', targetDev: 'vda', chain: vda },
            { name: 'vdb', targetDev: 'vdb', chain: vdb },
          ],
        },
      ],
      SNAPS,
    );
  });

  after(async () => {
    for (const n of restoredNames) await destroyTestDomain(hv, n, join(work, 'none')).catch(() => {});
    await source?.cleanup();
    await backend?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const vmOf = async (sid: string) => findVm(target, await findSnapshot(target, 'wl-lv', sid));
  const newName = (tag: string) => {
    const n = testDomainName(tag);
    restoredNames.push(n);
    return n;
  };

  for (const [sid, format] of [
    ['s3', 'qcow2'],
    ['s1', 'raw'],
  ] as const) {
    test(`snapshot ${sid} restores as a new ${format} domain that defines and starts, disks identical`, async () => {
      const name = newName(`r${sid}`);
      const progress: number[] = [];
      const r = await restoreDomain({
        backend,
        vm: await vmOf(sid),
        hypervisor: hv,
        name,
        dir: join(work, name),
        format,
        start: true,
        onProgress: (p) => progress.push(p.bytesDone),
      });
      assert.equal(r.started, true);
      assert.equal(await hv.domains.state(name), 'running');
      const desc = parseDomainXml(await hv.domains.dumpXml(name, { inactive: true }));
      assert.notEqual(desc.uuid, parseDomainXml((await vmOf(sid)).domainXml).uuid);
      assert.deepEqual(
        desc.disks.map((d) => [d.target, d.format, d.source.type === 'file' ? d.source.path : '']),
        r.disks.map((d) => [d.targetDev, format, d.path]),
      );
      const savedMacs = parseDomainXml((await vmOf(sid)).domainXml).nics.map((n) => n.mac);
      assert.ok(
        desc.nics.every((n) => n.mac && !savedMacs.includes(n.mac)),
        'new MACs',
      );
      assert.ok(
        progress.length > 0 && progress[progress.length - 1] === r.disks.reduce((n, d) => n + d.dataBytes, 0),
      );
      await hv.domains.destroy(name);
      const k = SNAPS.indexOf(sid);
      assert.equal(await qemuRawSha256(r.disks[0]!.path, work), vda.hashes[k]);
      assert.equal(await qemuRawSha256(r.disks[1]!.path, work), vdb.hashes[k]);
    });
  }

  test('a name in use, a missing network and a cancel leave nothing behind', async () => {
    const vm = await vmOf('s2');
    await assert.rejects(restoreDomain({ backend, vm, hypervisor: hv, name: source.name, dir: work }), (e) =>
      isRestoreError(e, 'RESTORE_DOMAIN_EXISTS'),
    );
    const onMissingNet = {
      ...vm,
      domainXml: vm.domainXml.replace(
        /<interface type="user">|<interface type='user'>/,
        `<interface type='network'><source network='lb-no-such-net'/>`,
      ),
    };
    assert.match(onMissingNet.domainXml, /lb-no-such-net/);
    const name = newName('rnet');
    await assert.rejects(
      restoreDomain({ backend, vm: onMissingNet, hypervisor: hv, name, dir: join(work, name) }),
      (e) => isRestoreError(e, 'RESTORE_NETWORK_NOT_FOUND') && /lb-no-such-net/.test((e as Error).message),
    );
    assert.equal(existsSync(join(work, name)), false, 'nothing written before the check');
    // Mapped to user-mode networking, the same VM restores (defined, not started).
    const r = await restoreDomain({
      backend,
      vm: onMissingNet,
      hypervisor: hv,
      name,
      dir: join(work, name),
      networkMap: { 'lb-no-such-net': { type: 'user' } },
      disks: ['vda'],
    });
    assert.deepEqual(r.skipped, [{ target: 'vdb', reason: 'not selected: left out' }]);
    const desc = parseDomainXml(await hv.domains.dumpXml(name, { inactive: true }));
    assert.deepEqual(
      desc.nics.map((n) => n.type),
      ['user'],
    );
    assert.deepEqual(
      desc.disks.map((d) => d.target),
      ['vda'],
    );

    const cancelled = newName('rcancel');
    const ac = new AbortController();
    await assert.rejects(
      restoreDomain({
        backend,
        vm,
        hypervisor: hv,
        name: cancelled,
        dir: join(work, cancelled),
        signal: ac.signal,
        onProgress: (p) => {
          if (p.targetDev === 'vdb' && p.diskBytesDone > 0) ac.abort();
        },
      }),
      (e) => isRestoreError(e, 'RESTORE_ABORTED'),
    );
    assert.deepEqual(await readdir(join(work, cancelled)), []);
    assert.equal(await hv.domains.exists(cancelled), false);
  });

  test('in-place restore over the shut-off domain: identical disks, checkpoints gone; a running one is refused', async () => {
    // A checkpoint (needs the domain running) that the restore must invalidate.
    await hv.domains.start(source.name);
    const desc = parseDomainXml(await hv.domains.dumpXml(source.name));
    await hv.checkpoints.create(source.name, 'lb-before-restore', checkpointDisksFor(desc));
    await assert.rejects(
      restoreInPlace({ backend, vm: await vmOf('s2'), hypervisor: hv, domain: source.name }),
      (e) => isRestoreError(e, 'RESTORE_DOMAIN_RUNNING'),
    );
    await hv.domains.destroy(source.name);
    for (const sid of ['s2', 's0', 's3']) {
      const r = await restoreInPlace({ backend, vm: await vmOf(sid), hypervisor: hv, domain: source.name });
      const k = SNAPS.indexOf(sid);
      assert.equal(await qemuRawSha256(source.disks[0]!.path, work), vda.hashes[k], `vda ${sid}`);
      assert.equal(await qemuRawSha256(source.disks[1]!.path, work), vdb.hashes[k], `vdb ${sid}`);
      if (sid === 's2') assert.deepEqual(r.deletedCheckpoints, ['lb-before-restore']);
    }
    assert.deepEqual(await hv.checkpoints.names(source.name), []);
    await hv.domains.start(source.name);
    assert.equal(await hv.domains.state(source.name), 'running');
    await hv.domains.destroy(source.name);
    await assert.rejects(
      restoreInPlace({ backend, vm: await vmOf('s2'), hypervisor: hv, domain: 'lbtest-no-such-domain' }),
      (e) => isRestoreError(e, 'RESTORE_DOMAIN_NOT_FOUND'),
    );
  });
});
