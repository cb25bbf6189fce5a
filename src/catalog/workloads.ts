import type { Selectable, Updateable } from 'kysely';
import { CatalogError, guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import { assertValidName } from './names.js';
import { type Page, type ProjectScope, pageOf } from './page.js';
import type { CatalogDb, WorkloadsTable, WorkloadVmsTable } from './schema.js';
import { type IsoTime, isoNow, isoPlus } from './time.js';

export type Workload = Selectable<WorkloadsTable>;

/** A VM in a workload, named the way its host knows it (host + libvirt domain UUID). */
export interface WorkloadVm extends Omit<Selectable<WorkloadVmsTable>, 'excluded_disks'> {
  /** Target devs (vda, sdb...) not backed up. */
  excluded_disks: string[];
}

/** The policy part of a workload, as callers set it. */
export interface WorkloadPolicy {
  schedule_cron?: string | null;
  schedule_timezone?: string | null;
  schedule_paused?: boolean;
  retention_keep_count?: number | null;
  retention_keep_days?: number | null;
  full_every?: number | null;
}

export interface NewWorkload extends WorkloadPolicy {
  projectId: string;
  ownerUserId?: string | null;
  name: string;
  description?: string;
  targetId?: string | null;
}

function policyColumns(p: WorkloadPolicy): Updateable<WorkloadsTable> {
  const out: Updateable<WorkloadsTable> = {};
  if (p.schedule_cron !== undefined) out.schedule_cron = p.schedule_cron;
  if (p.schedule_timezone !== undefined) out.schedule_timezone = p.schedule_timezone;
  if (p.schedule_paused !== undefined) out.schedule_paused = p.schedule_paused ? 1 : 0;
  if (p.retention_keep_count !== undefined) out.retention_keep_count = p.retention_keep_count;
  if (p.retention_keep_days !== undefined) out.retention_keep_days = p.retention_keep_days;
  if (p.full_every !== undefined) out.full_every = p.full_every;
  return out;
}

export async function createWorkload(db: CatalogDb, input: NewWorkload): Promise<Workload> {
  assertValidName('workload', input.name);
  const now = isoNow();
  const id = newId();
  await guardWrite(`workload ${input.name}`, () =>
    db
      .insertInto('workloads')
      .values({
        id,
        project_id: input.projectId,
        owner_user_id: input.ownerUserId ?? null,
        name: input.name,
        description: input.description ?? '',
        target_id: input.targetId ?? null,
        schedule_cron: null,
        schedule_timezone: null,
        retention_keep_count: null,
        retention_keep_days: null,
        full_every: null,
        locked_by_job_id: null,
        lock_expires_at: null,
        created_at: now,
        updated_at: now,
        ...(policyColumns(input) as object),
      })
      .execute(),
  );
  return getWorkload(db, id);
}

export async function getWorkload(db: CatalogDb, id: string): Promise<Workload> {
  const row = await db.selectFrom('workloads').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('workload', id);
  return row;
}

export async function listWorkloads(
  db: CatalogDb,
  scope: ProjectScope = null,
  page?: Page,
): Promise<Workload[]> {
  if (scope !== null && scope.length === 0) return [];
  const { limit, offset } = pageOf(page);
  let q = db.selectFrom('workloads').selectAll().orderBy('name').orderBy('id').limit(limit).offset(offset);
  if (scope !== null) q = q.where('project_id', 'in', [...scope]);
  return q.execute();
}

export async function updateWorkload(
  db: CatalogDb,
  id: string,
  patch: WorkloadPolicy & {
    name?: string;
    description?: string;
    targetId?: string | null;
    ownerUserId?: string | null;
  },
): Promise<Workload> {
  if (patch.name !== undefined) assertValidName('workload', patch.name);
  const set: Updateable<WorkloadsTable> = { ...policyColumns(patch), updated_at: isoNow() };
  if (patch.name !== undefined) set.name = patch.name;
  if (patch.description !== undefined) set.description = patch.description;
  if (patch.targetId !== undefined) set.target_id = patch.targetId;
  if (patch.ownerUserId !== undefined) set.owner_user_id = patch.ownerUserId;
  const row = await guardWrite(`workload ${patch.name ?? id}`, () =>
    db.updateTable('workloads').set(set).where('id', '=', id).returningAll().executeTakeFirst(),
  );
  if (!row) throw notFound('workload', id);
  return row;
}

/** Deletes the workload with its VM list and snapshot records (not the data on the target). */
export async function deleteWorkload(db: CatalogDb, id: string): Promise<void> {
  const res = await guardWrite(`workload ${id}`, () =>
    db.deleteFrom('workloads').where('id', '=', id).executeTakeFirst(),
  );
  if (res.numDeletedRows === 0n) throw notFound('workload', id);
}

function toWorkloadVm(row: Selectable<WorkloadVmsTable>): WorkloadVm {
  return { ...row, excluded_disks: parseJson<string[]>(row.excluded_disks, []) };
}

/** CATALOG_CONFLICT when the VM already belongs to a workload (this one or another). */
export async function addWorkloadVm(
  db: CatalogDb,
  workloadId: string,
  vm: { hostId: string; domainUuid: string; name: string; excludedDisks?: string[] },
): Promise<WorkloadVm> {
  const row = {
    id: newId(),
    workload_id: workloadId,
    host_id: vm.hostId,
    domain_uuid: vm.domainUuid.toLowerCase(),
    name: vm.name,
    excluded_disks: toJson(vm.excludedDisks ?? []),
    created_at: isoNow(),
  };
  await guardWrite(`VM ${vm.domainUuid} on host ${vm.hostId}`, () =>
    db.insertInto('workload_vms').values(row).execute(),
  );
  return toWorkloadVm(row);
}

export async function listWorkloadVms(db: CatalogDb, workloadId: string): Promise<WorkloadVm[]> {
  const rows = await db
    .selectFrom('workload_vms')
    .selectAll()
    .where('workload_id', '=', workloadId)
    .orderBy('name')
    .orderBy('id')
    .execute();
  return rows.map(toWorkloadVm);
}

export async function findWorkloadVm(
  db: CatalogDb,
  hostId: string,
  domainUuid: string,
): Promise<WorkloadVm | undefined> {
  const row = await db
    .selectFrom('workload_vms')
    .selectAll()
    .where('host_id', '=', hostId)
    .where('domain_uuid', '=', domainUuid.toLowerCase())
    .executeTakeFirst();
  return row && toWorkloadVm(row);
}

export async function setWorkloadVmExcludedDisks(
  db: CatalogDb,
  id: string,
  excluded: string[],
): Promise<WorkloadVm> {
  const row = await db
    .updateTable('workload_vms')
    .set({ excluded_disks: toJson(excluded) })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw notFound('workload VM', id);
  return toWorkloadVm(row);
}

export async function removeWorkloadVm(db: CatalogDb, id: string): Promise<void> {
  const res = await db.deleteFrom('workload_vms').where('id', '=', id).executeTakeFirst();
  if (res.numDeletedRows === 0n) throw notFound('workload VM', id);
}

/**
 * Takes (or renews) the workload's lock for a job, in one conditional UPDATE: free, expired, or
 * already ours. CATALOG_LOCKED when another job holds a live lock. The lease protects against a
 * controller that died holding it.
 */
export async function lockWorkload(
  db: CatalogDb,
  workloadId: string,
  jobId: string,
  leaseMs: number,
  now: IsoTime = isoNow(),
): Promise<Workload> {
  const row = await db
    .updateTable('workloads')
    .set({ locked_by_job_id: jobId, lock_expires_at: isoPlus(leaseMs, now) })
    .where('id', '=', workloadId)
    .where((eb) =>
      eb.or([
        eb('locked_by_job_id', 'is', null),
        eb('locked_by_job_id', '=', jobId),
        eb('lock_expires_at', 'is', null),
        eb('lock_expires_at', '<', now),
      ]),
    )
    .returningAll()
    .executeTakeFirst();
  if (row) return row;
  const current = await getWorkload(db, workloadId);
  throw new CatalogError(
    'CATALOG_LOCKED',
    `workload ${current.name} is busy with job ${current.locked_by_job_id}`,
    {
      details: { workloadId, jobId: current.locked_by_job_id, until: current.lock_expires_at },
    },
  );
}

/** Releases the lock if this job holds it; returns whether it did. */
export async function unlockWorkload(db: CatalogDb, workloadId: string, jobId: string): Promise<boolean> {
  const res = await db
    .updateTable('workloads')
    .set({ locked_by_job_id: null, lock_expires_at: null })
    .where('id', '=', workloadId)
    .where('locked_by_job_id', '=', jobId)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}
