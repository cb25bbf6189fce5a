import { type AuditActor, recordAudit } from '../catalog/audit.js';
import { CatalogError, guardWrite } from '../catalog/errors.js';
import { findHostByName } from '../catalog/hosts.js';
import { getProject } from '../catalog/projects.js';
import { addSnapshotVm } from '../catalog/snapshots.js';
import { addWorkloadVm, findWorkloadVm } from '../catalog/workloads.js';
import { snapshotPrefix } from '../target/layout.js';
import { scanTarget, type WorkloadScan } from '../target/scan.js';
import type { ControllerContext } from './context.js';
import { ControllerError } from './errors.js';
import { recordVmFromMeta } from './snapshot-settle.js';
import { writeWorkloadDocument } from './workload-doc.js';
import { getWorkloadDetail, type WorkloadDetail } from './workloads.js';

/** A workload found on a target that this catalog does not know. */
export interface ImportableWorkload {
  id: string;
  name: string;
  description: string;
  /** Who it belonged to where it was made (labels of workload.json). */
  owner: string | null;
  project: string | null;
  labels: Record<string, string>;
  vms: Array<{ id: string; name: string }>;
  snapshot_count: number;
  last_snapshot_at: string | null;
  /** Snapshots with a broken chain are not imported: they could not be restored. */
  problems: string[];
}

function describe(w: WorkloadScan): ImportableWorkload {
  const healthy = w.snapshots.filter((s) => s.chainHealthy);
  const labels = w.workload?.labels ?? {};
  return {
    id: w.id,
    name: w.workload?.name ?? w.id,
    description: w.workload?.description ?? '',
    owner: labels['owner.name'] ?? labels['owner.id'] ?? null,
    project: labels['project.name'] ?? labels['project.id'] ?? null,
    labels,
    vms: (w.workload?.vms ?? []).map((v) => ({ id: v.id, name: v.name })),
    snapshot_count: healthy.length,
    last_snapshot_at: healthy.length > 0 ? healthy[healthy.length - 1].finishedAt : null,
    problems: [...w.problems, ...w.snapshots.flatMap((s) => s.problems.map((p) => `snapshot ${s.id}: ${p}`))],
  };
}

async function knownIds(ctx: ControllerContext, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await ctx.db.selectFrom('workloads').select('id').where('id', 'in', ids).execute();
  return new Set(rows.map((r) => r.id));
}

/** The workloads on a target that the catalog does not know: what a fresh installation can import. */
export async function listImportable(
  ctx: ControllerContext,
  targetId: string,
): Promise<ImportableWorkload[]> {
  const target = await ctx.targets.target(targetId);
  const scan = await scanTarget(target.backend);
  const known = await knownIds(
    ctx,
    scan.workloads.map((w) => w.id),
  );
  return scan.workloads.filter((w) => !known.has(w.id) && w.workload !== null).map(describe);
}

export interface ImportRequest {
  targetId: string;
  /** Workload ids to import; every importable one when absent. */
  workloadIds?: string[];
  projectId: string;
  ownerUserId?: string | null;
}

/**
 * Rebuilds the catalog records of workloads from a target alone: the workload (same id as its
 * folder), its VMs (matched to registered hosts by the host names the target recorded), every
 * committed snapshot with a healthy chain, with its VMs and disks. Then workload.json is rewritten
 * with the new project and owner. After this every imported snapshot restores like a native one.
 */
export async function importWorkloads(
  ctx: ControllerContext,
  actor: AuditActor,
  req: ImportRequest,
): Promise<Array<WorkloadDetail & { imported_snapshots: number; notes: string[] }>> {
  await getProject(ctx.db, req.projectId);
  const target = await ctx.targets.target(req.targetId);
  const scan = await scanTarget(target.backend);
  const known = await knownIds(
    ctx,
    scan.workloads.map((w) => w.id),
  );
  const wanted =
    req.workloadIds ?? scan.workloads.filter((w) => !known.has(w.id) && w.workload).map((w) => w.id);
  const out: Array<WorkloadDetail & { imported_snapshots: number; notes: string[] }> = [];
  for (const id of wanted) {
    const w = scan.workloads.find((x) => x.id === id);
    if (!w?.workload) throw new CatalogError('CATALOG_NOT_FOUND', `workload ${id} is not on this target`);
    if (known.has(id)) {
      throw new ControllerError(
        'CONTROLLER_ALREADY_IMPORTED',
        `workload ${w.workload.name} (${id}) is already in the catalog`,
      );
    }
    const result = await importOne(ctx, req, w);
    await recordAudit(ctx.db, actor, {
      action: 'workload.import',
      resourceType: 'workload',
      resourceId: id,
      projectId: req.projectId,
      details: { targetId: req.targetId, snapshots: result.imported_snapshots, from: w.workload.labels },
    });
    out.push(result);
  }
  return out;
}

async function importOne(ctx: ControllerContext, req: ImportRequest, w: WorkloadScan) {
  const doc = w.workload!;
  const now = new Date().toISOString();
  const notes: string[] = [];
  await guardWrite(`workload ${doc.name}`, () =>
    ctx.db
      .insertInto('workloads')
      .values({
        id: w.id,
        project_id: req.projectId,
        owner_user_id: req.ownerUserId ?? null,
        name: doc.name,
        description: doc.description,
        target_id: req.targetId,
        schedule_cron: null,
        schedule_timezone: null,
        retention_keep_count: null,
        retention_keep_days: null,
        full_every: doc.policy?.fullEvery ?? null,
        locked_by_job_id: null,
        lock_expires_at: null,
        created_at: doc.createdAt,
        updated_at: now,
      })
      .execute(),
  );
  const hostOfVm = new Map<string, string>();
  for (const vm of doc.vms) {
    const hostName = doc.labels[`vm.${vm.id}.host`];
    const host = hostName ? await findHostByName(ctx.db, hostName) : undefined;
    const uuid = (vm.uuid ?? vm.id).toLowerCase();
    if (!host) {
      notes.push(
        `VM ${vm.name}: its host ${hostName ?? '(unknown)'} is not registered here; add it to the workload later`,
      );
      continue;
    }
    if (await findWorkloadVm(ctx.db, host.id, uuid)) {
      notes.push(`VM ${vm.name} already belongs to another workload here: not added`);
      continue;
    }
    const excluded = doc.labels[`vm.${vm.id}.excluded`];
    await addWorkloadVm(ctx.db, w.id, {
      hostId: host.id,
      domainUuid: uuid,
      name: vm.name,
      excludedDisks: excluded ? excluded.split(',') : [],
    });
    hostOfVm.set(vm.id, host.id);
  }
  const target = await ctx.targets.target(req.targetId);
  const imported = new Set<string>();
  // Oldest first, so every parent row exists before its children refer to it.
  for (const s of w.snapshots) {
    if (!s.chainHealthy) {
      notes.push(`snapshot ${s.id} not imported: ${s.problems.join('; ')}`);
      continue;
    }
    await ctx.db
      .insertInto('snapshots')
      .values({
        id: s.id,
        workload_id: w.id,
        job_id: null,
        type: s.type,
        parent_id: s.parentSnapshotId && imported.has(s.parentSnapshotId) ? s.parentSnapshotId : null,
        status: 'available',
        name: '',
        target_id: req.targetId,
        target_path: snapshotPrefix(w.id, s.id),
        size_bytes: s.sizes.virtualBytes,
        stored_bytes: s.sizes.storedBytes,
        warnings: JSON.stringify(s.warnings.map((x) => x.message)),
        error: null,
        created_at: s.startedAt,
        started_at: s.startedAt,
        finished_at: s.finishedAt,
      })
      .execute();
    for (const v of s.vms) {
      const meta = await target.readVm(w.id, s.id, v.id);
      if (!meta) continue;
      const row = await addSnapshotVm(ctx.db, {
        snapshotId: s.id,
        hostId: hostOfVm.get(v.id) ?? null,
        domainUuid: meta.uuid,
        name: meta.name,
      });
      await recordVmFromMeta(ctx, row.id, meta);
    }
    imported.add(s.id);
  }
  await writeWorkloadDocument(ctx, w.id);
  return { ...(await getWorkloadDetail(ctx, w.id)), imported_snapshots: imported.size, notes };
}
