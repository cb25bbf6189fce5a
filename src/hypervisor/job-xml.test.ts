import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildPullBackupXml, parseBackupXml } from './backup-xml.js';
import { buildCheckpointXml, parseCheckpointXml } from './checkpoint-xml.js';
import { parseDomjobinfo } from './libvirt-backups.js';
import { parseDomainState, parseDomblkinfoAll } from './libvirt-domains.js';
import { child, childrenNamed, parseXml, serializeXml } from './xml-tree.js';

test('checkpoint XML names every disk as included or excluded and parses back', () => {
  const xml = buildCheckpointXml(
    'lb-2024.01_x',
    [
      { target: 'vda', checkpoint: 'bitmap' },
      { target: 'vdb', checkpoint: 'no' },
    ],
    'nightly & co',
  );
  const info = parseCheckpointXml(xml);
  assert.equal(info.name, 'lb-2024.01_x');
  assert.equal(info.description, 'nightly & co');
  assert.deepEqual(info.disks, [
    { target: 'vda', checkpoint: 'bitmap', bitmap: undefined },
    { target: 'vdb', checkpoint: 'no', bitmap: undefined },
  ]);
  for (const bad of ['', 'a b', '../x', 'x'.repeat(129), "a'b"]) {
    assert.throws(() => buildCheckpointXml(bad, []), { code: 'INVALID_ARGUMENT' }, bad);
  }
});

test('checkpoint-dumpxml output with parent, creation time and an embedded domain', () => {
  const info = parseCheckpointXml(`<domaincheckpoint>
  <name>cp3</name>
  <parent><name>cp2</name></parent>
  <creationTime>1795291525</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='cp3'/>
    <disk name='vdb' checkpoint='no'/>
  </disks>
  <domain type='qemu'><name>x</name><devices><disk/></devices></domain>
</domaincheckpoint>`);
  assert.equal(info.parent, 'cp2');
  assert.equal(info.creationTime, 1795291525);
  assert.deepEqual(info.disks[0], { target: 'vda', checkpoint: 'bitmap', bitmap: 'cp3' });
  assert.throws(() => parseCheckpointXml('<domainbackup/>'), { code: 'INVALID_XML' });
});

test('pull backup XML: unix or tcp server, incremental, per-disk mode overrides, scratch files', () => {
  const root = parseXml(
    buildPullBackupXml({
      server: { transport: 'unix', socket: '/var/tmp/job/nbd.sock' },
      incremental: 'cp1',
      disks: [
        { target: 'vda', backup: true, scratchFile: '/var/tmp/job/vda.scratch' },
        { target: 'vdb', backup: true, incremental: null },
        { target: 'vdc', backup: true, incremental: 'cp0' },
        { target: 'hdc', backup: false },
      ],
    }),
  );
  assert.equal(root.attrs.mode, 'pull');
  assert.equal(child(root, 'incremental')?.text, 'cp1');
  assert.deepEqual(child(root, 'server')?.attrs, { transport: 'unix', socket: '/var/tmp/job/nbd.sock' });
  const disks = childrenNamed(child(root, 'disks'), 'disk');
  assert.deepEqual(
    disks.map((d) => d.attrs),
    [
      { name: 'vda', backup: 'yes', type: 'file' },
      { name: 'vdb', backup: 'yes', type: 'file', backupmode: 'full' },
      { name: 'vdc', backup: 'yes', type: 'file', backupmode: 'incremental', incremental: 'cp0' },
      { name: 'hdc', backup: 'no' },
    ],
  );
  assert.equal(child(disks[0], 'scratch')?.attrs.file, '/var/tmp/job/vda.scratch');
  const tcp = parseXml(
    buildPullBackupXml({ server: { transport: 'tcp', host: '127.0.0.1', port: 10809 }, disks: [] }),
  );
  assert.deepEqual(child(tcp, 'server')?.attrs, { transport: 'tcp', name: '127.0.0.1', port: '10809' });
});

test('backup-dumpxml: export names and dirty-bitmap contexts (libvirt 9.0 output)', () => {
  const job = parseBackupXml(`<domainbackup mode='pull'>
  <incremental>cp2</incremental>
  <server transport='unix' socket='/var/tmp/x/nbd.sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='cp2' exportname='vda' exportbitmap='backup-vda' index='5'>
      <driver type='qcow2'/>
      <scratch file='/var/tmp/x/vda.scratch'/>
    </disk>
    <disk name='vdb' backup='yes' type='file' backupmode='full' exportname='vdb' index='6'>
      <driver type='qcow2'/>
      <scratch file='/var/tmp/x/vdb.scratch'/>
    </disk>
    <disk name='vdc' backup='no'/>
  </disks>
</domainbackup>`);
  assert.deepEqual(job.server, { transport: 'unix', socket: '/var/tmp/x/nbd.sock' });
  assert.equal(job.incremental, 'cp2');
  assert.deepEqual(job.exports, [
    {
      target: 'vda',
      exportName: 'vda',
      mode: 'incremental',
      incremental: 'cp2',
      exportBitmap: 'backup-vda',
      dirtyBitmapContext: 'qemu:dirty-bitmap:backup-vda',
      scratchFile: '/var/tmp/x/vda.scratch',
    },
    {
      target: 'vdb',
      exportName: 'vdb',
      mode: 'full',
      incremental: undefined,
      exportBitmap: undefined,
      dirtyBitmapContext: undefined,
      scratchFile: '/var/tmp/x/vdb.scratch',
    },
  ]);
});

test('virsh table parsers: domjobinfo, domblkinfo --all, domstate', () => {
  const job = parseDomjobinfo(
    'Job type:         Unbounded   \nOperation:        Backup      \nTime elapsed:     59           ms\nTemporary disk space total: 128.000 MiB\n',
  );
  assert.equal(job.type, 'Unbounded');
  assert.equal(job.operation, 'Backup');
  assert.equal(job.fields['Temporary disk space total'], '128.000 MiB');
  assert.equal(parseDomjobinfo('Job type:         None        \n').type, 'None');
  const sizes = parseDomblkinfoAll(
    ' vda   67108864   1597440   1835104\n vdb   67108864   4096   67108864\n hdc   -   -   -\n',
  );
  assert.deepEqual(sizes.get('vda'), { capacity: 67108864, allocation: 1597440 });
  assert.deepEqual(sizes.get('hdc'), { capacity: undefined, allocation: undefined });
  assert.equal(parseDomainState('running\n'), 'running');
  assert.equal(parseDomainState('shut off\n'), 'shutoff');
  assert.equal(parseDomainState('paused'), 'paused');
  assert.equal(parseDomainState('pmsuspended'), 'other');
});

test('xml tree: order, attributes and escaping survive a round trip', () => {
  const src = `<?xml version="1.0"?><a x="1 &amp; 2" y='q&apos;s'><!-- c --><b>t&lt;x</b><c/><b>y</b></a>`;
  const once = serializeXml(parseXml(src));
  assert.equal(once, `<a x='1 &amp; 2' y='q&apos;s'>\n  <b>t&lt;x</b>\n  <c/>\n  <b>y</b>\n</a>\n`);
  assert.equal(serializeXml(parseXml(once)), once);
});
