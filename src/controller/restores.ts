import { type AuditActor, recordAudit } from '../catalog/audit.js';
import { appendJobMessage, createJob, deleteJob, getJob, type Job, setJobStatus } from '../catalog/jobs.js';
import {
  createRestore,
  getRestore,
  type Restore,
  setRestoreProgress,
  setRestoreStatus,
} from '../catalog/restores.js';
import { getSnapshot, listSnapshotVms } from '../catalog/snapshots.js';
import { createTask, listTasks } from '../catalog/tasks.js';
import { getWorkload, lockWorkload, unlockWorkload } from '../catalog/workloads.js';
import { RESTORE_VM_TASK, type RestoreVmPayload } from '../datamover/handlers/payloads.js';
import { type ControllerContext, DEFAULT_LOCK_LEASE_MS } from './context.js';
import { ControllerError } from './errors.js';
import {
  generateRestorePlan,
  type RestoreKind,
  type RestorePlan,
  targetVmId,
  validateRestorePlan,
} from './restore-plan.js';
import { isCatalogTransitionError } from './settle-util.js';
import { refreshJobProgress } from './snapshot-settle.js';

export interface RestoreRequest {
  snapshotId: string;
  kind: RestoreKind;
  /** Required for selective restores; optional for in-place (default: every VM over itself). */
  plan?: unknown;
}

/**
 * Refuses a one-click restore while any original VM still exists (it would come back beside itself
 * under the same name), and an in-place restore whose VM does not exist. Without an inventory the
 * datamover's own checks (it never overwrites an existing domain) still hold.
 */
async function checkOriginals(ctx: ControllerContext, plan: RestorePlan, kind: RestoreKind): Promise<void> {
  if (!ctx.inventory) return;
  const snapVms = await listSnapshotVms(ctx.db, plan.snapshot_id);
  const present: string[] = [];
  const missing: string[] = [];
  for (const p of plan.vms.filter((v) => v.include)) {
    const vms = await ctx.inventory.listVms(p.host_id);
    if (!vms) continue;
    const orig = snapVms.find((v) => targetVmId(v) === p.vm_id);
    const hit = vms.find(
      (v) =>
        v.name === p.name ||
        v.uuid.toLowerCase() === p.name.toLowerCase() ||
        (kind === 'one_click' && v.uuid.toLowerCase() === orig?.domain_uuid),
    );
    if (hit) present.push(`${hit.name} (${hit.uuid})`);
    else missing.push(p.name);
  }
  if (kind === 'one_click' && present.length > 0) {
    throw new ControllerError(
      'CONTROLLER_VMS_EXIST',
      `one-click restore refused: the original VMs still exist: ${present.join(', ')}. Delete them first, restore in place, or make a selective restore under new names`,
      { details: { existing: present } },
    );
  }
  if (kind === 'in_place' && missing.length > 0) {
    throw new ControllerError(
      'CONTROLLER_PLAN_INVALID',
      `in-place restore needs the VMs to exist; not found: ${missing.join(', ')}`,
      { details: { missing } },
    );
  }
}

/**
 * Starts a restore: one job, one task per included VM on the host the plan names. One-click uses the
 * generated plan (everything as it was); selective needs a plan; in-place writes the data back over
 * the existing VMs (their datamover shuts them off first). The workload is locked while it runs, so
 * no snapshot delete merges away what the restore reads.
 */
export async function startRestore(
  ctx: ControllerContext,
  actor: AuditActor,
  req: RestoreRequest,
): Promise<{ restore: Restore; job: Job }> {
  const snap = await getSnapshot(ctx.db, req.snapshotId);
  if (snap.status !== 'available') {
    throw new ControllerError(
      'CONTROLLER_SNAPSHOT_STATE',
      `snapshot ${snap.id} is ${snap.status}: only available snapshots restore`,
    );
  }
  const w = await getWorkload(ctx.db, snap.workload_id);
  let plan: RestorePlan;
  if (req.kind === 'one_click') {
    if (req.plan !== undefined) {
      throw new ControllerError(
        'CONTROLLER_PLAN_INVALID',
        'a one-click restore takes no plan: use a selective restore',
      );
    }
    plan = await generateRestorePlan(ctx.db, snap.id, {
      kind: 'one_click',
      defaultStorageDir: ctx.defaultStorageDir,
    });
  } else if (req.plan === undefined) {
    if (req.kind === 'selective') {
      throw new ControllerError(
        'CONTROLLER_PLAN_INVALID',
        'a selective restore needs a plan (see: restore plan SNAPSHOT)',
      );
    }
    plan = await generateRestorePlan(ctx.db, snap.id, {
      kind: 'in_place',
      defaultStorageDir: ctx.defaultStorageDir,
    });
  } else {
    plan = await validateRestorePlan(ctx.db, req.plan, req.kind, ctx.defaultStorageDir);
  }
  if (plan.snapshot_id !== snap.id) {
    throw new ControllerError(
      'CONTROLLER_PLAN_INVALID',
      `the plan is for snapshot ${plan.snapshot_id}, not ${snap.id}`,
    );
  }
  await checkOriginals(ctx, plan, req.kind);
  if (!snap.target_id) throw new ControllerError('CONTROLLER_NO_TARGET', `snapshot ${snap.id} has no target`);
  const target = await ctx.targets.locator(snap.target_id);

  const job = await createJob(ctx.db, {
    kind: 'restore',
    projectId: w.project_id,
    userId: actor.userId ?? null,
    resourceType: 'restore',
  });
  try {
    await lockWorkload(ctx.db, w.id, job.id, ctx.lockLeaseMs ?? DEFAULT_LOCK_LEASE_MS);
  } catch (err) {
    await deleteJob(ctx.db, job.id).catch(() => undefined);
    throw err;
  }
  const restore = await createRestore(ctx.db, {
    projectId: w.project_id,
    snapshotId: snap.id,
    kind: req.kind,
    plan: plan as unknown as Record<string, unknown>,
    userId: actor.userId ?? null,
    jobId: job.id,
  });
  await ctx.db.updateTable('jobs').set({ resource_id: restore.id }).where('id', '=', job.id).execute();
  for (const p of plan.vms.filter((v) => v.include)) {
    const payload: RestoreVmPayload = {
      target,
      workloadId: w.id,
      snapshotId: snap.id,
      vmId: p.vm_id,
      mode: req.kind === 'in_place' ? 'in_place' : 'new',
      name: p.name,
      storageDir: p.storage_dir,
      networkMap: p.network_map,
      disks: p.disks,
      start: p.start,
    };
    await createTask(ctx.db, {
      jobId: job.id,
      kind: RESTORE_VM_TASK,
      hostId: p.host_id,
      payload: payload as unknown as Record<string, unknown>,
      maxAttempts: 1,
    });
  }
  ctx.wake?.(job.id);
  const count = plan.vms.filter((v) => v.include).length;
  await appendJobMessage(
    ctx.db,
    job.id,
    'info',
    `${req.kind} restore of ${count} VM(s) from snapshot ${snap.id}`,
  );
  await recordAudit(ctx.db, actor, {
    action: 'restore.create',
    resourceType: 'restore',
    resourceId: restore.id,
    projectId: w.project_id,
    details: { snapshotId: snap.id, kind: req.kind, vms: count, jobId: job.id },
  });
  return { restore: await getRestore(ctx.db, restore.id), job: await getJob(ctx.db, job.id) };
}

/**
 * Follows a restore job: progress on every call; once no task is live, the restore's outcome (and
 * each VM's in the job messages), and the workload unlocked.
 */
export async function settleRestoreJob(ctx: ControllerContext, jobId: string): Promise<void> {
  const job = await getJob(ctx.db, jobId);
  if (job.resource_type !== 'restore' || !job.resource_id) return;
  const restore = await getRestore(ctx.db, job.resource_id);
  const tasks = await listTasks(ctx.db, jobId);
  const { done, total } = await refreshJobProgress(ctx, jobId, tasks);
  await setRestoreProgress(ctx.db, restore.id, done, total);
  const live = tasks.some((t) => t.status === 'queued' || t.status === 'running');
  try {
    if (restore.status === 'queued' && tasks.some((t) => t.status !== 'queued')) {
      await setRestoreStatus(ctx.db, restore.id, 'running');
    }
    if (live) return;
    const snap = await getSnapshot(ctx.db, restore.snapshot_id);
    await unlockWorkload(ctx.db, snap.workload_id, jobId);
    const current = await getRestore(ctx.db, restore.id);
    if (current.status !== 'queued' && current.status !== 'running') return;
    const failed = tasks.find((t) => t.status === 'failed');
    const cancelled = tasks.some((t) => t.status === 'cancelled');
    for (const t of tasks.filter((x) => x.status === 'succeeded')) {
      const r = t.result as { name?: string; disks?: unknown[] } | null;
      await appendJobMessage(
        ctx.db,
        jobId,
        'info',
        `restored ${r?.name ?? t.payload.name} (${r?.disks?.length ?? '?'} disk(s))`,
      );
    }
    if (!failed && !cancelled && tasks.length > 0) {
      if (current.status === 'queued') await setRestoreStatus(ctx.db, restore.id, 'running');
      await setRestoreStatus(ctx.db, restore.id, 'succeeded');
      return;
    }
    const reason = failed
      ? `task on host ${failed.host_id}: ${failed.error ?? 'failed'}`
      : (job.error ?? 'cancelled');
    await setRestoreStatus(ctx.db, restore.id, failed ? 'failed' : 'cancelled', { error: reason });
    if (job.status === 'running' || job.status === 'queued') {
      await setJobStatus(ctx.db, jobId, 'failed', { error: reason }).catch(() => undefined);
    }
  } catch (err) {
    if (!isCatalogTransitionError(err)) throw err;
  }
}
