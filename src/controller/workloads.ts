import { type AuditActor, recordAudit } from '../catalog/audit.js';
import { CatalogError, notFound } from '../catalog/errors.js';
import { getHost } from '../catalog/hosts.js';
import {
  addWorkloadVm,
  createWorkload as createWorkloadRow,
  deleteWorkload as deleteWorkloadRow,
  getWorkload,
  listWorkloadVms,
  removeWorkloadVm,
  setWorkloadVmExcludedDisks,
  updateWorkload,
  type Workload,
  type WorkloadPolicy,
  type WorkloadVm,
} from '../catalog/workloads.js';
import { workloadPrefix } from '../target/layout.js';
import type { ControllerContext } from './context.js';
import { ControllerError } from './errors.js';
import { writeWorkloadDocument } from './workload-doc.js';
import { resolveWorkloadNames } from './workload-names.js';

/** A VM as callers name it: on a host, by libvirt UUID or by name (names need the inventory). */
export interface VmRef {
  hostId: string;
  uuid?: string;
  name?: string;
  excludedDisks?: string[];
}

export interface NewWorkloadInput extends WorkloadPolicy {
  projectId: string;
  name: string;
  description?: string;
  targetId?: string;
  ownerUserId?: string | null;
  vms?: VmRef[];
}

export interface WorkloadChange extends WorkloadPolicy {
  name?: string;
  description?: string;
  addVms?: VmRef[];
  /** Workload VM ids, domain UUIDs or names. */
  removeVms?: string[];
  /** Per VM (id, UUID or name): the complete list of excluded target devs. */
  excludeDisks?: Array<{ vm: string; disks: string[] }>;
}

export interface WorkloadDetail extends Workload {
  vms: (WorkloadVm & { host_name: string | null })[];
  /** Names beside the ids, for people (null: nothing there, or it was deleted meanwhile). */
  project_name: string | null;
  owner_name: string | null;
  target_name: string | null;
}

async function resolveVm(ctx: ControllerContext, ref: VmRef): Promise<{ uuid: string; name: string }> {
  await getHost(ctx.db, ref.hostId);
  const known = ctx.inventory ? await ctx.inventory.listVms(ref.hostId) : undefined;
  if (ref.uuid) {
    const uuid = ref.uuid.toLowerCase();
    const seen = known?.find((v) => v.uuid.toLowerCase() === uuid);
    if (known && !seen) {
      throw new ControllerError('CONTROLLER_VM_UNKNOWN', `host ${ref.hostId} has no VM with UUID ${uuid}`);
    }
    return { uuid, name: ref.name ?? seen?.name ?? uuid };
  }
  if (!ref.name) throw new ControllerError('CONTROLLER_VM_UNKNOWN', 'a VM needs a UUID or a name');
  if (!known) {
    throw new ControllerError(
      'CONTROLLER_VM_UNKNOWN',
      `cannot look up VM ${ref.name} on host ${ref.hostId} by name right now: give its UUID`,
    );
  }
  const found = known.filter((v) => v.name === ref.name);
  if (found.length !== 1) {
    throw new ControllerError('CONTROLLER_VM_UNKNOWN', `host ${ref.hostId} has no VM named ${ref.name}`);
  }
  return { uuid: found[0].uuid.toLowerCase(), name: found[0].name };
}

async function addVms(ctx: ControllerContext, workloadId: string, refs: VmRef[]): Promise<void> {
  for (const ref of refs) {
    const vm = await resolveVm(ctx, ref);
    try {
      await addWorkloadVm(ctx.db, workloadId, {
        hostId: ref.hostId,
        domainUuid: vm.uuid,
        name: vm.name,
        excludedDisks: ref.excludedDisks,
      });
    } catch (err) {
      if (err instanceof CatalogError && err.code === 'CATALOG_CONFLICT') {
        throw new CatalogError(
          'CATALOG_CONFLICT',
          `VM ${vm.name} (${vm.uuid}) already belongs to a workload: a VM belongs to at most one`,
          { cause: err },
        );
      }
      throw err;
    }
  }
}

function findVm(vms: WorkloadVm[], which: string): WorkloadVm {
  const w = which.toLowerCase();
  const hit = vms.find((v) => v.id === which || v.domain_uuid === w) ?? vms.find((v) => v.name === which);
  if (!hit) throw notFound('workload VM', which);
  return hit;
}

/** Refuses changes while a job (a snapshot, a delete) works on the workload. */
function assertUnlocked(w: Workload): void {
  if (w.locked_by_job_id && w.lock_expires_at && w.lock_expires_at > new Date().toISOString()) {
    throw new CatalogError('CATALOG_LOCKED', `workload ${w.name} is busy with job ${w.locked_by_job_id}`, {
      details: { workloadId: w.id, jobId: w.locked_by_job_id },
    });
  }
}

export async function getWorkloadDetail(ctx: ControllerContext, id: string): Promise<WorkloadDetail> {
  const w = await getWorkload(ctx.db, id);
  const vms = await listWorkloadVms(ctx.db, id);
  const names = await resolveWorkloadNames(ctx.db, w, vms);
  return {
    ...w,
    project_name: names.project,
    owner_name: names.owner,
    target_name: names.target,
    vms: vms.map((v) => ({ ...v, host_name: names.hosts.get(v.host_id) ?? null })),
  };
}

/** Creates a workload with its VMs and writes its description to the target. */
export async function createWorkload(
  ctx: ControllerContext,
  actor: AuditActor,
  input: NewWorkloadInput,
): Promise<WorkloadDetail> {
  const targetId = input.targetId ?? (await ctx.targets.defaultTargetId(input.projectId));
  const { vms = [], ...rest } = input;
  const w = await createWorkloadRow(ctx.db, {
    ...rest,
    targetId,
    ownerUserId: input.ownerUserId ?? actor.userId,
  });
  try {
    await addVms(ctx, w.id, vms);
    await writeWorkloadDocument(ctx, w.id);
  } catch (err) {
    // Nothing half-made stays behind: the workload exists with all its VMs or not at all.
    await deleteWorkloadRow(ctx.db, w.id).catch(() => undefined);
    throw err;
  }
  await recordAudit(ctx.db, actor, {
    action: 'workload.create',
    resourceType: 'workload',
    resourceId: w.id,
    projectId: w.project_id,
    details: { name: w.name, vms: vms.length },
  });
  return getWorkloadDetail(ctx, w.id);
}

export async function modifyWorkload(
  ctx: ControllerContext,
  actor: AuditActor,
  id: string,
  change: WorkloadChange,
): Promise<WorkloadDetail> {
  const before = await getWorkload(ctx.db, id);
  const { addVms: add, removeVms: remove, excludeDisks, ...fields } = change;
  if (add?.length || remove?.length || excludeDisks?.length) assertUnlocked(before);
  if (Object.keys(fields).length > 0) await updateWorkload(ctx.db, id, fields);
  for (const which of remove ?? [])
    await removeWorkloadVm(ctx.db, findVm(await listWorkloadVms(ctx.db, id), which).id);
  if (add?.length) await addVms(ctx, id, add);
  for (const ex of excludeDisks ?? []) {
    await setWorkloadVmExcludedDisks(ctx.db, findVm(await listWorkloadVms(ctx.db, id), ex.vm).id, ex.disks);
  }
  await writeWorkloadDocument(ctx, id);
  await recordAudit(ctx.db, actor, {
    action: 'workload.update',
    resourceType: 'workload',
    resourceId: id,
    projectId: before.project_id,
    details: { fields: Object.keys(fields), added: add?.length ?? 0, removed: remove ?? [] },
  });
  return getWorkloadDetail(ctx, id);
}

/**
 * Moves a workload to another project and/or owner (admins; also after an import). The new owner is
 * written back to workload.json, so the target says who it belongs to now.
 */
export async function reassignWorkload(
  ctx: ControllerContext,
  actor: AuditActor,
  id: string,
  to: { projectId?: string; ownerUserId?: string | null },
): Promise<WorkloadDetail> {
  const before = await getWorkload(ctx.db, id);
  const set: { project_id?: string; owner_user_id?: string | null; updated_at: string } = {
    updated_at: new Date().toISOString(),
  };
  if (to.projectId !== undefined) set.project_id = to.projectId;
  if (to.ownerUserId !== undefined) set.owner_user_id = to.ownerUserId;
  await ctx.db.transaction().execute(async (trx) => {
    await trx.updateTable('workloads').set(set).where('id', '=', id).execute();
    // Restores and jobs follow their workload, so the new project sees its history.
    if (to.projectId !== undefined) {
      await trx
        .updateTable('jobs')
        .set({ project_id: to.projectId })
        .where('resource_type', '=', 'workload')
        .where('resource_id', '=', id)
        .execute();
      const snaps = trx.selectFrom('snapshots').select('id').where('workload_id', '=', id);
      await trx
        .updateTable('restores')
        .set({ project_id: to.projectId })
        .where('snapshot_id', 'in', snaps)
        .execute();
    }
  });
  await writeWorkloadDocument(ctx, id);
  await recordAudit(ctx.db, actor, {
    action: 'workload.reassign',
    resourceType: 'workload',
    resourceId: id,
    projectId: to.projectId ?? before.project_id,
    details: {
      fromProjectId: before.project_id,
      toProjectId: to.projectId ?? before.project_id,
      fromOwner: before.owner_user_id,
      toOwner: to.ownerUserId === undefined ? before.owner_user_id : to.ownerUserId,
    },
  });
  return getWorkloadDetail(ctx, id);
}

/**
 * Deletes the workload from the catalog. With `deleteData` its folder on the target goes too (under
 * the workload's lease); without, the backups stay on the target and can be imported again.
 */
export async function deleteWorkload(
  ctx: ControllerContext,
  actor: AuditActor,
  id: string,
  options: { deleteData?: boolean } = {},
): Promise<void> {
  const w = await getWorkload(ctx.db, id);
  assertUnlocked(w);
  let removedObjects = 0;
  if (options.deleteData && w.target_id) {
    const target = await ctx.targets.target(w.target_id);
    await ctx.targets.acquireLease(w.target_id, w.id);
    // lease.json goes with the folder; the release that follows then has nothing to give back.
    removedObjects = await target.backend.deletePrefix(workloadPrefix(w.id));
    await ctx.targets.releaseLease(w.target_id, w.id);
  }
  await deleteWorkloadRow(ctx.db, id);
  await recordAudit(ctx.db, actor, {
    action: 'workload.delete',
    resourceType: 'workload',
    resourceId: id,
    projectId: w.project_id,
    details: { name: w.name, deleteData: options.deleteData ?? false, removedObjects },
  });
}
