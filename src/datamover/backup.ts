import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import type { LeaseOwner } from '../target/lease.js';
import type { SnapshotMeta } from '../target/metadata/schemas.js';
import { SnapshotWriter } from '../target/snapshot-writer.js';
import type { Target } from '../target/target.js';
import { BackupError, cancelledError } from './backup-errors.js';
import { journalOwnerAlive, journalPath, readJournal } from './backup-journal.js';
import { backupVm, type DiskProgress, type VmBackupHandle, type VmBackupResult } from './backup-vm.js';
import {
  defaultWorkloadId,
  ensureWorkload,
  HeldLease,
  parentForVm,
  releaseDeadLease,
  removeUnfinishedSnapshot,
} from './backup-workload.js';

export type { DiskBackupResult, DiskProgress, VmBackupResult } from './backup-vm.js';
export { backupVm } from './backup-vm.js';

/** Where scratch files, NBD sockets and crash journals go by default (QEMU must traverse it). */
export const DEFAULT_SCRATCH_DIR = '/var/tmp/lifeboat';

export interface BackupDomainOptions {
  hypervisor: LibvirtHypervisor;
  /** Domain name or UUID. */
  domain: string;
  target: Target;
  /** Default: `vm-<domain UUID>`, created on first use. */
  workloadId?: string;
  /** Force a full snapshot even when the previous one has checkpoints. */
  full?: boolean;
  excludeDisks?: readonly string[];
  scratchDir?: string;
  /** Who holds the workload lease (default: this host, installation `lifeboat-cli`). */
  leaseOwner?: LeaseOwner;
  /** Default: a new random UUID. */
  snapshotId?: string;
  clusterSize?: number;
  onProgress?: (p: DiskProgress) => void;
  signal?: AbortSignal;
  /** For tests and tools: runs once the disks are exported, before any data is read. */
  afterExportsReady?: () => Promise<void>;
}

export interface BackupDomainResult {
  workloadId: string;
  snapshotId: string;
  type: 'full' | 'incremental';
  parentSnapshotId: string | null;
  snapshot: SnapshotMeta;
  vm: VmBackupResult;
  /** Older Lifeboat checkpoints deleted after the commit. */
  deletedCheckpoints: string[];
  /** Cleanup that did not work out (the snapshot is committed and fine). */
  problems: string[];
}

/**
 * Backs one libvirt domain up into a workload of its own on a target, without a controller: takes
 * the workload lease, picks the parent (newest committed snapshot, unless `full`), writes the VM
 * with `backupVm` and commits the snapshot (snapshot.json last). Incremental when the parent has
 * checkpoints; every disk whose checkpoint or bitmap is unusable falls back to full with a warning.
 */
export async function backupDomain(opts: BackupDomainOptions): Promise<BackupDomainResult> {
  const hv = opts.hypervisor;
  const { target } = opts;
  if (!(await hv.domains.exists(opts.domain))) {
    throw new BackupError('BACKUP_DOMAIN_NOT_FOUND', `no domain ${opts.domain} on ${hv.uri}`);
  }
  const uuid = await hv.domains.uuid(opts.domain);
  const workloadId = opts.workloadId ?? defaultWorkloadId(uuid);
  const scratchDir = opts.scratchDir ?? DEFAULT_SCRATCH_DIR;
  await mkdir(scratchDir, { recursive: true, mode: 0o755 });
  const owner = opts.leaseOwner ?? { installationId: 'lifeboat-cli', host: hostname() };

  // A run of ours that was killed may still hold the lease and have left an unfinished folder.
  const dead = await readJournal(journalPath(scratchDir, uuid));
  if (
    dead?.target?.ownsLease &&
    dead.target.leaseToken &&
    dead.target.workloadId === workloadId &&
    !(await journalOwnerAlive(dead))
  ) {
    await releaseDeadLease(target, workloadId, dead.target.leaseToken).catch(() => false);
  }
  const held = await HeldLease.acquire(target, workloadId, owner);
  let handle: VmBackupHandle | undefined;
  let writer: SnapshotWriter | undefined;
  try {
    if (dead?.target && dead.target.workloadId === workloadId && !(await journalOwnerAlive(dead))) {
      await removeUnfinishedSnapshot(target, workloadId, dead.target.snapshotId);
    }
    const name = (await hv.domains.describe(opts.domain)).name;
    await ensureWorkload(target, held.lease, { id: uuid, name, uuid });
    const parent = opts.full ? undefined : await parentForVm(target, workloadId, uuid);
    const incremental = parent?.vm.disks.some((d) => d.checkpointName) ?? false;
    const snapshotId = opts.snapshotId ?? randomUUID();
    writer = await SnapshotWriter.begin(target, held.lease, {
      snapshotId,
      type: incremental ? 'incremental' : 'full',
      parentSnapshotId: incremental ? parent!.snapshot.id : null,
    });
    handle = await backupVm({
      hypervisor: hv,
      domain: opts.domain,
      writer,
      vmId: uuid,
      parentVm: incremental ? parent!.vm : null,
      excludeDisks: opts.excludeDisks,
      scratchDir,
      clusterSize: opts.clusterSize,
      onProgress: opts.onProgress,
      signal: opts.signal,
      afterExportsReady: opts.afterExportsReady,
      journalTarget: {
        location: target.location,
        workloadId,
        snapshotId,
        leaseToken: held.lease.token,
        ownsLease: true,
      },
    });
    held.check();
    if (opts.signal?.aborted) throw cancelledError(opts.signal, `backup of ${opts.domain}`);
    const snapshot = await writer.commit({ warnings: handle.warnings });
    const { finish: _f, ...vm } = handle;
    const after = await handle.finish(true);
    return {
      workloadId,
      snapshotId,
      type: snapshot.type,
      parentSnapshotId: snapshot.parentSnapshotId,
      snapshot,
      vm,
      deletedCheckpoints: after.deletedCheckpoints,
      problems: after.problems,
    };
  } catch (err) {
    await handle?.finish(false).catch(() => {});
    await writer?.abort().catch(() => {});
    throw err;
  } finally {
    await held.stop();
  }
}
