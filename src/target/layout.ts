import { assertSafeId, joinKey, relativeKey } from './keys.js';

/**
 * Where everything lives on a target (docs/target-format.md, "Layout"). Every key is built here
 * from validated ids, so no other module concatenates paths.
 */
export const ROOT_KEY = 'lifeboat-target.json';
export const WORKLOADS_PREFIX = 'workloads/';

export function workloadPrefix(workloadId: string): string {
  assertSafeId(workloadId, 'workload id');
  return `workloads/${workloadId}/`;
}
export const workloadKey = (wid: string): string => joinKey('workloads', wid, 'workload.json');
export const leaseKey = (wid: string): string => joinKey('workloads', wid, 'lease.json');
export const snapshotsPrefix = (wid: string): string => `${workloadPrefix(wid)}snapshots/`;

export function snapshotPrefix(wid: string, sid: string): string {
  assertSafeId(sid, 'snapshot id');
  return `${snapshotsPrefix(wid)}${sid}/`;
}
export const snapshotKey = (wid: string, sid: string): string =>
  joinKey('workloads', wid, 'snapshots', sid, 'snapshot.json');
export const vmsPrefix = (wid: string, sid: string): string => `${snapshotPrefix(wid, sid)}vms/`;
export const vmKey = (wid: string, sid: string, vmId: string): string =>
  joinKey('workloads', wid, 'snapshots', sid, 'vms', vmId, 'vm.json');

export const diskImageName = (disk: string): string => {
  assertSafeId(disk, 'disk name');
  return `${disk}.qcow2`;
};
export const diskManifestName = (disk: string): string => `${diskImageName(disk)}.manifest.json`;

export const diskImageKey = (wid: string, sid: string, vmId: string, disk: string): string =>
  joinKey('workloads', wid, 'snapshots', sid, 'vms', vmId, diskImageName(disk));
export const diskManifestKey = (wid: string, sid: string, vmId: string, disk: string): string =>
  joinKey('workloads', wid, 'snapshots', sid, 'vms', vmId, diskManifestName(disk));

/** A file named in vm.json, resolved inside that VM's folder. */
export const vmFileKey = (wid: string, sid: string, vmId: string, file: string): string =>
  joinKey('workloads', wid, 'snapshots', sid, 'vms', vmId, file);

/** The relative backing name an incremental image stores: ../../../<parent>/vms/<vm>/<disk>.qcow2. */
export function backingReference(
  wid: string,
  sid: string,
  parentSid: string,
  vmId: string,
  disk: string,
): string {
  return relativeKey(diskImageKey(wid, sid, vmId, disk), diskImageKey(wid, parentSid, vmId, disk));
}
