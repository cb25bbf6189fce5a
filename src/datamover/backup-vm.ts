import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDomainXml } from '../hypervisor/domain-xml.js';
import { HypervisorError } from '../hypervisor/errors.js';
import type { FreezeResult } from '../hypervisor/guest-agent.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import type { VmMeta } from '../target/metadata/schemas.js';
import type { SnapshotWriter } from '../target/snapshot-writer.js';
import { deleteCheckpoint, messageOf, pruneLifeboatCheckpoints } from './backup-checkpoints.js';
import { copyDiskToTarget } from './backup-disk-copy.js';
import { BackupError, cancelledError } from './backup-errors.js';
import { type BackupJournal, JournalFile, recoverInterruptedBackup } from './backup-journal.js';
import { startOfflineExports } from './backup-offline-source.js';
import {
  type BackupPlan,
  type BackupWarning,
  checkpointNameFor,
  fallBackToFull,
  planBackup,
  planWarnings,
} from './backup-plan.js';
import { startPullBackup } from './backup-pull-source.js';
import type { BackupSource } from './backup-source.js';
import { buildVmInput, type VmDiskRecord } from './backup-vm-meta.js';

export interface DiskProgress {
  vmId: string;
  disk: string;
  /** Bytes of this disk's image written so far, out of the image's final size. */
  bytesDone: number;
  bytesTotal: number;
}

export interface BackupVmOptions {
  hypervisor: LibvirtHypervisor;
  /** Domain name or UUID. */
  domain: string;
  /** The open snapshot (type and parent already chosen) this VM is written into. */
  writer: SnapshotWriter;
  /** The VM's folder on the target; default the domain UUID. */
  vmId?: string;
  /** The parent snapshot's vm.json of this VM; null: every disk full. */
  parentVm: VmMeta | null;
  excludeDisks?: readonly string[];
  /**
   * Host-local directory for the job's NBD sockets, scratch files and the crash journal. QEMU
   * (user libvirt-qemu) must be able to traverse it.
   */
  scratchDir: string;
  clusterSize?: number;
  onProgress?: (p: DiskProgress) => void;
  signal?: AbortSignal;
  /** Recorded in the crash journal so a later run can clean the target side too. */
  journalTarget?: BackupJournal['target'];
  /** For tests and tools: runs once the disks are exported, before any data is read. */
  afterExportsReady?: () => Promise<void>;
  /** libvirt honours per-disk backup modes; default: asked from the daemon version (>= 7.6). */
  perDiskModes?: boolean;
}

export interface DiskBackupResult {
  target: string;
  mode: 'full' | 'incremental';
  virtualSize: number;
  allocatedBytes: number;
  copiedBytes: number;
  storedBytes: number;
  backing: string | null;
  fallbackWarning: string | null;
  note?: string;
}

export interface VmBackupResult {
  vmId: string;
  name: string;
  uuid: string;
  state: 'running' | 'shutoff';
  source: BackupSource['kind'];
  freeze?: FreezeResult;
  checkpoint: string | null;
  disks: DiskBackupResult[];
  skipped: { target: string; reason: string }[];
  /** For the snapshot's `warnings` (fallbacks to full, unreadable disks). */
  warnings: (BackupWarning & { vmId: string })[];
}

export interface VmBackupHandle extends VmBackupResult {
  /**
   * Call once the snapshot's fate is known. committed: the older Lifeboat checkpoints of the domain
   * are deleted (the new one now covers every later change). Not committed: the new checkpoint is
   * deleted, so the parent's still covers all changes. Returns what could not be cleaned up.
   */
  finish(committed: boolean): Promise<{ deletedCheckpoints: string[]; problems: string[] }>;
}

/** Domains (by UUID) this process is backing up right now: a second backup of one is refused. */
const activeBackups = new Set<string>();

/** libvirt >= 7.6 takes backupmode/incremental per disk of one backup job. */
export async function libvirtHasPerDiskBackupModes(hv: LibvirtHypervisor): Promise<boolean> {
  try {
    const out = await hv.virsh.run(['version', '--daemon']);
    const m = /daemon:\s*(\d+)\.(\d+)/i.exec(out) ?? /library:\s*libvirt\s+(\d+)\.(\d+)/i.exec(out);
    if (!m) return true;
    const [maj, min] = [Number(m[1]), Number(m[2])];
    return maj > 7 || (maj === 7 && min >= 6);
  } catch {
    return true;
  }
}

/**
 * Backs one domain up into an open snapshot: plans each disk (full or incremental), exports the
 * disks (pull backup or qemu-nbd), copies each into a qcow2 image on the target, writes vm.json.
 * Committing the snapshot is the caller's (one snapshot may hold several VMs); then call
 * `finish`. On failure or cancel everything on the host is undone (job, exports, scratch files,
 * the new checkpoint) before the error is thrown; the caller aborts the snapshot writer.
 */
export async function backupVm(opts: BackupVmOptions): Promise<VmBackupHandle> {
  const hv = opts.hypervisor;
  const what = `backup of ${opts.domain}`;
  if (!(await hv.domains.exists(opts.domain))) {
    throw new BackupError('BACKUP_DOMAIN_NOT_FOUND', `no domain ${opts.domain} on ${hv.uri}`);
  }
  const uuid = await hv.domains.uuid(opts.domain);
  const vmId = opts.vmId ?? uuid;
  const rawState = await hv.domains.state(opts.domain);
  if (rawState === 'other') {
    throw new BackupError(
      'BACKUP_DOMAIN_STATE',
      `domain ${opts.domain} is neither running, paused nor shut off`,
    );
  }
  const state = rawState === 'shutoff' ? 'shutoff' : 'running';
  if (activeBackups.has(uuid)) {
    throw new BackupError('BACKUP_BUSY', `domain ${opts.domain} is already being backed up by this process`);
  }
  activeBackups.add(uuid);
  try {
    return await backupVmLocked(opts, uuid, vmId, state, what);
  } finally {
    // Held while the hypervisor side is set up and the data moves; finish() only deletes checkpoints.
    activeBackups.delete(uuid);
  }
}

async function backupVmLocked(
  opts: BackupVmOptions,
  uuid: string,
  vmId: string,
  state: 'running' | 'shutoff',
  what: string,
): Promise<VmBackupHandle> {
  const hv = opts.hypervisor;
  const parentCheckpoints = new Set(
    (opts.parentVm?.disks ?? []).map((d) => d.checkpointName).filter((n): n is string => !!n),
  );

  // Whatever a killed earlier run left on this host goes first.
  const recovered = await recoverInterruptedBackup(hv, opts.scratchDir, uuid, {
    keepCheckpoint: [...parentCheckpoints][0],
  });
  const description = await hv.domains.describe(opts.domain);
  const savedXml = await hv.domains.dumpXml(opts.domain, { inactive: true });
  const plan = planBackup({
    domain: description,
    state,
    excludeDisks: opts.excludeDisks,
    parentVm: opts.parentVm,
  });
  const images = plan.disks.filter((d) => d.path).map((d) => ({ path: d.path!, format: d.format }));
  if (recovered && !parentCheckpoints.has(recovered.newCheckpoint)) {
    await deleteCheckpoint(hv, opts.domain, recovered.newCheckpoint, { images }).catch(() => {});
  }
  opts.signal?.throwIfAborted();

  const newCheckpoint = checkpointNameFor(opts.writer.snapshotId);
  const journal = await JournalFile.create(opts.scratchDir, {
    domainUuid: uuid,
    domain: opts.domain,
    newCheckpoint,
    target: opts.journalTarget,
  });
  // Short: UNIX socket paths inside it must stay under 108 bytes.
  const workDir = join(opts.scratchDir, `lb-${uuid.slice(0, 13)}`);
  let source: BackupSource | undefined;
  try {
    const savedCheckpointXml = new Map<string, string>();
    for (const d of opts.parentVm?.disks ?? []) {
      if (d.checkpointName && d.checkpointXml) savedCheckpointXml.set(d.checkpointName, d.checkpointXml);
    }
    source =
      state === 'running'
        ? await startPullBackup({
            hv,
            domain: opts.domain,
            description,
            plan,
            newCheckpoint,
            workDir,
            savedCheckpointXml,
            journal,
            perDiskModes: opts.perDiskModes ?? (await libvirtHasPerDiskBackupModes(hv)),
          })
        : await startOfflineExports({
            hv,
            domain: opts.domain,
            description,
            plan,
            newCheckpoint,
            journal,
          });
    await opts.afterExportsReady?.();

    const disks = await copyDisks(opts, plan, source, vmId);
    await source.close();
    await rm(workDir, { recursive: true, force: true });
    const checkpointXml = await source.commitCheckpoint();
    const prevDisks = new Map((opts.parentVm?.disks ?? []).map((d) => [d.name, d]));
    const records: VmDiskRecord[] = disks.map((d) => {
      const p = plan.disks.find((x) => x.target === d.target)!;
      return {
        name: d.target,
        targetDev: d.target,
        virtualSize: d.virtualSize,
        allocatedBytes: d.allocatedBytes,
        backing: d.backing,
        mode: d.mode,
        checkpointName: p.tracksChanges && source!.checkpoint ? source!.checkpoint : null,
        checkpointXml: p.tracksChanges && source!.checkpoint ? checkpointXml : null,
        fallbackWarning: d.mode === 'full' && prevDisks.has(d.target) ? d.fallbackWarning : null,
      };
    });
    opts.signal?.throwIfAborted();
    await opts.writer.writeVm(
      buildVmInput({
        vmId,
        description: parseDomainXml(savedXml),
        uuid,
        domainXml: savedXml,
        disks: records,
        cloud: { hypervisor: 'libvirt', consistency: consistencyOf(source.freeze, state) },
      }),
    );
    const result: VmBackupResult = {
      vmId,
      name: description.name,
      uuid,
      state,
      source: source.kind,
      freeze: source.freeze,
      checkpoint: source.checkpoint ?? null,
      disks,
      skipped: plan.skipped,
      warnings: planWarnings(plan).map((w) => ({ ...w, vmId })),
    };
    const done = source;
    let finished = false;
    return {
      ...result,
      async finish(committed) {
        const problems: string[] = [];
        let deletedCheckpoints: string[] = [];
        if (finished) return { deletedCheckpoints, problems };
        finished = true;
        try {
          if (committed) {
            const keep = new Set(done.checkpoint ? [done.checkpoint] : []);
            const pruned = await pruneLifeboatCheckpoints(hv, opts.domain, keep, { images });
            deletedCheckpoints = pruned.deleted;
            problems.push(...pruned.failed.map((f) => `checkpoint ${f.name} not deleted: ${f.reason}`));
          } else {
            await done.discardCheckpoint();
          }
        } catch (err) {
          problems.push(messageOf(err));
        }
        await journal.remove();
        return { deletedCheckpoints, problems };
      },
    };
  } catch (err) {
    await source?.close().catch(() => {});
    await source?.discardCheckpoint().catch(() => {});
    await rm(workDir, { recursive: true, force: true }).catch(() => {});
    await journal.remove();
    if (opts.signal?.aborted) throw cancelledError(opts.signal, what);
    if (err instanceof HypervisorError && err.code === 'DOMAIN_NOT_FOUND') {
      throw new BackupError(
        'BACKUP_DOMAIN_NOT_FOUND',
        `domain ${opts.domain} disappeared during the backup`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}

function consistencyOf(
  freeze: FreezeResult | undefined,
  state: 'running' | 'shutoff',
): Record<string, unknown> {
  if (state === 'shutoff') return { level: 'shut-off' };
  if (freeze && !freeze.skipped) return { level: 'filesystem', frozenFilesystems: freeze.frozenFilesystems };
  return { level: 'crash', freezeSkipped: freeze?.skipped ? freeze.reason : 'not attempted' };
}

async function copyDisks(
  opts: BackupVmOptions,
  plan: BackupPlan,
  source: BackupSource,
  vmId: string,
): Promise<DiskBackupResult[]> {
  const parentDisks = new Map((opts.parentVm?.disks ?? []).map((d) => [d.name, d]));
  const out: DiskBackupResult[] = [];
  for (const p of plan.disks) {
    opts.signal?.throwIfAborted();
    const exp = source.exports.get(p.target);
    if (!exp) throw new BackupError('BACKUP_DISK_FAILED', `disk ${p.target} was not exported`);
    const incremental = p.mode === 'incremental' && exp.dirtyBitmap !== undefined;
    try {
      const r = await copyDiskToTarget({
        uri: exp.uri,
        dirtyBitmap: incremental ? exp.dirtyBitmap : undefined,
        parentVirtualSize: incremental ? parentDisks.get(p.target)?.virtualSize : undefined,
        writer: opts.writer,
        vmId,
        disk: p.target,
        clusterSize: opts.clusterSize,
        signal: opts.signal,
        onProgress: (bytesDone, bytesTotal) =>
          opts.onProgress?.({ vmId, disk: p.target, bytesDone, bytesTotal }),
      });
      if (r.fallbackWarning) fallBackToFull(p, r.fallbackWarning);
      out.push({
        target: p.target,
        mode: r.mode,
        virtualSize: r.virtualSize,
        allocatedBytes: r.allocatedBytes,
        copiedBytes: r.copiedBytes,
        storedBytes: r.storedBytes,
        backing: r.backing,
        fallbackWarning: p.fallbackWarning,
        note: p.note,
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new BackupError('BACKUP_DISK_FAILED', `disk ${p.target}: ${messageOf(err)}`, { cause: err });
    }
  }
  return out;
}
