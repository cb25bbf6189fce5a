import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCheckpointXml } from '../hypervisor/checkpoint-xml.js';
import type { DomainDescription, DomainDisk } from '../hypervisor/domain-description.js';
import type { VmMeta } from '../target/metadata/schemas.js';
import { checkpointXmlForSaving, offlineCheckpointXml } from './backup-checkpoints.js';
import { fallBackToFull, planBackup, planWarnings } from './backup-plan.js';

const MiB = 1024 * 1024;

function disk(target: string, over: Partial<DomainDisk> = {}): DomainDisk {
  return {
    target,
    device: 'disk',
    source: { type: 'file', path: `/images/${target}.qcow2` },
    format: 'qcow2',
    readonly: false,
    shareable: false,
    sizeBytes: 64 * MiB,
    ...over,
  };
}

function domain(disks: DomainDisk[]): DomainDescription {
  return {
    name: 'web',
    uuid: '11111111-2222-3333-4444-555555555555',
    type: 'kvm',
    memoryBytes: 64 * MiB,
    vcpus: 1,
    os: { type: 'hvm', bootDevices: [] },
    disks,
    nics: [],
    hasGuestAgentChannel: false,
  };
}

function domainXml(disks: DomainDisk[]): string {
  const d = disks
    .map((x) => {
      const src = x.source.type === 'file' ? `<source file='${x.source.path}'/>` : '';
      return `<disk type='file' device='disk'><driver name='qemu' type='${x.format}'/>${src}<target dev='${x.target}' bus='virtio'/></disk>`;
    })
    .join('');
  return `<domain type='kvm'><name>web</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>${d}</devices></domain>`;
}

function parentVm(disks: DomainDisk[], checkpoint: string | null, over: Record<string, number> = {}): VmMeta {
  return {
    kind: 'vm',
    formatVersion: { major: 1, minor: 0 },
    id: 'vm1',
    workloadId: 'w',
    snapshotId: 's0',
    name: 'web',
    uuid: '11111111-2222-3333-4444-555555555555',
    domainXml: domainXml(disks),
    memoryBytes: 64 * MiB,
    vcpus: 1,
    nics: [],
    networks: [],
    cloud: {},
    disks: disks.map((d) => ({
      name: d.target,
      targetDev: d.target,
      format: 'qcow2' as const,
      image: `${d.target}.qcow2`,
      manifest: `${d.target}.qcow2.manifest.json`,
      virtualSize: over[d.target] ?? d.sizeBytes ?? 0,
      allocatedBytes: 0,
      storedBytes: 0,
      backing: null,
      mode: 'full' as const,
      checkpointName: d.format === 'qcow2' ? checkpoint : null,
      checkpointXml: null,
      fallbackWarning: null,
    })),
  };
}

test('no parent: every disk full, raw disks noted as never incremental, no warnings', () => {
  const disks = [
    disk('vda'),
    disk('vdb', { format: 'raw', source: { type: 'file', path: '/images/vdb.raw' } }),
  ];
  const plan = planBackup({ domain: domain(disks), state: 'running', parentVm: null });
  assert.deepEqual(
    plan.disks.map((d) => [d.target, d.mode, d.tracksChanges]),
    [
      ['vda', 'full', true],
      ['vdb', 'full', false],
    ],
  );
  assert.match(plan.disks[1]!.note ?? '', /raw/);
  assert.deepEqual(planWarnings(plan), []);
});

test('parent with a checkpoint: qcow2 disks incremental since it, raw full without a warning', () => {
  const disks = [
    disk('vda'),
    disk('vdb', { format: 'raw', source: { type: 'file', path: '/images/vdb.qcow2' } }),
  ];
  const plan = planBackup({
    domain: domain(disks),
    state: 'running',
    parentVm: parentVm(disks, 'lifeboat-s0'),
  });
  assert.deepEqual(
    plan.disks.map((d) => [d.target, d.mode, d.sinceCheckpoint]),
    [
      ['vda', 'incremental', 'lifeboat-s0'],
      ['vdb', 'full', undefined],
    ],
  );
  assert.deepEqual(planWarnings(plan), []);
});

test('resized, replaced and checkpoint-less disks fall back to full with a warning; new disks are full', () => {
  const before = [disk('vda'), disk('vdb'), disk('vdc')];
  const now = [
    disk('vda', { sizeBytes: 128 * MiB }),
    disk('vdb', { source: { type: 'file', path: '/other/vdb.qcow2' } }),
    disk('vdc'),
    disk('vdd'),
  ];
  const parent = parentVm(before, 'lifeboat-s0');
  parent.disks[2]!.checkpointName = null;
  const plan = planBackup({ domain: domain(now), state: 'running', parentVm: parent });
  assert.deepEqual(
    plan.disks.map((d) => d.mode),
    ['full', 'full', 'full', 'full'],
  );
  const warnings = planWarnings(plan);
  assert.equal(warnings.length, 3);
  assert.match(warnings[0]!.message, /vda was resized/);
  assert.match(warnings[1]!.message, /vdb was replaced/);
  assert.match(warnings[2]!.message, /no checkpoint/);
  assert.match(plan.disks[3]!.note ?? '', /new disk/);
});

test('exclusions, cdroms and sourceless disks are skipped; unknown exclusions and nothing left are errors', () => {
  const disks = [
    disk('vda'),
    disk('vdb'),
    disk('hdc', { device: 'cdrom', source: { type: 'none' } }),
    disk('vdz', { source: { type: 'none' } }),
  ];
  const plan = planBackup({ domain: domain(disks), state: 'running', excludeDisks: ['vdb'], parentVm: null });
  assert.deepEqual(
    plan.disks.map((d) => d.target),
    ['vda'],
  );
  assert.deepEqual(
    plan.skipped.map((s) => s.target),
    ['vdb', 'hdc', 'vdz'],
  );
  assert.throws(
    () => planBackup({ domain: domain(disks), state: 'running', excludeDisks: ['sdq'], parentVm: null }),
    (e: Error & { code?: string }) => e.code === 'BACKUP_BAD_ARGUMENT',
  );
  assert.throws(
    () =>
      planBackup({ domain: domain(disks), state: 'running', excludeDisks: ['vda', 'vdb'], parentVm: null }),
    (e: Error & { code?: string }) => e.code === 'BACKUP_NO_DISKS',
  );
});

test('shut-off domains can only read file/block sources: a network disk becomes a warning', () => {
  const disks = [
    disk('vda'),
    disk('vdb', { source: { type: 'network', protocol: 'rbd', name: 'pool/img', hosts: [] } }),
  ];
  const plan = planBackup({ domain: domain(disks), state: 'shutoff', parentVm: null });
  assert.deepEqual(
    plan.disks.map((d) => d.target),
    ['vda'],
  );
  assert.equal(planWarnings(plan)[0]?.code, 'DISK_NOT_READABLE');
  const running = planBackup({ domain: domain(disks), state: 'running', parentVm: null });
  assert.equal(running.disks.length, 2);
});

test('read-only and shareable qcow2 disks carry no bitmap', () => {
  const disks = [disk('vda', { readonly: true }), disk('vdb', { shareable: true })];
  const plan = planBackup({
    domain: domain(disks),
    state: 'running',
    parentVm: parentVm(disks, 'lifeboat-s0'),
  });
  assert.deepEqual(
    plan.disks.map((d) => [d.mode, d.tracksChanges]),
    [
      ['full', false],
      ['full', false],
    ],
  );
});

test('fallBackToFull records the reason once and only for incremental disks', () => {
  const disks = [disk('vda')];
  const plan = planBackup({
    domain: domain(disks),
    state: 'running',
    parentVm: parentVm(disks, 'lifeboat-s0'),
  });
  fallBackToFull(plan.disks[0]!, 'bitmap broken');
  fallBackToFull(plan.disks[0]!, 'second reason');
  assert.equal(plan.disks[0]!.mode, 'full');
  assert.equal(plan.disks[0]!.fallbackWarning, 'bitmap broken');
  assert.deepEqual(
    planWarnings(plan).map((w) => w.code),
    ['INCREMENTAL_FALLBACK_FULL'],
  );
});

test('checkpoint XML saved for redefine has no parent; offline XML names the bitmaps and a creation time', () => {
  const dumped = `<domaincheckpoint>
  <name>lifeboat-s1</name>
  <parent><name>lifeboat-s0</name></parent>
  <creationTime>1700000000</creationTime>
  <disks><disk name='vda' checkpoint='bitmap' bitmap='lifeboat-s1'/><disk name='vdb' checkpoint='no'/></disks>
</domaincheckpoint>`;
  const saved = parseCheckpointXml(checkpointXmlForSaving(dumped));
  assert.equal(saved.name, 'lifeboat-s1');
  assert.equal(saved.parent, undefined);
  assert.equal(saved.creationTime, 1700000000);
  assert.equal(saved.disks[0]?.bitmap, 'lifeboat-s1');

  const offline = parseCheckpointXml(
    offlineCheckpointXml(
      'lifeboat-s2',
      [
        { target: 'vda', checkpoint: 'bitmap' },
        { target: 'vdb', checkpoint: 'no' },
      ],
      new Date(1_700_000_123_000),
    ),
  );
  assert.equal(offline.creationTime, 1700000123);
  assert.deepEqual(offline.disks, [
    { target: 'vda', checkpoint: 'bitmap', bitmap: 'lifeboat-s2' },
    { target: 'vdb', checkpoint: 'no', bitmap: undefined },
  ]);
});
