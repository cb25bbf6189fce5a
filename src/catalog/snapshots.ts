import type { Selectable, Updateable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import { appendToJsonArray } from './json-append.js';
import type { CatalogDb, SnapshotDisksTable, SnapshotsTable, SnapshotVmsTable } from './schema.js';
import { allowedFrom, badTransition, type SnapshotStatus } from './status.js';
import { isoNow } from './time.js';

export interface Snapshot extends Omit<Selectable<SnapshotsTable>, 'warnings'> {
  warnings: string[];
}
export type SnapshotType = Snapshot['type'];

export interface SnapshotVm extends Omit<Selectable<SnapshotVmsTable>, 'definition'> {
  definition: Record<string, unknown>;
}

export interface SnapshotDisk extends Omit<Selectable<SnapshotDisksTable>, 'warnings'> {
  warnings: string[];
}

const toSnapshot = (r: Selectable<SnapshotsTable>): Snapshot => ({
  ...r,
  warnings: parseJson<string[]>(r.warnings, []),
});
const toVm = (r: Selectable<SnapshotVmsTable>): SnapshotVm => ({
  ...r,
  definition: parseJson(r.definition, {}),
});
const toDisk = (r: Selectable<SnapshotDisksTable>): SnapshotDisk => ({
  ...r,
  warnings: parseJson<string[]>(r.warnings, []),
});

export async function createSnapshot(
  db: CatalogDb,
  input: {
    workloadId: string;
    type: SnapshotType;
    parentId?: string | null;
    jobId?: string | null;
    name?: string;
    targetId?: string | null;
    targetPath?: string | null;
  },
): Promise<Snapshot> {
  const id = newId();
  await guardWrite('snapshot', () =>
    db
      .insertInto('snapshots')
      .values({
        id,
        workload_id: input.workloadId,
        job_id: input.jobId ?? null,
        type: input.type,
        parent_id: input.parentId ?? null,
        status: 'creating',
        name: input.name ?? '',
        target_id: input.targetId ?? null,
        target_path: input.targetPath ?? null,
        error: null,
        created_at: isoNow(),
        started_at: null,
        finished_at: null,
      })
      .execute(),
  );
  return getSnapshot(db, id);
}

export async function getSnapshot(db: CatalogDb, id: string): Promise<Snapshot> {
  const row = await db.selectFrom('snapshots').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('snapshot', id);
  return toSnapshot(row);
}

/** Oldest first: the order of the chain. */
export async function listSnapshots(
  db: CatalogDb,
  filter: { workloadId: string; status?: SnapshotStatus },
): Promise<Snapshot[]> {
  let q = db.selectFrom('snapshots').selectAll().where('workload_id', '=', filter.workloadId);
  if (filter.status) q = q.where('status', '=', filter.status);
  return (await q.orderBy('created_at').orderBy('id').execute()).map(toSnapshot);
}

/** The parent for the next incremental: the newest available snapshot of the workload. */
export async function latestAvailableSnapshot(
  db: CatalogDb,
  workloadId: string,
): Promise<Snapshot | undefined> {
  const row = await db
    .selectFrom('snapshots')
    .selectAll()
    .where('workload_id', '=', workloadId)
    .where('status', '=', 'available')
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .executeTakeFirst();
  return row && toSnapshot(row);
}

/** A race-free status change: only from the statuses status.ts allows; CATALOG_BAD_TRANSITION otherwise. */
export async function setSnapshotStatus(
  db: CatalogDb,
  id: string,
  to: SnapshotStatus,
  extra: { error?: string | null; sizeBytes?: number; storedBytes?: number } = {},
): Promise<Snapshot> {
  const now = isoNow();
  const set: Updateable<SnapshotsTable> = { status: to };
  if (extra.error !== undefined) set.error = extra.error;
  if (extra.sizeBytes !== undefined) set.size_bytes = extra.sizeBytes;
  if (extra.storedBytes !== undefined) set.stored_bytes = extra.storedBytes;
  if (to === 'available' || to === 'failed') set.finished_at = now;
  const row = await db
    .updateTable('snapshots')
    .set(set)
    .where('id', '=', id)
    .where('status', 'in', allowedFrom('snapshot', to))
    .returningAll()
    .executeTakeFirst();
  if (row) return toSnapshot(row);
  throw badTransition('snapshot', (await getSnapshot(db, id)).status, to);
}

export async function setSnapshotProgress(
  db: CatalogDb,
  id: string,
  done: number,
  total: number,
): Promise<void> {
  await db
    .updateTable('snapshots')
    .set((eb) => ({
      progress_done: done,
      progress_total: total,
      started_at: eb.fn.coalesce('started_at', eb.val(isoNow())),
    }))
    .where('id', '=', id)
    .execute();
}

export async function addSnapshotWarning(db: CatalogDb, id: string, warning: string): Promise<void> {
  await appendToJsonArray(db, 'snapshots', 'warnings', id, warning);
}

export async function deleteSnapshot(db: CatalogDb, id: string): Promise<void> {
  const res = await db.deleteFrom('snapshots').where('id', '=', id).executeTakeFirst();
  if (res.numDeletedRows === 0n) throw notFound('snapshot', id);
}

export async function addSnapshotVm(
  db: CatalogDb,
  input: {
    snapshotId: string;
    workloadVmId?: string | null;
    hostId?: string | null;
    domainUuid: string;
    name: string;
    definition?: Record<string, unknown>;
  },
): Promise<SnapshotVm> {
  const row = {
    id: newId(),
    snapshot_id: input.snapshotId,
    workload_vm_id: input.workloadVmId ?? null,
    host_id: input.hostId ?? null,
    domain_uuid: input.domainUuid.toLowerCase(),
    name: input.name,
    definition: toJson(input.definition ?? {}),
    created_at: isoNow(),
  };
  await guardWrite('snapshot VM', () => db.insertInto('snapshot_vms').values(row).execute());
  return toVm(row);
}

export async function listSnapshotVms(db: CatalogDb, snapshotId: string): Promise<SnapshotVm[]> {
  const rows = await db
    .selectFrom('snapshot_vms')
    .selectAll()
    .where('snapshot_id', '=', snapshotId)
    .orderBy('name')
    .execute();
  return rows.map(toVm);
}

export async function addSnapshotDisk(
  db: CatalogDb,
  input: {
    snapshotVmId: string;
    targetDev: string;
    type: SnapshotType;
    targetPath?: string | null;
    virtualSize?: number;
    checkpointName?: string | null;
  },
): Promise<SnapshotDisk> {
  const vm = await db
    .selectFrom('snapshot_vms')
    .select('snapshot_id')
    .where('id', '=', input.snapshotVmId)
    .executeTakeFirst();
  if (!vm) throw notFound('snapshot VM', input.snapshotVmId);
  const id = newId();
  await guardWrite(`disk ${input.targetDev}`, () =>
    db
      .insertInto('snapshot_disks')
      .values({
        id,
        snapshot_id: vm.snapshot_id,
        snapshot_vm_id: input.snapshotVmId,
        target_dev: input.targetDev,
        type: input.type,
        target_path: input.targetPath ?? null,
        virtual_size: input.virtualSize ?? 0,
        checkpoint_name: input.checkpointName ?? null,
        status: 'creating',
        created_at: isoNow(),
        finished_at: null,
      })
      .execute(),
  );
  return (await listSnapshotDisks(db, { snapshotVmId: input.snapshotVmId })).find((d) => d.id === id)!;
}

export async function updateSnapshotDisk(
  db: CatalogDb,
  id: string,
  patch: {
    type?: SnapshotType;
    status?: SnapshotDisk['status'];
    targetPath?: string | null;
    virtualSize?: number;
    storedBytes?: number;
    checkpointName?: string | null;
  },
): Promise<void> {
  const set: Updateable<SnapshotDisksTable> = {};
  if (patch.type !== undefined) set.type = patch.type;
  if (patch.status !== undefined) {
    set.status = patch.status;
    if (patch.status !== 'creating') set.finished_at = isoNow();
  }
  if (patch.targetPath !== undefined) set.target_path = patch.targetPath;
  if (patch.virtualSize !== undefined) set.virtual_size = patch.virtualSize;
  if (patch.storedBytes !== undefined) set.stored_bytes = patch.storedBytes;
  if (patch.checkpointName !== undefined) set.checkpoint_name = patch.checkpointName;
  const res = await db.updateTable('snapshot_disks').set(set).where('id', '=', id).executeTakeFirst();
  if (res.numUpdatedRows === 0n) throw notFound('snapshot disk', id);
}

/** e.g. "checkpoint missing: fell back to a full backup". */
export async function addSnapshotDiskWarning(db: CatalogDb, id: string, warning: string): Promise<void> {
  await appendToJsonArray(db, 'snapshot_disks', 'warnings', id, warning);
}

export async function listSnapshotDisks(
  db: CatalogDb,
  filter: { snapshotId?: string; snapshotVmId?: string },
): Promise<SnapshotDisk[]> {
  let q = db.selectFrom('snapshot_disks').selectAll();
  if (filter.snapshotId) q = q.where('snapshot_id', '=', filter.snapshotId);
  if (filter.snapshotVmId) q = q.where('snapshot_vm_id', '=', filter.snapshotVmId);
  return (await q.orderBy('target_dev').execute()).map(toDisk);
}
