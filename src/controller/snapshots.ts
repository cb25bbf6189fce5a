import { type AuditActor, recordAudit } from '../catalog/audit.js';
import {
  appendJobMessage,
  createJob,
  deleteJob,
  getJob,
  type Job,
  requestJobCancel,
} from '../catalog/jobs.js';
import {
  addSnapshotVm,
  createSnapshot,
  getSnapshot,
  latestAvailableSnapshot,
  listSnapshots,
  type Snapshot,
  type SnapshotType,
} from '../catalog/snapshots.js';
import { createTask } from '../catalog/tasks.js';
import { getWorkload, listWorkloadVms, lockWorkload, unlockWorkload } from '../catalog/workloads.js';
import { SNAPSHOT_VM_TASK, type SnapshotVmPayload } from '../datamover/handlers/payloads.js';
import { snapshotPrefix } from '../target/layout.js';
import { type ControllerContext, DEFAULT_LOCK_LEASE_MS } from './context.js';
import { ControllerError } from './errors.js';
import { settleSnapshotJob } from './snapshot-settle.js';

export interface SnapshotOptions {
  /** Force a full snapshot (default: incremental once a full exists). */
  full?: boolean;
  name?: string;
}

/** Whether the next snapshot is full or incremental, and on which parent. */
export async function chooseSnapshotType(
  ctx: ControllerContext,
  workloadId: string,
  options: SnapshotOptions,
): Promise<{ type: SnapshotType; parent: Snapshot | undefined; reason: string }> {
  const w = await getWorkload(ctx.db, workloadId);
  const parent = await latestAvailableSnapshot(ctx.db, workloadId);
  if (options.full) return { type: 'full', parent: undefined, reason: 'a full snapshot was asked for' };
  if (!parent) return { type: 'full', parent: undefined, reason: 'the workload has no snapshot yet' };
  if (parent.target_id !== w.target_id) {
    return { type: 'full', parent: undefined, reason: 'the workload writes to another target now' };
  }
  if (w.full_every && w.full_every > 0) {
    const chain = (await listSnapshots(ctx.db, { workloadId, status: 'available' })).reverse();
    let sinceFull = 0;
    for (const s of chain) {
      if (s.type === 'full') break;
      sinceFull++;
    }
    if (sinceFull + 1 >= w.full_every) {
      return { type: 'full', parent: undefined, reason: `policy: a full every ${w.full_every} snapshots` };
    }
  }
  return { type: 'incremental', parent, reason: `changes since snapshot ${parent.id}` };
}

/**
 * Starts a snapshot of every VM of a workload: one job, the workload locked (in the catalog and by
 * its lease on the target) for as long as it runs, one task per VM queued for the datamover of that
 * VM's host — all at once, so the VMs of a workload are captured together. The snapshot is
 * committed (snapshot.json) by the controller when the last task has succeeded (settleSnapshotJob).
 */
export async function startSnapshot(
  ctx: ControllerContext,
  actor: AuditActor,
  workloadId: string,
  options: SnapshotOptions = {},
): Promise<{ snapshot: Snapshot; job: Job }> {
  const w = await getWorkload(ctx.db, workloadId);
  const vms = await listWorkloadVms(ctx.db, workloadId);
  if (vms.length === 0) {
    throw new ControllerError('CONTROLLER_WORKLOAD_EMPTY', `workload ${w.name} has no VMs to snapshot`);
  }
  if (!w.target_id)
    throw new ControllerError('CONTROLLER_NO_TARGET', `workload ${w.name} has no backup target`);
  const job = await createJob(ctx.db, {
    kind: 'snapshot',
    projectId: w.project_id,
    userId: actor.userId ?? null,
    resourceType: 'workload',
    resourceId: w.id,
  });
  let lease: Awaited<ReturnType<ControllerContext['targets']['acquireLease']>>;
  try {
    await lockWorkload(ctx.db, w.id, job.id, ctx.lockLeaseMs ?? DEFAULT_LOCK_LEASE_MS);
  } catch (err) {
    await deleteJob(ctx.db, job.id).catch(() => undefined);
    throw err;
  }
  try {
    lease = await ctx.targets.acquireLease(w.target_id, w.id, { holdsWorkloadLock: true });
  } catch (err) {
    await unlockWorkload(ctx.db, w.id, job.id);
    await deleteJob(ctx.db, job.id).catch(() => undefined);
    throw err;
  }

  const { type, parent, reason } = await chooseSnapshotType(ctx, w.id, options);
  const target = await ctx.targets.locator(w.target_id);
  const snapshot = await createSnapshot(ctx.db, {
    workloadId: w.id,
    type,
    parentId: parent?.id ?? null,
    jobId: job.id,
    name: options.name,
    targetId: w.target_id,
  });
  await ctx.db
    .updateTable('snapshots')
    .set({ target_path: snapshotPrefix(w.id, snapshot.id), started_at: new Date().toISOString() })
    .where('id', '=', snapshot.id)
    .execute();
  for (const vm of vms) {
    await addSnapshotVm(ctx.db, {
      snapshotId: snapshot.id,
      workloadVmId: vm.id,
      hostId: vm.host_id,
      domainUuid: vm.domain_uuid,
      name: vm.name,
    });
    const payload: SnapshotVmPayload = {
      target,
      workloadId: w.id,
      snapshotId: snapshot.id,
      type,
      parentSnapshotId: parent?.id ?? null,
      leaseToken: lease.token,
      vm: { id: vm.domain_uuid, uuid: vm.domain_uuid, name: vm.name, excludedDisks: vm.excluded_disks },
    };
    // One attempt: a backup cut off midway is not resumable (its checkpoint and export are gone
    // with the datamover), so the snapshot fails with the reason and the next one starts clean.
    await createTask(ctx.db, {
      jobId: job.id,
      kind: SNAPSHOT_VM_TASK,
      hostId: vm.host_id,
      payload: payload as unknown as Record<string, unknown>,
      maxAttempts: 1,
    });
  }
  ctx.wake?.(job.id);
  await appendJobMessage(ctx.db, job.id, 'info', `${type} snapshot of ${vms.length} VM(s): ${reason}`);
  await recordAudit(ctx.db, actor, {
    action: 'snapshot.create',
    resourceType: 'snapshot',
    resourceId: snapshot.id,
    projectId: w.project_id,
    details: { workloadId: w.id, type, jobId: job.id },
  });
  return { snapshot: await getSnapshot(ctx.db, snapshot.id), job: await getJob(ctx.db, job.id) };
}

/** Asks the snapshot's job to stop; the snapshot then ends failed ("cancelled") and leaves nothing behind. */
export async function cancelSnapshot(
  ctx: ControllerContext,
  actor: AuditActor,
  snapshotId: string,
): Promise<Job> {
  const snap = await getSnapshot(ctx.db, snapshotId);
  if (snap.status !== 'creating' || !snap.job_id) {
    throw new ControllerError(
      'CONTROLLER_SNAPSHOT_STATE',
      `snapshot ${snapshotId} is ${snap.status}: nothing to cancel`,
    );
  }
  const job = await requestJobCancel(ctx.db, snap.job_id);
  await appendJobMessage(ctx.db, job.id, 'warning', `cancel requested by ${actor.name}`);
  const w = await getWorkload(ctx.db, snap.workload_id);
  await recordAudit(ctx.db, actor, {
    action: 'snapshot.cancel',
    resourceType: 'snapshot',
    resourceId: snapshotId,
    projectId: w.project_id,
    details: { jobId: job.id },
  });
  await settleSnapshotJob(ctx, job.id);
  return getJob(ctx.db, job.id);
}
