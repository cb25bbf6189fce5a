import { stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { ChainReader } from '../disk/qcow2/chain.js';
import type { TargetBackend } from '../target/backend.js';
import { TargetChainOpener } from '../target/chain.js';
import { isSafeId } from '../target/keys.js';
import { ROOT_KEY, vmFileKey } from '../target/layout.js';
import type { SnapshotMeta, VmDiskMeta, VmMeta } from '../target/metadata/schemas.js';
import { Target } from '../target/target.js';
import { RestoreError } from './restore-errors.js';

/**
 * Finding what to restore on a target: a workload's committed snapshot (by id or the latest), one
 * VM of it, and each disk's image with its whole chain. Only committed snapshots (snapshot.json
 * present and valid) are ever restore sources.
 */

/** "latest" or a snapshot id. */
export type SnapshotSelector = string;

/** Committed snapshots of a workload, oldest first. */
export async function listCommittedSnapshots(target: Target, workloadId: string): Promise<SnapshotMeta[]> {
  if (!isSafeId(workloadId)) {
    throw new RestoreError(
      'RESTORE_WORKLOAD_NOT_FOUND',
      `${JSON.stringify(workloadId)} is not a workload id`,
    );
  }
  const folders = await target.listSnapshotFolders(workloadId);
  if (folders.length === 0 && !(await target.readWorkload(workloadId))) {
    throw new RestoreError(
      'RESTORE_WORKLOAD_NOT_FOUND',
      `workload ${workloadId} is not on ${target.location}`,
      { details: { workloads: await target.listWorkloadIds() } },
    );
  }
  const snaps: SnapshotMeta[] = [];
  for (const sid of folders) {
    const s = await target.readSnapshot(workloadId, sid);
    if (s) snaps.push(s); // no snapshot.json: unfinished, never a restore source
  }
  return snaps.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id));
}

/** The committed snapshot `selector` names ("latest" = the newest one). */
export async function findSnapshot(
  target: Target,
  workloadId: string,
  selector: SnapshotSelector = 'latest',
): Promise<SnapshotMeta> {
  if (selector !== 'latest') {
    if (!isSafeId(selector)) {
      throw new RestoreError(
        'RESTORE_SNAPSHOT_NOT_FOUND',
        `${JSON.stringify(selector)} is not a snapshot id`,
      );
    }
    if (
      !(await target.readWorkload(workloadId)) &&
      (await target.listSnapshotFolders(workloadId)).length === 0
    ) {
      throw new RestoreError(
        'RESTORE_WORKLOAD_NOT_FOUND',
        `workload ${workloadId} is not on ${target.location}`,
      );
    }
    const snap = await target.readSnapshot(workloadId, selector);
    if (!snap) {
      throw new RestoreError(
        'RESTORE_SNAPSHOT_NOT_FOUND',
        `workload ${workloadId} has no committed snapshot ${selector} on ${target.location}`,
      );
    }
    return snap;
  }
  const all = await listCommittedSnapshots(target, workloadId);
  const latest = all[all.length - 1];
  if (!latest) {
    throw new RestoreError(
      'RESTORE_SNAPSHOT_NOT_FOUND',
      `workload ${workloadId} has no committed snapshot on ${target.location}`,
    );
  }
  return latest;
}

/**
 * The VM `which` names (its id or its name) in a snapshot; without `which` the snapshot must hold
 * exactly one VM.
 */
export async function findVm(target: Target, snap: SnapshotMeta, which?: string): Promise<VmMeta> {
  const names = snap.vms.map((v) => `${v.name} (${v.id})`).join(', ');
  let entry: SnapshotMeta['vms'][number] | undefined;
  if (which === undefined) {
    if (snap.vms.length !== 1) {
      throw new RestoreError(
        'RESTORE_VM_AMBIGUOUS',
        `snapshot ${snap.id} holds ${snap.vms.length} VMs (${names || 'none'}); choose one with --vm`,
      );
    }
    entry = snap.vms[0];
  } else {
    entry = snap.vms.find((v) => v.id === which);
    if (!entry) {
      const byName = snap.vms.filter((v) => v.name === which);
      if (byName.length > 1) {
        throw new RestoreError(
          'RESTORE_VM_AMBIGUOUS',
          `several VMs of snapshot ${snap.id} are named ${which}: ${names}`,
        );
      }
      entry = byName[0];
    }
    if (!entry) {
      throw new RestoreError(
        'RESTORE_VM_NOT_FOUND',
        `snapshot ${snap.id} has no VM ${which} (it holds: ${names || 'none'})`,
      );
    }
  }
  const vm = await target.readVm(snap.workloadId, snap.id, entry.id);
  if (!vm) {
    throw new RestoreError('RESTORE_VM_NOT_FOUND', `snapshot ${snap.id}: vm.json of ${entry.id} is missing`);
  }
  return vm;
}

/** The disk image of a backed-up disk with its whole chain below it: the snapshot's synthetic full. */
export async function openBackupDisk(
  backend: TargetBackend,
  vm: VmMeta,
  disk: VmDiskMeta,
): Promise<ChainReader> {
  const key = vmFileKey(vm.workloadId, vm.snapshotId, vm.id, disk.image);
  const chain = await new TargetChainOpener(backend).openChain(key);
  if (chain.virtualSize !== disk.virtualSize) {
    await chain.close();
    throw new RestoreError(
      'RESTORE_NOT_A_BACKUP',
      `${key}: image is ${chain.virtualSize} bytes, vm.json says ${disk.virtualSize}`,
    );
  }
  return chain;
}

/** Where a folder on a filesystem target sits: its target root and, as far as it names them, ids. */
export interface BackupFolder {
  root: string;
  workloadId: string;
  snapshotId?: string;
  vmId?: string;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Interprets a directory on a filesystem target: the workload, snapshot or VM folder it is (the
 * path `vm backup` prints). The target root is the nearest parent holding lifeboat-target.json.
 */
export async function locateBackupFolder(path: string): Promise<BackupFolder | undefined> {
  const abs = resolve(path);
  for (let dir = abs; ; dir = dirname(dir)) {
    if (await isFile(join(dir, ROOT_KEY))) {
      const rel = relative(dir, abs);
      const parts = rel === '' ? [] : rel.split(sep);
      if (parts.length < 2 || parts[0] !== 'workloads' || !parts.every(isSafeId)) return undefined;
      const [, workloadId, snaps, snapshotId, vms, vmId] = parts;
      if (parts.length === 2) return { root: dir, workloadId: workloadId! };
      if (snaps !== 'snapshots' || parts.length === 3 || parts.length === 5 || parts.length > 6)
        return undefined;
      if (parts.length === 4) return { root: dir, workloadId: workloadId!, snapshotId };
      if (vms !== 'vms') return undefined;
      return { root: dir, workloadId: workloadId!, snapshotId, vmId };
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** Opens a target, turning "no lifeboat-target.json here" into a restore error that says so. */
export async function openTargetForRestore(backend: TargetBackend): Promise<Target> {
  try {
    return await Target.open(backend);
  } catch (err) {
    if ((err as { code?: string }).code === 'TARGET_NOT_INITIALIZED') {
      throw new RestoreError('RESTORE_NOT_A_BACKUP', `${backend.location} is not a Lifeboat backup target`, {
        cause: err,
      });
    }
    throw err;
  }
}
