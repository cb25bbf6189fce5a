import { chmod, mkdir } from 'node:fs/promises';
import type { PullBackupDiskSpec } from '../hypervisor/backup-xml.js';
import type { CheckpointDiskSpec } from '../hypervisor/checkpoint-xml.js';
import type { DomainDescription } from '../hypervisor/domain-description.js';
import { HypervisorError } from '../hypervisor/errors.js';
import type { FreezeResult } from '../hypervisor/guest-agent.js';
import { type LibvirtHypervisor, nbdExportUri, type PullBackupJob } from '../hypervisor/libvirt.js';
import { checkpointXmlForSaving, deleteCheckpoint, ensureCheckpointKnown } from './backup-checkpoints.js';
import type { JournalFile } from './backup-journal.js';
import { type BackupPlan, fallBackToFull } from './backup-plan.js';
import type { BackupSource, DiskExport } from './backup-source.js';

export interface PullSourceOptions {
  hv: LibvirtHypervisor;
  /** Domain name or UUID. */
  domain: string;
  description: DomainDescription;
  /** Mutated: disks whose checkpoint or bitmap turns out unusable fall back to full here. */
  plan: BackupPlan;
  /** Name of the checkpoint to create atomically with the backup. */
  newCheckpoint: string;
  /** QEMU-reachable directory for the NBD socket and scratch files of this domain's job. */
  workDir: string;
  /** Checkpoint XML saved with the parent snapshot, per checkpoint name (to redefine a lost one). */
  savedCheckpointXml: ReadonlyMap<string, string>;
  journal: JournalFile;
  /** libvirt honours per-disk backupmode/incremental (>= 7.6); else one mode for the whole job. */
  perDiskModes: boolean;
}

/** libvirt: "checkpoint inconsistent: missing or broken bitmap 'cp' for disk 'vda'". */
const BROKEN_BITMAP = /missing or broken bitmap '([^']+)' for disk '([^']+)'/i;
const CHECKPOINT_TROUBLE =
  /checkpoint inconsistent|bitmap .*(missing|broken|inconsistent)|incremental backup .*checkpoint/i;

/**
 * A running (or paused) domain: libvirt pull-mode backup with the new checkpoint created in the
 * same QEMU transaction as the backup's point in time, the guest's filesystems frozen only around
 * that call. A disk whose bitmap libvirt refuses falls back to full and the job is started again;
 * the job never fails because of a broken or missing bitmap.
 */
export async function startPullBackup(opts: PullSourceOptions): Promise<BackupSource> {
  const { hv, domain, plan } = opts;
  await makeCheckpointsKnown(opts);
  const planned = new Map(plan.disks.map((d) => [d.target, d]));
  const checkpointDisks: CheckpointDiskSpec[] = opts.description.disks.map((d) => ({
    target: d.target,
    checkpoint: planned.get(d.target)?.tracksChanges ? 'bitmap' : 'no',
  }));
  const withCheckpoint = checkpointDisks.some((d) => d.checkpoint === 'bitmap');
  await mkdir(opts.workDir, { recursive: true });
  // QEMU runs as another user: it must traverse this directory to its job's socket and scratch files.
  await chmod(opts.workDir, 0o755);
  await opts.journal.update((j) => {
    j.pullJob = { jobDir: opts.workDir, scratchFiles: [] };
  });

  let job: PullBackupJob | undefined;
  let freeze: FreezeResult | undefined;
  for (let attempt = 0; !job; attempt++) {
    const incrementals = plan.disks.filter((d) => d.mode === 'incremental');
    let jobIncremental: string | undefined;
    if (!opts.perDiskModes && incrementals.length > 0) {
      const since = new Set(incrementals.map((d) => d.sinceCheckpoint));
      if (since.size === 1 && incrementals.length === plan.disks.length)
        jobIncremental = incrementals[0]!.sinceCheckpoint;
      else {
        for (const d of incrementals) {
          fallBackToFull(
            d,
            `this libvirt cannot mix full and incremental disks in one backup: disk ${d.target} is full`,
          );
        }
      }
    }
    const disks: PullBackupDiskSpec[] = opts.description.disks.map((d) => {
      const p = planned.get(d.target);
      if (!p) return { target: d.target, backup: false };
      if (!opts.perDiskModes) return { target: d.target, backup: true };
      return {
        target: d.target,
        backup: true,
        incremental: p.mode === 'incremental' ? p.sinceCheckpoint! : null,
      };
    });
    try {
      job = await hv.guestAgent.withFrozenFilesystems(domain, async (f) => {
        freeze = f;
        return hv.backups.begin(domain, {
          disks,
          incremental: jobIncremental,
          checkpoint: withCheckpoint ? { name: opts.newCheckpoint, disks: checkpointDisks } : undefined,
          workDir: opts.workDir,
        });
      });
    } catch (err) {
      if (!(err instanceof HypervisorError) || attempt > plan.disks.length) throw err;
      const text = `${err.message} ${String(err.details?.stderr ?? '')}`;
      const broken = BROKEN_BITMAP.exec(text);
      const disk = broken ? planned.get(broken[2]!) : undefined;
      if (disk && disk.mode === 'incremental') {
        fallBackToFull(
          disk,
          `disk ${disk.target}: the bitmap of checkpoint ${broken![1]} is missing or inconsistent (QEMU stopped without saving it, the VM moved, or the image was replaced): full backup`,
        );
      } else if (CHECKPOINT_TROUBLE.test(text) && plan.disks.some((d) => d.mode === 'incremental')) {
        for (const d of plan.disks)
          fallBackToFull(
            d,
            `disk ${d.target}: libvirt refused the incremental backup (${err.message}): full backup`,
          );
      } else {
        throw err;
      }
      // A failed backup-begin creates no checkpoint; make sure, then try again with the new modes.
      if (withCheckpoint && (await hv.checkpoints.exists(domain, opts.newCheckpoint))) {
        await hv.checkpoints.delete(domain, opts.newCheckpoint);
      }
    }
  }
  const started = job;
  await opts.journal.update((j) => {
    j.pullJob = { jobDir: opts.workDir, scratchFiles: started.scratchFiles };
  });

  const exports = new Map<string, DiskExport>();
  for (const e of started.exports) {
    const p = planned.get(e.target);
    if (!p) continue;
    const incremental = e.mode === 'incremental' && e.exportBitmap !== undefined;
    if (p.mode === 'incremental' && !incremental) {
      fallBackToFull(p, `disk ${p.target}: libvirt exported no dirty bitmap: full backup`);
    }
    exports.set(e.target, {
      uri: nbdExportUri(started.server, e.exportName),
      dirtyBitmap: p.mode === 'incremental' ? e.exportBitmap : undefined,
    });
  }
  const images = plan.disks.filter((d) => d.path).map((d) => ({ path: d.path!, format: d.format }));
  let closed = false;
  return {
    kind: 'pull-backup',
    exports,
    freeze,
    checkpoint: withCheckpoint ? opts.newCheckpoint : undefined,
    async close() {
      if (closed) return;
      closed = true;
      await hv.backups.end(started);
    },
    async commitCheckpoint() {
      if (!withCheckpoint) return null;
      return checkpointXmlForSaving(await hv.checkpoints.dumpXml(domain, opts.newCheckpoint));
    },
    async discardCheckpoint() {
      if (withCheckpoint) await deleteCheckpoint(hv, domain, opts.newCheckpoint, { images });
    },
  };
}

/** Redefines the parent's checkpoints libvirt lost; disks whose checkpoint cannot come back go full. */
async function makeCheckpointsKnown(opts: PullSourceOptions): Promise<void> {
  const byCheckpoint = new Map<string, typeof opts.plan.disks>();
  for (const d of opts.plan.disks) {
    if (d.mode !== 'incremental') continue;
    const list = byCheckpoint.get(d.sinceCheckpoint!) ?? [];
    list.push(d);
    byCheckpoint.set(d.sinceCheckpoint!, list);
  }
  for (const [name, disks] of byCheckpoint) {
    const got = await ensureCheckpointKnown(
      opts.hv,
      opts.domain,
      name,
      opts.savedCheckpointXml.get(name) ?? null,
      true,
    );
    if (got.state === 'lost') {
      for (const d of disks) fallBackToFull(d, `disk ${d.target}: ${got.reason}: full backup`);
    }
  }
}
