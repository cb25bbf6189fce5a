/**
 * The hypervisor layer against real libvirt 9 + QEMU 7.2 (TCG, no guest OS). Needs the libvirt test
 * service (scripts/services/libvirt.sh). Data read from NBD exports is checked with the reference
 * tools (qemu-img convert, nbdinfo), not with Lifeboat's own NBD client.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import { parseDomainXml, rewriteDomainXml } from '../src/hypervisor/domain-xml.js';
import { HypervisorError } from '../src/hypervisor/errors.js';
import { checkpointDisksFor, nbdExportUri } from '../src/hypervisor/libvirt.js';
import { readQcow2Bitmaps } from '../src/hypervisor/qcow2-bitmaps.js';
import { QemuNbdExport } from '../src/hypervisor/qemu-nbd.js';
import {
  createTestDomain,
  guestWrite,
  libvirtTestEnv,
  removeStaleTestDomains,
  type TestDomain,
} from './helpers/libvirt.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KiB = 1024;

before(async () => {
  libvirtTestEnv(); // fails the file when the service is missing
  await removeStaleTestDomains();
});

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof HypervisorError, `expected HypervisorError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** What a disk must read as: a size plus the pattern writes applied in order. */
function expectedImage(
  sizeBytes: number,
  writes: ReadonlyArray<{ pattern: number; offset: number; length: number }>,
) {
  const buf = Buffer.alloc(sizeBytes);
  for (const w of writes) buf.fill(w.pattern, w.offset, w.offset + w.length);
  return buf;
}

/** Reads a whole NBD export with qemu-img (the reference client) into memory. */
async function readExport(uri: string, scratchDir: string, name: string): Promise<Buffer> {
  const out = join(scratchDir, `${name}.raw`);
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out]);
  const data = await readFile(out);
  await rm(out);
  return data;
}

async function dirtyExtents(
  uri: string,
  context: string,
): Promise<Array<{ offset: number; length: number }>> {
  const { stdout } = await run('nbdinfo', ['--json', `--map=${context}`, uri]);
  const map = JSON.parse(stdout) as Array<{ offset: number; length: number; type: number }>;
  return map.filter((e) => (e.type & 1) === 1).map((e) => ({ offset: e.offset, length: e.length }));
}

/** A TCP port nobody listens on right now (the kernel picks it; closed again before use). */
async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function withDomain(
  t: { after: (fn: () => Promise<void>) => void },
  ...args: Parameters<typeof createTestDomain>
): Promise<TestDomain> {
  const dom = await createTestDomain(...args);
  t.after(() => dom.cleanup());
  return dom;
}

test('domain lifecycle: define, start, list, destroy, undefine, typed errors', async (t) => {
  const dom = await withDomain(t, { label: 'life', disks: [{ format: 'qcow2', sizeMiB: 64 }], start: false });
  const hv = dom.hv;
  let summary = (await hv.domains.list()).find((d) => d.name === dom.name);
  assert.deepEqual(summary && { state: summary.state, persistent: summary.persistent }, {
    state: 'shutoff',
    persistent: true,
  });
  await hv.domains.start(dom.name);
  assert.equal(await hv.domains.state(dom.name), 'running');
  summary = (await hv.domains.list()).find((d) => d.name === dom.name);
  assert.equal(summary?.state, 'running');
  assert.equal(summary?.uuid, await hv.domains.uuid(dom.name));
  assert.equal(await hv.domains.exists(dom.name), true);
  assert.equal(await hv.domains.exists(summary!.uuid), true, 'looked up by UUID too');

  await rejectsWithCode(hv.domains.start(dom.name), 'DOMAIN_RUNNING');
  await rejectsWithCode(hv.domains.describe('lbtest-no-such-domain'), 'DOMAIN_NOT_FOUND');

  const desc = await hv.domains.describe(dom.name);
  assert.equal(desc.type, 'qemu');
  assert.equal(desc.memoryBytes, 64 * MiB);
  assert.equal(desc.disks[0]?.sizeBytes, 64 * MiB);

  // No guest OS answers the ACPI power button: a plain shutdown times out, a forced one destroys.
  await rejectsWithCode(hv.domains.shutdown(dom.name, { timeoutMs: 1500 }), 'SHUTDOWN_TIMEOUT');
  await hv.domains.shutdown(dom.name, { timeoutMs: 1500, forceAfterTimeout: true });
  await hv.domains.destroy(dom.name); // already off: no error
  assert.equal(await hv.domains.state(dom.name), 'shutoff');
  await rejectsWithCode(
    hv.checkpoints.create(dom.name, 'cp-off', [{ target: 'vda', checkpoint: 'bitmap' }]),
    'DOMAIN_NOT_RUNNING',
  );
  await hv.domains.undefine(dom.name);
  assert.equal(await hv.domains.exists(dom.name), false);
});

test('domain XML: description, and a rewritten copy defines as a new domain keeping the rest', async (t) => {
  const dom = await withDomain(t, {
    label: 'xml',
    disks: [
      { format: 'qcow2', sizeMiB: 64 },
      { format: 'raw', sizeMiB: 64 },
    ],
    guestAgentChannel: true,
  });
  const hv = dom.hv;
  const desc = await hv.domains.describe(dom.name);
  assert.equal(desc.name, dom.name);
  assert.equal(desc.vcpus, 1);
  assert.equal(desc.os.type, 'hvm');
  assert.match(desc.os.machine ?? '', /^pc/);
  assert.equal(desc.hasGuestAgentChannel, true);
  assert.deepEqual(
    desc.disks.map((d) => [d.target, d.bus, d.device, d.format, d.source, d.sizeBytes, d.readonly]),
    [
      ['vda', 'virtio', 'disk', 'qcow2', { type: 'file', path: dom.disks[0]!.path }, 64 * MiB, false],
      ['vdb', 'virtio', 'disk', 'raw', { type: 'file', path: dom.disks[1]!.path }, 64 * MiB, false],
    ],
  );
  assert.equal(desc.nics.length, 1);
  assert.equal(desc.nics[0]?.type, 'user');
  assert.match(desc.nics[0]?.mac ?? '', /^52:54:00:/);
  assert.deepEqual(
    checkpointDisksFor(desc).map((d) => d.checkpoint),
    ['bitmap', 'no'],
  );

  // Restore-style copy from the *live* XML (the harder case: aliases, indexes, agent socket path).
  const newName = `${dom.name}-copy`;
  const newDisk = join(dom.dir, 'restored-vda.raw');
  await run('qemu-img', ['create', '-q', '-f', 'raw', newDisk, '32M']);
  const uuid = '0b7a3f2c-1d2e-4f50-9a6b-7c8d9e0f1a2b';
  const xml = rewriteDomainXml(await hv.domains.dumpXml(dom.name), {
    name: newName,
    uuid,
    disks: { vda: { path: newDisk, format: 'raw' } },
    removeDisks: ['vdb'],
    networks: { user: { type: 'user' } },
  });
  const defined = await hv.domains.define(xml);
  t.after(async () => {
    if (await hv.domains.exists(newName)) await hv.domains.undefine(newName);
  });
  assert.deepEqual(defined, { name: newName, uuid });
  await rejectsWithCode(
    hv.domains.define(xml.replace(uuid, '0b7a3f2c-1d2e-4f50-9a6b-000000000000')),
    'DOMAIN_EXISTS',
  );
  const copy = parseDomainXml(await hv.domains.dumpXml(newName, { inactive: true }));
  assert.equal(copy.memoryBytes, desc.memoryBytes);
  assert.equal(copy.type, 'qemu');
  assert.equal(copy.hasGuestAgentChannel, true);
  assert.deepEqual(
    copy.disks.map((d) => [d.target, d.format, d.source]),
    [['vda', 'raw', { type: 'file', path: newDisk }]],
  );
  assert.notEqual(copy.nics[0]?.mac, desc.nics[0]?.mac);
  assert.match(copy.nics[0]?.mac ?? '', /^52:54:00:/);
  // Whatever was not touched comes through: the serial console, the ACPI feature, the boot order.
  const copyXml = await hv.domains.dumpXml(newName, { inactive: true });
  assert.match(copyXml, /<serial type='pty'>/);
  assert.match(copyXml, /<acpi\/>/);
  assert.deepEqual(copy.os.bootDevices, ['hd']);
  await hv.domains.start(newName);
  await hv.domains.destroy(newName);
});

test('checkpoints: create, list, typed errors, delete, metadata-only delete and redefine', async (t) => {
  const dom = await withDomain(t, {
    label: 'cp',
    disks: [
      { format: 'qcow2', sizeMiB: 64 },
      { format: 'raw', sizeMiB: 64 },
    ],
  });
  const hv = dom.hv;
  const disks = checkpointDisksFor(await hv.domains.describe(dom.name));
  const cp1 = await hv.checkpoints.create(dom.name, 'cp1', disks);
  assert.equal(cp1.name, 'cp1');
  assert.deepEqual(cp1.disks, [
    { target: 'vda', checkpoint: 'bitmap', bitmap: 'cp1' },
    { target: 'vdb', checkpoint: 'no', bitmap: undefined },
  ]);
  assert.ok((cp1.creationTime ?? 0) > 1_600_000_000);
  await hv.checkpoints.create(dom.name, 'cp2', disks);
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['cp1', 'cp2']);
  const listed = await hv.checkpoints.list(dom.name);
  assert.equal(listed[1]?.parent, 'cp1');

  await rejectsWithCode(hv.checkpoints.create(dom.name, 'cp1', disks), 'CHECKPOINT_EXISTS');
  await rejectsWithCode(
    hv.checkpoints.create(dom.name, 'cp-raw', [
      { target: 'vda', checkpoint: 'bitmap' },
      { target: 'vdb', checkpoint: 'bitmap' },
    ]),
    'CHECKPOINT_UNSUPPORTED',
  );
  await rejectsWithCode(hv.checkpoints.dumpXml(dom.name, 'nope'), 'CHECKPOINT_NOT_FOUND');
  await assert.rejects(hv.checkpoints.create(dom.name, 'bad name', disks), { code: 'INVALID_ARGUMENT' });

  // Forget cp2 (metadata only: the bitmap stays in QEMU), then bring it back from saved XML;
  // --redefine-validate checks the bitmap is really there.
  const saved = await hv.checkpoints.dumpXml(dom.name, 'cp2');
  await hv.checkpoints.delete(dom.name, 'cp2', { metadataOnly: true });
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['cp1']);
  const back = await hv.checkpoints.redefine(dom.name, saved, { validate: true });
  assert.equal(back.parent, 'cp1');
  assert.equal(back.creationTime, listed[1]?.creationTime);
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['cp1', 'cp2']);

  // A real delete removes the bitmap as well: once QEMU has written its bitmaps back into the image
  // (at destroy), only cp2 is there.
  await hv.checkpoints.delete(dom.name, 'cp1');
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['cp2']);
  await hv.domains.destroy(dom.name);
  const bitmaps = await readQcow2Bitmaps(dom.disks[0]!.path);
  assert.deepEqual(
    bitmaps.map((b) => b.name),
    ['cp2'],
  );
  // Metadata survives the shut-off; the checkpoint is usable again after the next start.
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['cp2']);
});

test('pull backup: full point-in-time export, incremental dirty bitmap, abort cleanup, shut-off qemu-nbd export', async (t) => {
  const { vmDir } = libvirtTestEnv();
  const vdaFill = [
    { pattern: 0x11, offset: 0, length: 1 * MiB },
    { pattern: 0x22, offset: 5 * MiB, length: 512 * KiB },
  ];
  const vdbFill = [{ pattern: 0x33, offset: 1 * MiB, length: 256 * KiB }];
  const dom = await withDomain(t, {
    label: 'backup',
    disks: [
      { format: 'qcow2', sizeMiB: 64, fill: vdaFill },
      { format: 'raw', sizeMiB: 64, fill: vdbFill },
    ],
  });
  const hv = dom.hv;
  const readDir = await mkdtemp(join(vmDir, `${dom.name}-read-`));
  t.after(() => rm(readDir, { recursive: true, force: true }));

  // Writes before the checkpoint are in the full backup.
  const beforeCp = { pattern: 0x44, offset: 10 * MiB, length: 64 * KiB };
  await guestWrite(dom, 'vda', beforeCp.pattern, beforeCp.offset, beforeCp.length);

  const cpDisks = checkpointDisksFor(await hv.domains.describe(dom.name));
  const full = await hv.backups.begin(dom.name, {
    disks: [
      { target: 'vda', backup: true },
      { target: 'vdb', backup: true },
    ],
    checkpoint: { name: 'full1', disks: cpDisks },
    workDir: vmDir,
  });
  assert.equal(full.server.transport, 'unix');
  // libvirt 9.0: exports are named after the disk target; a full backup has no bitmap context.
  assert.deepEqual(
    full.exports.map((e) => [e.target, e.exportName, e.mode, e.dirtyBitmapContext]),
    [
      ['vda', 'vda', 'full', undefined],
      ['vdb', 'vdb', 'full', undefined],
    ],
  );
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['full1']);
  assert.equal((await hv.backups.jobInfo(dom.name)).operation, 'Backup');

  // Guest writes after backup-begin: NOT in the export (the scratch file keeps the old blocks)...
  const during = [
    { target: 'vda', pattern: 0xee, offset: 0, length: 64 * KiB },
    { target: 'vda', pattern: 0xef, offset: 20 * MiB, length: 128 * KiB },
    { target: 'vdb', pattern: 0xdd, offset: 1 * MiB, length: 64 * KiB },
  ];
  for (const w of during) await guestWrite(dom, w.target, w.pattern, w.offset, w.length);
  await rejectsWithCode(
    hv.backups.begin(dom.name, { disks: [{ target: 'vda', backup: true }], workDir: vmDir }),
    'BACKUP_JOB_ACTIVE',
  );

  const vda = await readExport(nbdExportUri(full.server, 'vda'), readDir, 'vda-full');
  assert.ok(
    vda.equals(expectedImage(64 * MiB, [...vdaFill, beforeCp])),
    'vda export = content at the checkpoint',
  );
  const vdb = await readExport(nbdExportUri(full.server, 'vdb'), readDir, 'vdb-full');
  assert.ok(vdb.equals(expectedImage(64 * MiB, vdbFill)), 'vdb export = content at the checkpoint');

  await hv.backups.end(full);
  assert.equal(await hv.backups.isJobActive(dom.name), false);
  for (const f of full.scratchFiles) assert.equal(existsSync(f), false, `${f} removed`);
  assert.equal(existsSync(full.jobDir), false);

  // ...but they are in the next incremental: the bitmap of full1 covers exactly them (64 KiB granularity).
  const after = { target: 'vda', pattern: 0x55, offset: 30 * MiB, length: 192 * KiB };
  await guestWrite(dom, after.target, after.pattern, after.offset, after.length);
  const inc = await hv.backups.begin(dom.name, {
    incremental: 'full1',
    // vdb is raw (no bitmap): full in the same job.
    disks: [
      { target: 'vda', backup: true },
      { target: 'vdb', backup: true, incremental: null },
    ],
    checkpoint: { name: 'inc1', disks: cpDisks },
    workDir: vmDir,
  });
  t.after(() => hv.backups.end(inc));
  const incVda = inc.exports.find((e) => e.target === 'vda');
  assert.equal(incVda?.mode, 'incremental');
  assert.equal(incVda?.incremental, 'full1');
  // libvirt names the exported bitmap backup-<target>.
  assert.equal(incVda?.dirtyBitmapContext, 'qemu:dirty-bitmap:backup-vda');
  assert.equal(inc.exports.find((e) => e.target === 'vdb')?.mode, 'full');
  const dirty = await dirtyExtents(nbdExportUri(inc.server, 'vda'), incVda!.dirtyBitmapContext!);
  assert.deepEqual(dirty, [
    { offset: 0, length: 64 * KiB },
    { offset: 20 * MiB, length: 128 * KiB },
    { offset: 30 * MiB, length: 192 * KiB },
  ]);
  const incData = await readExport(nbdExportUri(inc.server, 'vda'), readDir, 'vda-inc');
  assert.ok(incData.equals(expectedImage(64 * MiB, [...vdaFill, beforeCp, ...during.slice(0, 2), after])));
  await hv.backups.end(inc);
  await hv.backups.end(inc); // twice: harmless
  assert.equal(await hv.backups.isJobActive(dom.name), false);
  assert.deepEqual(await hv.checkpoints.names(dom.name), ['full1', 'inc1']);

  // Shut off: the bitmaps persist in the qcow2 and qemu-nbd exports them read-only.
  const lastWrite = { pattern: 0x66, offset: 40 * MiB, length: 64 * KiB };
  await guestWrite(dom, 'vda', lastWrite.pattern, lastWrite.offset, lastWrite.length);
  await hv.domains.destroy(dom.name);
  const bitmaps = await readQcow2Bitmaps(dom.disks[0]!.path);
  assert.deepEqual(bitmaps.map((b) => [b.name, b.enabled, b.inconsistent, b.granularity]).sort(), [
    ['full1', true, false, 65536],
    ['inc1', true, false, 65536],
  ]);
  const nbd = await QemuNbdExport.start({
    image: dom.disks[0]!.path,
    format: 'qcow2',
    bitmaps: ['inc1', 'full1'],
    exportName: 'vda',
    socketParentDir: readDir,
  });
  t.after(() => nbd.stop());
  // Every checkpoint bitmap stays enabled: full1 holds all writes since full1, inc1 only the last one.
  assert.deepEqual(await dirtyExtents(nbd.uri, 'qemu:dirty-bitmap:inc1'), [
    { offset: 40 * MiB, length: 64 * KiB },
  ]);
  assert.equal((await dirtyExtents(nbd.uri, 'qemu:dirty-bitmap:full1')).length, 4);
  const offline = await readExport(nbd.uri, readDir, 'vda-offline');
  assert.ok(
    offline.equals(expectedImage(64 * MiB, [...vdaFill, beforeCp, ...during.slice(0, 2), after, lastWrite])),
  );
  const pid = nbd.pid;
  await nbd.stop();
  assert.equal(existsSync(`/proc/${pid}`), false, 'qemu-nbd gone');
  assert.equal(existsSync(nbd.socketPath), false, 'socket gone');
});

test('pull backup abort: no job, no scratch file, no socket left; TCP server on 127.0.0.1', async (t) => {
  const { vmDir } = libvirtTestEnv();
  const dom = await withDomain(t, {
    label: 'abort',
    disks: [{ format: 'qcow2', sizeMiB: 64, fill: [{ pattern: 0x77, offset: 0, length: 256 * KiB }] }],
  });
  const hv = dom.hv;
  const port = await freeTcpPort();
  const job = await hv.backups.begin(dom.name, {
    disks: [{ target: 'vda', backup: true }],
    workDir: vmDir,
    tcp: { host: '127.0.0.1', port },
  });
  assert.deepEqual(job.server, { transport: 'tcp', host: '127.0.0.1', port });
  const { stdout } = await run('nbdinfo', ['--size', nbdExportUri(job.server, 'vda')]);
  assert.equal(Number(stdout.trim()), 64 * MiB);
  await guestWrite(dom, 'vda', 0x78, 0, 64 * KiB); // makes QEMU copy a block into the scratch file
  await hv.backups.abort(dom.name);
  assert.equal(await hv.backups.isJobActive(dom.name), false);
  await hv.backups.end(job);
  for (const f of job.scratchFiles) assert.equal(existsSync(f), false);
  assert.equal(existsSync(job.jobDir), false);
  await rejectsWithCode(hv.backups.describe(dom.name), 'NO_BACKUP_JOB');
  await assert.rejects(run('nbdinfo', ['--size', nbdExportUri(job.server, 'vda')]));
});

test('guest agent: freeze is skipped (with the reason) when there is no agent', async (t) => {
  const plain = await withDomain(t, { label: 'noagent', disks: [{ format: 'qcow2', sizeMiB: 64 }] });
  const withChannel = await withDomain(t, {
    label: 'deadagent',
    disks: [{ format: 'qcow2', sizeMiB: 64 }],
    guestAgentChannel: true,
  });
  const ga = plain.hv.guestAgent;
  assert.deepEqual(await ga.freeze(plain.name), {
    skipped: true,
    reason: 'the domain has no guest agent channel',
  });
  assert.deepEqual(await ga.freeze(withChannel.name), {
    skipped: true,
    reason: 'the guest agent does not respond',
  });
  const seen = await ga.withFrozenFilesystems(withChannel.name, async (freeze) => {
    const disks = checkpointDisksFor(await plain.hv.domains.describe(withChannel.name));
    await plain.hv.checkpoints.create(withChannel.name, 'frozen1', disks);
    return freeze;
  });
  assert.equal(seen.skipped, true);
  assert.deepEqual(await plain.hv.checkpoints.names(withChannel.name), ['frozen1']);
  await rejectsWithCode(ga.thaw(withChannel.name), 'GUEST_AGENT_UNAVAILABLE');
});

test('qemu-nbd export: a bad image fails with QEMU_NBD_FAILED and leaves nothing running; raw has no bitmaps', async (t) => {
  const { vmDir } = libvirtTestEnv();
  const dir = await mkdtemp(join(vmDir, 'lbtest-nbd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await rejectsWithCode(
    QemuNbdExport.start({ image: join(dir, 'missing.qcow2'), format: 'qcow2', socketParentDir: dir }),
    'QEMU_NBD_FAILED',
  );
  const raw = join(dir, 'disk.raw');
  await run('qemu-img', ['create', '-q', '-f', 'raw', raw, '4M']);
  await run('qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x5a 1M 64k', raw]);
  assert.deepEqual(await readQcow2Bitmaps(raw), []);
  assert.deepEqual(await readQcow2Bitmaps(raw, { format: 'raw' }), []);
  await rejectsWithCode(readQcow2Bitmaps(raw, { format: 'qcow2' }), 'QEMU_IMG_FAILED');
  await rejectsWithCode(
    QemuNbdExport.start({ image: raw, format: 'raw', bitmaps: ['nope'], socketParentDir: dir }),
    'QEMU_NBD_FAILED',
  );
  const exp = await QemuNbdExport.start({ image: raw, format: 'raw', socketParentDir: dir });
  t.after(() => exp.stop());
  // Two clients at once (the datamover reads with several connections) and the export survives both.
  const [a, b] = await Promise.all([readExport(exp.uri, dir, 'a'), readExport(exp.uri, dir, 'b')]);
  assert.ok(a.equals(expectedImage(4 * MiB, [{ pattern: 0x5a, offset: 1 * MiB, length: 64 * KiB }])));
  assert.ok(b.equals(a));
  // Read-only by default: a backup's export refuses writes.
  await assert.rejects(run('qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x33 2M 64k', exp.uri]));
  assert.equal(exp.running, true);
  await exp.stop();
  assert.equal(exp.running, false);
  assert.deepEqual(
    (await readdir(dir)).filter((f) => f.startsWith('lifeboat-qemu-nbd-')),
    [],
  );

  // Writable (in-place restore): a write through the export lands in the image once it is stopped.
  const rw = await QemuNbdExport.start({ image: raw, format: 'raw', writable: true, socketParentDir: dir });
  t.after(() => rw.stop());
  await run('qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x33 2M 64k', rw.uri]);
  await rw.stop();
  assert.ok(
    (await readFile(raw)).equals(
      expectedImage(4 * MiB, [
        { pattern: 0x5a, offset: 1 * MiB, length: 64 * KiB },
        { pattern: 0x33, offset: 2 * MiB, length: 64 * KiB },
      ]),
    ),
  );
  assert.deepEqual(
    (await readdir(dir)).filter((f) => f.startsWith('lifeboat-qemu-nbd-')),
    [],
  );
});
