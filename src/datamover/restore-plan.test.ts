import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DomainDisk, DomainNic } from '../hypervisor/domain-description.js';
import type { VmDiskMeta } from '../target/metadata/schemas.js';
import { isRestoreError } from './restore-errors.js';
import { rangesToZero } from './restore-in-place-copy.js';
import { parseNetworkMap, planDisks, planNetworks } from './restore-plan.js';

const host = { networks: new Set(['default', 'prod']), interfaces: new Set(['br0', 'lo']) };
const nic = (type: string, source?: string): DomainNic => ({ type, source, mac: '52:54:00:00:00:01' });

describe('network map', () => {
  test('parses OLD=NEW forms', () => {
    assert.deepEqual(parseNetworkMap(['a=b', 'c=bridge:br0', 'd=user', 'e=network:n']), {
      a: { type: 'network', network: 'b' },
      c: { type: 'bridge', bridge: 'br0' },
      d: { type: 'user' },
      e: { type: 'network', network: 'n' },
    });
    for (const bad of ['a', '=b', 'a=', 'a=tap:x', 'a=network:']) {
      assert.throws(
        () => parseNetworkMap([bad]),
        (e) => isRestoreError(e, 'RESTORE_BAD_OPTION'),
        bad,
      );
    }
    assert.throws(
      () => parseNetworkMap(['a=b', 'a=c']),
      (e) => isRestoreError(e, 'RESTORE_BAD_OPTION'),
    );
  });

  test('existing networks stay, mapped ones move, missing ones fail or go to the fallback', () => {
    const nics = [
      nic('network', 'default'),
      nic('network', 'old-lan'),
      nic('user'),
      nic('bridge', 'br-gone'),
    ];
    assert.throws(
      () => planNetworks(nics, {}, host),
      (e) =>
        isRestoreError(e, 'RESTORE_NETWORK_NOT_FOUND') &&
        /old-lan/.test(e.message) &&
        /br-gone/.test(e.message),
    );
    const plan = planNetworks(nics, { 'old-lan': { type: 'network', network: 'prod' } }, host, {
      type: 'bridge',
      bridge: 'br0',
    });
    assert.deepEqual(plan, {
      default: { type: 'network', network: 'default' },
      'old-lan': { type: 'network', network: 'prod' },
      'br-gone': { type: 'bridge', bridge: 'br0' },
    });
    // A map to a network that is not here fails too, and a map naming no NIC is a mistake.
    assert.throws(
      () =>
        planNetworks(
          nics,
          { 'old-lan': { type: 'network', network: 'nope' }, 'br-gone': { type: 'user' } },
          host,
        ),
      (e) => isRestoreError(e, 'RESTORE_NETWORK_NOT_FOUND') && /mapped from old-lan/.test(e.message),
    );
    assert.throws(
      () => planNetworks(nics, { typo: { type: 'user' } }, host, { type: 'user' }),
      (e) => isRestoreError(e, 'RESTORE_BAD_OPTION'),
    );
  });
});

describe('disk plan', () => {
  const dd = (
    target: string,
    device: DomainDisk['device'] = 'disk',
    path = `/img/${target}`,
  ): DomainDisk => ({
    target,
    device,
    source: { type: 'file', path },
    readonly: device === 'cdrom',
    shareable: false,
  });
  const saved = (targetDev: string): VmDiskMeta => ({
    name: targetDev,
    targetDev,
    format: 'qcow2',
    image: `${targetDev}.qcow2`,
    manifest: `${targetDev}.qcow2.manifest.json`,
    virtualSize: 1,
    allocatedBytes: 0,
    storedBytes: 0,
    backing: null,
    mode: 'full',
    checkpointName: null,
    checkpointXml: null,
    fallbackWarning: null,
  });
  const exists = (p: string) => p === '/iso/here.iso';

  test('backed-up disks restore; excluded and unselected disks are left out; media kept or emptied', () => {
    const plan = planDisks(
      [
        dd('vda'),
        dd('vdb'),
        dd('vdc'),
        dd('sda', 'cdrom', '/iso/here.iso'),
        dd('sdb', 'cdrom', '/iso/gone.iso'),
      ],
      [saved('vda'), saved('vdb'), saved('vdz')],
      { select: ['vda', 'vdz'], fileExists: exists },
    );
    assert.deepEqual(
      plan.restore.map((d) => d.targetDev),
      ['vda'],
    );
    assert.deepEqual(plan.remove, ['vdb', 'vdc']);
    assert.deepEqual(plan.eject, ['sdb']);
    assert.deepEqual(
      plan.skipped.map((s) => s.target),
      ['vdb', 'vdc', 'sdb', 'vdz'],
    );
    assert.throws(
      () => planDisks([dd('vda')], [saved('vda')], { select: ['vdq'], fileExists: exists }),
      (e) => isRestoreError(e, 'RESTORE_DISK_NOT_FOUND'),
    );
  });
});

describe('rangesToZero', () => {
  test('only where the snapshot has no data and the disk does not read as zeros', () => {
    const snap = [
      { offset: 0, length: 10, kind: 'data' as const },
      { offset: 10, length: 20, kind: 'unallocated' as const },
      { offset: 30, length: 10, kind: 'zero' as const },
      { offset: 40, length: 10, kind: 'data' as const },
    ];
    const current = [
      { offset: 0, length: 15, kind: 'data' as const },
      { offset: 15, length: 10, kind: 'zero' as const },
      { offset: 25, length: 25, kind: 'data' as const },
    ];
    assert.deepEqual(rangesToZero(snap, current), [
      { offset: 10, length: 5, kind: 'zero' },
      { offset: 25, length: 15, kind: 'zero' },
    ]);
    assert.deepEqual(rangesToZero(snap, [{ offset: 0, length: 50, kind: 'zero' }]), []);
  });
});
