import { appendJobMessage, getJob, setJobProgress, setJobStatus } from '../catalog/jobs.js';
import type { CatalogDb } from '../catalog/schema.js';
import {
  addSnapshotDisk,
  addSnapshotDiskWarning,
  addSnapshotWarning,
  getSnapshot,
  listSnapshotVms,
  setSnapshotProgress,
  setSnapshotStatus,
  updateSnapshotDisk,
} from '../catalog/snapshots.js';
import { listTasks, type Task } from '../catalog/tasks.js';
import { getWorkload, unlockWorkload } from '../catalog/workloads.js';
import { snapshotKey, snapshotPrefix, vmFileKey } from '../target/layout.js';
import type { SnapshotMeta, VmMeta } from '../target/metadata/schemas.js';
import { writeMetadata } from '../target/metadata-io.js';
import type { ControllerContext } from './context.js';
import { isCatalogTransitionError } from './settle-util.js';

const LIVE = new Set(['queued', 'running']);

/** Sums the tasks' progress into the job's (and the snapshot's): bytes done / bytes in all. */
export async function refreshJobProgress(ctx: ControllerContext, jobId: string, tasks?: Task[]) {
  const all = tasks ?? (await listTasks(ctx.db, jobId));
  const done = all.reduce((n, t) => n + Number(t.progress_done), 0);
  const total = all.reduce((n, t) => n + Number(t.progress_total), 0);
  await setJobProgress(ctx.db, jobId, done, total);
  return { done, total };
}

/**
 * Brings a snapshot to its end once every task of its job has ended: called from the task hooks
 * (a task succeeded, failed, was cancelled, or was reaped after its datamover went silent), when the
 * job finishes, and after a cancel. The job's own status is the task plumbing's business
 * (job-settlement.ts); this decides what becomes of the snapshot:
 * - every task succeeded and nobody cancelled: snapshot.json is written (the commit), the catalog
 *   records every VM and disk from the vm.json files, the snapshot is available;
 * - otherwise the unfinished folder is removed from the target, so nothing half-written is ever
 *   visible, and the snapshot ends failed with the reason.
 * Either way the workload is unlocked and its target lease released. Safe to call twice: the
 * snapshot's conditional status change lets one caller through.
 */
export async function settleSnapshotJob(ctx: ControllerContext, jobId: string): Promise<void> {
  const job = await getJob(ctx.db, jobId);
  if (job.resource_type !== 'workload' || !job.resource_id) return;
  const snap = (
    await ctx.db.selectFrom('snapshots').select('id').where('job_id', '=', jobId).executeTakeFirst()
  )?.id;
  if (!snap) return;
  const tasks = await listTasks(ctx.db, jobId);
  const { done, total } = await refreshJobProgress(ctx, jobId, tasks);
  await setSnapshotProgress(ctx.db, snap, done, total);
  if (tasks.some((t) => LIVE.has(t.status))) return;
  const snapshot = await getSnapshot(ctx.db, snap);
  if (snapshot.status !== 'creating') return;
  const w = await getWorkload(ctx.db, job.resource_id);
  const bad = tasks.filter((t) => t.status === 'failed' || t.status === 'cancelled');
  const stopped = ['cancelling', 'cancelled', 'failed'].includes(job.status);
  // The target lease is given back, then the workload unlocked in the SAME transaction that sets the
  // snapshot's final status: a client that sees `available`/`failed` may start the next snapshot at
  // once and finds the workload free, and no new snapshot can start while this one is not settled.
  const release = async (trx: CatalogDb) => {
    if (w.target_id) await ctx.targets.releaseLease(w.target_id, w.id);
    await unlockWorkload(trx, w.id, jobId);
  };
  try {
    if (bad.length === 0 && !stopped && tasks.length > 0) {
      await commitSnapshot(ctx, snapshot.id, w.id, w.target_id!, release);
      await appendJobMessage(ctx.db, jobId, 'info', `snapshot ${snapshot.id} committed`);
    } else {
      const failed = bad.find((t) => t.status === 'failed');
      const reason = failed
        ? reasonOf(failed)
        : job.status === 'failed' && job.error
          ? job.error
          : job.status === 'cancelling' || job.status === 'cancelled'
            ? 'cancelled'
            : reasonOf(bad[0]);
      await abandonSnapshot(ctx, snapshot.id, w.id, w.target_id, reason, release);
      await finishJob(ctx, jobId, failed || !stopped ? 'failed' : 'cancelled', reason);
    }
  } catch (err) {
    if (isCatalogTransitionError(err)) return; // another caller settled it first
    const reason = `commit failed: ${(err as Error).message}`;
    await abandonSnapshot(ctx, snapshot.id, w.id, w.target_id, reason, release).catch(() => undefined);
    await finishJob(ctx, jobId, 'failed', reason);
  } finally {
    await release(ctx.db); // again on every path: both steps are no-ops when done already
  }
}

function reasonOf(t: Task | undefined): string {
  if (!t) return 'no task ran';
  const host = t.host_id ? ` on host ${t.host_id}` : '';
  return t.status === 'cancelled'
    ? `task ${t.id}${host} was cancelled`
    : `task ${t.id}${host}: ${t.error ?? 'failed'}`;
}

async function finishJob(ctx: ControllerContext, jobId: string, to: 'failed' | 'cancelled', reason: string) {
  const job = await getJob(ctx.db, jobId);
  if (job.status === 'cancelled' || job.status === 'failed' || job.status === 'succeeded') return;
  // Only reached when the plumbing has not ended the job yet (a commit that failed, a job no task
  // of which ever ran): the job must not end succeeded without its snapshot.
  const next = to === 'cancelled' && job.status === 'running' ? 'cancelling' : to;
  await appendJobMessage(ctx.db, jobId, 'error', reason);
  await setJobStatus(ctx.db, jobId, next, { error: reason }).catch((err) => {
    if (!isCatalogTransitionError(err)) throw err;
  });
}

/**
 * Removes the snapshot's unfinished folder from the target (under the lease), then marks it failed
 * and releases the workload together: once it reads `failed`, nothing of it is left anywhere.
 */
async function abandonSnapshot(
  ctx: ControllerContext,
  snapshotId: string,
  workloadId: string,
  targetId: string | null,
  reason: string,
  release: (trx: CatalogDb) => Promise<void>,
) {
  if (targetId) {
    const target = await ctx.targets.target(targetId);
    await ctx.targets.withLease(
      targetId,
      workloadId,
      async () => {
        // Never remove a committed snapshot: only an unfinished folder is ours to clean.
        if (await target.backend.stat(snapshotKey(workloadId, snapshotId))) return;
        await target.backend.deletePrefix(snapshotPrefix(workloadId, snapshotId));
      },
      { holdsWorkloadLock: true },
    );
  }
  await ctx.db.transaction().execute(async (trx) => {
    await release(trx);
    await setSnapshotStatus(trx, snapshotId, 'failed', { error: reason });
  });
}

/** Writes snapshot.json from the VMs' vm.json files and records the VMs and disks in the catalog. */
async function commitSnapshot(
  ctx: ControllerContext,
  snapshotId: string,
  workloadId: string,
  targetId: string,
  release: (trx: CatalogDb) => Promise<void>,
) {
  const snapshot = await getSnapshot(ctx.db, snapshotId);
  const target = await ctx.targets.target(targetId);
  const vmsInCatalog = await listSnapshotVms(ctx.db, snapshotId);
  const metas: VmMeta[] = [];
  for (const v of vmsInCatalog) {
    const meta = await target.readVm(workloadId, snapshotId, v.domain_uuid);
    if (!meta) throw new Error(`VM ${v.name}: vm.json is missing on the target`);
    metas.push(meta);
  }
  const warnings: SnapshotMeta['warnings'] = [];
  const sizes = { virtualBytes: 0, allocatedBytes: 0, storedBytes: 0 };
  for (const m of metas) {
    for (const d of m.disks) {
      sizes.virtualBytes += d.virtualSize;
      sizes.allocatedBytes += d.allocatedBytes;
      sizes.storedBytes += d.storedBytes;
      if (d.fallbackWarning)
        warnings.push({ code: 'FALLBACK_FULL', message: d.fallbackWarning, vmId: m.id, disk: d.name });
    }
  }
  const lease = await ctx.targets.acquireLease(targetId, workloadId, { holdsWorkloadLock: true });
  await lease.assertHeld();
  await writeMetadata(target.backend, 'snapshot', snapshotKey(workloadId, snapshotId), {
    id: snapshotId,
    workloadId,
    type: snapshot.type,
    parentSnapshotId: snapshot.parent_id,
    startedAt: snapshot.started_at ?? snapshot.created_at,
    finishedAt: new Date().toISOString(),
    status: warnings.length > 0 ? 'warnings' : 'ok',
    sizes,
    vms: metas.map((m) => ({
      id: m.id,
      name: m.name,
      disks: m.disks.map((d) => d.name),
      storedBytes: m.disks.reduce((n, d) => n + d.storedBytes, 0),
    })),
    warnings,
  });
  for (const [i, v] of vmsInCatalog.entries()) await recordVmFromMeta(ctx, v.id, metas[i]);
  for (const w of warnings) await addSnapshotWarning(ctx.db, snapshotId, `${w.vmId}/${w.disk}: ${w.message}`);
  await ctx.db.transaction().execute(async (trx) => {
    await release(trx);
    await setSnapshotStatus(trx, snapshotId, 'available', {
      sizeBytes: sizes.virtualBytes,
      storedBytes: sizes.storedBytes,
    });
  });
}

/** What the catalog keeps of a VM's definition: enough to plan a restore without reading the target. */
export function definitionOf(meta: VmMeta): Record<string, unknown> {
  return {
    vm_id: meta.id,
    uuid: meta.uuid,
    memory_bytes: meta.memoryBytes,
    vcpus: meta.vcpus,
    nics: meta.nics,
    networks: meta.networks,
    disks: meta.disks.map((d) => ({ name: d.name, target_dev: d.targetDev, virtual_size: d.virtualSize })),
  };
}

export async function recordVmFromMeta(
  ctx: ControllerContext,
  snapshotVmId: string,
  meta: VmMeta,
): Promise<void> {
  await ctx.db
    .updateTable('snapshot_vms')
    .set({ definition: JSON.stringify(definitionOf(meta)) })
    .where('id', '=', snapshotVmId)
    .execute();
  for (const d of meta.disks) {
    const disk = await addSnapshotDisk(ctx.db, {
      snapshotVmId,
      targetDev: d.targetDev,
      type: d.mode,
      targetPath: vmFileKey(meta.workloadId, meta.snapshotId, meta.id, d.image),
      virtualSize: d.virtualSize,
      checkpointName: d.checkpointName,
    });
    await updateSnapshotDisk(ctx.db, disk.id, { status: 'available', storedBytes: d.storedBytes });
    if (d.fallbackWarning) await addSnapshotDiskWarning(ctx.db, disk.id, d.fallbackWarning);
  }
}
