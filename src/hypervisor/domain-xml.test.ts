import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDomainXml, rewriteDomainXml, scaledToBytes } from './domain-xml.js';
import { HypervisorError } from './errors.js';
import { child, childrenNamed, parseXml } from './xml-tree.js';

/** A live dumpxml of a UEFI domain with every disk and NIC kind the parser distinguishes. */
const LIVE_XML = `<domain type='kvm' id='7'>
  <name>web-1</name>
  <uuid>6f1c7c1e-3f0b-4c55-9d0e-2b3a4c5d6e7f</uuid>
  <metadata><app:tag xmlns:app='http://example.org/app'>keep &amp; me</app:tag></metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram>
    <boot dev='hd'/>
    <boot dev='cdrom'/>
  </os>
  <features><acpi/><apic/><smm state='on'/></features>
  <cpu mode='host-model' check='partial'/>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web-1.qcow2' index='3'/>
      <backingStore type='file' index='4'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/base.qcow2'/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <serial>root-disk</serial>
      <boot order='1'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/vg0/web-1-data' index='2'/>
      <target dev='vdb' bus='virtio'/>
      <shareable/>
      <alias name='ua-data'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='volumes/volume-1234' index='1'>
        <host name='10.0.0.1' port='6789'/>
        <host name='10.0.0.2' port='6789'/>
      </source>
      <target dev='sda' bus='scsi'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sdb' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:01'/>
      <source network='prod' portgroup='web' portid='11111111-2222-3333-4444-555555555555' bridge='virbr1'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:AA:BB:02'/>
      <source bridge='br-mgmt'/>
      <model type='e1000'/>
    </interface>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-7-web-1/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+64055</label>
    <imagelabel>+64055:+64055</imagelabel>
  </seclabel>
</domain>
`;

test('scaled integers follow libvirt units (KiB by default, k = KiB, KB = 1000)', () => {
  assert.equal(scaledToBytes('64', 'MiB'), 64 * 1024 * 1024);
  assert.equal(scaledToBytes('65536'), 64 * 1024 * 1024);
  assert.equal(scaledToBytes('1', 'k'), 1024);
  assert.equal(scaledToBytes('1', 'KB'), 1000);
  assert.equal(scaledToBytes('2', 'GiB'), 2 * 1024 ** 3);
  assert.throws(() => scaledToBytes('1', 'parsecs'), HypervisorError);
});

test('parseDomainXml reads identity, sizes, firmware, every disk and NIC kind, the agent channel', () => {
  const d = parseDomainXml(LIVE_XML);
  assert.equal(d.name, 'web-1');
  assert.equal(d.uuid, '6f1c7c1e-3f0b-4c55-9d0e-2b3a4c5d6e7f');
  assert.equal(d.type, 'kvm');
  assert.equal(d.memoryBytes, 2 * 1024 ** 3);
  assert.equal(d.currentMemoryBytes, 1024 ** 3);
  assert.equal(d.vcpus, 2);
  assert.deepEqual(d.os, {
    type: 'hvm',
    arch: 'x86_64',
    machine: 'pc-q35-7.2',
    firmware: undefined,
    loader: { path: '/usr/share/OVMF/OVMF_CODE_4M.ms.fd', type: 'pflash', readonly: true, secure: true },
    nvram: {
      path: '/var/lib/libvirt/qemu/nvram/web-1_VARS.fd',
      template: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
    },
    bootDevices: ['hd', 'cdrom'],
  });
  assert.deepEqual(
    d.disks.map((x) => [x.target, x.bus, x.device, x.format, x.readonly, x.shareable]),
    [
      ['vda', 'virtio', 'disk', 'qcow2', false, false],
      ['vdb', 'virtio', 'disk', 'raw', false, true],
      ['sda', 'scsi', 'disk', 'raw', false, false],
      ['sdb', 'sata', 'cdrom', 'raw', true, false],
    ],
  );
  assert.deepEqual(d.disks[0]?.source, { type: 'file', path: '/var/lib/libvirt/images/web-1.qcow2' });
  assert.equal(d.disks[0]?.serial, 'root-disk');
  assert.equal(d.disks[0]?.bootOrder, 1);
  assert.deepEqual(d.disks[1]?.source, { type: 'block', path: '/dev/vg0/web-1-data' });
  assert.deepEqual(d.disks[2]?.source, {
    type: 'network',
    protocol: 'rbd',
    name: 'volumes/volume-1234',
    hosts: [
      { name: '10.0.0.1', port: '6789' },
      { name: '10.0.0.2', port: '6789' },
    ],
  });
  assert.deepEqual(d.disks[3]?.source, { type: 'none' });
  assert.deepEqual(d.nics, [
    { mac: '52:54:00:aa:bb:01', type: 'network', source: 'prod', model: 'virtio', portgroup: 'web' },
    { mac: '52:54:00:AA:BB:02', type: 'bridge', source: 'br-mgmt', model: 'e1000', portgroup: undefined },
  ]);
  assert.equal(d.hasGuestAgentChannel, true);
});

test('parseDomainXml rejects what is not a usable domain', () => {
  assert.throws(() => parseDomainXml('<domaincheckpoint/>'), { code: 'INVALID_XML' });
  assert.throws(() => parseDomainXml('<domain><memory>1</memory></domain>'), { code: 'INVALID_XML' });
  assert.throws(() => parseDomainXml('<domain><name>x</name></domain>'), { code: 'INVALID_XML' });
  assert.throws(() => parseDomainXml('<domain><name>x</name'), { code: 'INVALID_XML' });
});

test('rewriteDomainXml: new identity, MACs, disks, networks, NVRAM; runtime state dropped; the rest kept', () => {
  const xml = rewriteDomainXml(LIVE_XML, {
    name: 'web-1-restored',
    uuid: '00000000-1111-2222-3333-444444444444',
    macs: { '52:54:00:AA:BB:01': '52:54:00:00:00:01' },
    disks: {
      vda: { path: '/pool/web-1-restored-vda.qcow2', format: 'qcow2' },
      vdb: { path: '/pool/web-1-restored-vdb.raw', format: 'raw' },
    },
    removeDisks: ['sda'],
    networks: {
      prod: { type: 'network', network: 'dr-net' },
      'br-mgmt': { type: 'bridge', bridge: 'br-dr' },
    },
  });
  const d = parseDomainXml(xml);
  assert.equal(d.name, 'web-1-restored');
  assert.equal(d.uuid, '00000000-1111-2222-3333-444444444444');
  assert.deepEqual(
    d.disks.map((x) => [x.target, x.format, x.source]),
    [
      ['vda', 'qcow2', { type: 'file', path: '/pool/web-1-restored-vda.qcow2' }],
      ['vdb', 'raw', { type: 'file', path: '/pool/web-1-restored-vdb.raw' }],
      ['sdb', 'raw', { type: 'none' }],
    ],
  );
  assert.equal(d.nics[0]?.mac, '52:54:00:00:00:01');
  assert.match(d.nics[1]?.mac ?? '', /^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  assert.notEqual(d.nics[1]?.mac?.toLowerCase(), '52:54:00:aa:bb:02');
  assert.deepEqual(
    d.nics.map((n) => [n.type, n.source]),
    [
      ['network', 'dr-net'],
      ['bridge', 'br-dr'],
    ],
  );
  // NVRAM: the old file belongs to the old domain; the template stays so libvirt makes a fresh one.
  assert.deepEqual(d.os.nvram, { path: undefined, template: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd' });
  assert.deepEqual(d.os.loader?.path, '/usr/share/OVMF/OVMF_CODE_4M.ms.fd');

  const root = parseXml(xml);
  assert.equal(root.attrs.id, undefined);
  const devices = child(root, 'devices')!;
  const disks = childrenNamed(devices, 'disk');
  // Runtime aliases and indexes go, user aliases (ua-) stay; the old backing chain goes.
  assert.equal(child(disks[0], 'alias'), undefined);
  assert.equal(child(disks[0], 'source')?.attrs.index, undefined);
  assert.equal(child(disks[0], 'backingStore'), undefined);
  assert.equal(child(disks[1], 'alias')?.attrs.name, 'ua-data');
  assert.equal(disks[1]?.attrs.type, 'file');
  // Everything the rewrite does not own survives: driver options, serial, boot order, address,
  // shareable, features, CPU, metadata (escaped text included).
  assert.equal(child(disks[0], 'driver')?.attrs.discard, 'unmap');
  assert.equal(child(disks[0], 'serial')?.text, 'root-disk');
  assert.equal(child(disks[0], 'boot')?.attrs.order, '1');
  assert.equal(child(disks[0], 'address')?.attrs.bus, '0x04');
  assert.ok(child(disks[1], 'shareable'));
  assert.ok(child(child(root, 'features'), 'smm'));
  assert.equal(child(root, 'cpu')?.attrs.mode, 'host-model');
  assert.match(xml, /<app:tag xmlns:app='http:\/\/example.org\/app'>keep &amp; me<\/app:tag>/);
  // Old network plumbing and the instance's generated paths and ports are dropped.
  const nic0 = childrenNamed(devices, 'interface')[0]!;
  assert.equal(child(nic0, 'target'), undefined);
  assert.deepEqual(child(nic0, 'source')?.attrs, { network: 'dr-net' });
  assert.equal(child(childrenNamed(devices, 'channel')[0], 'source')?.attrs.path, undefined);
  assert.equal(child(devices, 'graphics')?.attrs.port, undefined);
  assert.equal(child(child(root, 'seclabel'), 'label'), undefined);
});

test('rewriteDomainXml: no UUID means libvirt picks one; keep MACs; explicit NVRAM; unknown disk is an error', () => {
  const d = parseDomainXml(
    rewriteDomainXml(LIVE_XML, {
      name: 'copy',
      macs: 'keep',
      nvramPath: '/var/lib/libvirt/qemu/nvram/copy.fd',
    }),
  );
  assert.equal(d.uuid, undefined);
  assert.deepEqual(
    d.nics.map((n) => n.mac),
    ['52:54:00:aa:bb:01', '52:54:00:AA:BB:02'],
  );
  assert.equal(d.os.nvram?.path, '/var/lib/libvirt/qemu/nvram/copy.fd');
  assert.throws(
    () => rewriteDomainXml(LIVE_XML, { name: 'x', disks: { vdz: { path: '/x', format: 'raw' } } }),
    {
      code: 'INVALID_ARGUMENT',
    },
  );
});

test('rewriteDomainXml plugs a user-mode NIC into a network and adds a MAC where there was none', () => {
  const xml = `<domain type='qemu'><name>a</name><memory>1024</memory><devices>
    <interface type='user'><model type='virtio'/></interface></devices></domain>`;
  const d = parseDomainXml(
    rewriteDomainXml(xml, { name: 'b', networks: { user: { type: 'network', network: 'n1' } } }),
  );
  assert.equal(d.nics[0]?.type, 'network');
  assert.equal(d.nics[0]?.source, 'n1');
  assert.equal(d.nics[0]?.model, 'virtio');
  assert.match(d.nics[0]?.mac ?? '', /^52:54:00:/);
});
