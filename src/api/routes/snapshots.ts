import { z } from 'zod';
import { getJob } from '../../catalog/jobs.js';
import {
  getSnapshot,
  listSnapshotDisks,
  listSnapshots,
  listSnapshotVms,
  type Snapshot,
} from '../../catalog/snapshots.js';
import { SNAPSHOT_STATUSES } from '../../catalog/status.js';
import { listTasks } from '../../catalog/tasks.js';
import { getWorkload } from '../../catalog/workloads.js';
import { generateRestorePlan } from '../../controller/restore-plan.js';
import { deleteSnapshot } from '../../controller/retention-delete.js';
import { cancelSnapshot, startSnapshot } from '../../controller/snapshots.js';
import { apiActor } from '../audit-actor.js';
import { type AuthContext, assertProjectVisible } from '../auth.js';
import type { ApiRouter } from '../router.js';
import { idParams, jobOut, listOf } from '../schemas.js';
import type { ApiServices } from '../services.js';
import { controllerOf } from './controller-access.js';
import { visibleWorkload } from './workloads.js';

const snapshotOut = z.looseObject({
  id: z.uuid(),
  workload_id: z.uuid(),
  job_id: z.uuid().nullable(),
  type: z.enum(['full', 'incremental']),
  parent_id: z.uuid().nullable(),
  status: z.enum(SNAPSHOT_STATUSES),
  progress_done: z.number(),
  progress_total: z.number(),
  error: z.string().nullable(),
});

export async function visibleSnapshot(
  services: ApiServices,
  auth: AuthContext,
  id: string,
): Promise<Snapshot> {
  const snap = await getSnapshot(services.catalog, id);
  const w = await getWorkload(services.catalog, snap.workload_id);
  assertProjectVisible(auth, w.project_id, 'snapshot', id);
  return snap;
}

/** A snapshot being made reports its tasks' progress live (bytes done over all its VMs). */
async function withLiveProgress(services: ApiServices, snap: Snapshot): Promise<Snapshot> {
  if (snap.status !== 'creating' || !snap.job_id) return snap;
  const tasks = await listTasks(services.catalog, snap.job_id);
  return {
    ...snap,
    progress_done: tasks.reduce((n, t) => n + Number(t.progress_done), 0),
    progress_total: tasks.reduce((n, t) => n + Number(t.progress_total), 0),
  };
}

export function registerSnapshotRoutes(router: ApiRouter): void {
  router.add({
    method: 'POST',
    url: '/v1/workloads/:id/snapshots',
    summary: 'Snapshot every VM of the workload (incremental once a full exists; full=true forces a full)',
    tag: 'snapshots',
    access: 'user',
    params: idParams,
    body: z.strictObject({ full: z.boolean().optional(), name: z.string().max(200).optional() }),
    status: 202,
    response: z.object({ snapshot: snapshotOut, job: jobOut }),
    handler: async ({ auth, params, body, services }) => {
      await visibleWorkload(services, auth, params.id);
      return startSnapshot(controllerOf(services), apiActor(auth), params.id, body);
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/snapshots',
    summary: 'Snapshots of a workload, oldest first (or of every visible workload)',
    tag: 'snapshots',
    access: 'user',
    query: z.strictObject({ workload_id: z.uuid().optional(), status: z.enum(SNAPSHOT_STATUSES).optional() }),
    response: listOf(snapshotOut),
    handler: async ({ auth, query, services }) => {
      if (query.workload_id) {
        await visibleWorkload(services, auth, query.workload_id);
        const items = await listSnapshots(services.catalog, {
          workloadId: query.workload_id,
          status: query.status,
        });
        return { items: await Promise.all(items.map((s) => withLiveProgress(services, s))) };
      }
      let q = services.catalog
        .selectFrom('snapshots')
        .innerJoin('workloads', 'workloads.id', 'snapshots.workload_id')
        .select('snapshots.id');
      if (auth.scope !== null) {
        if (auth.scope.length === 0) return { items: [] };
        q = q.where('workloads.project_id', 'in', [...auth.scope]);
      }
      if (query.status) q = q.where('snapshots.status', '=', query.status);
      const ids = await q.orderBy('snapshots.created_at').limit(1000).execute();
      const items = [];
      for (const { id } of ids)
        items.push(await withLiveProgress(services, await getSnapshot(services.catalog, id)));
      return { items };
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/snapshots/:id',
    summary: 'One snapshot with its VMs and their disks',
    tag: 'snapshots',
    access: 'user',
    params: idParams,
    response: snapshotOut,
    handler: async ({ auth, params, services }) => {
      const snap = await withLiveProgress(services, await visibleSnapshot(services, auth, params.id));
      const vms = [];
      for (const vm of await listSnapshotVms(services.catalog, snap.id)) {
        vms.push({ ...vm, disks: await listSnapshotDisks(services.catalog, { snapshotVmId: vm.id }) });
      }
      const job = snap.job_id
        ? await getJob(services.catalog, snap.job_id).catch(() => undefined)
        : undefined;
      return { ...snap, vms, job: job ?? null };
    },
  });

  router.add({
    method: 'DELETE',
    url: '/v1/snapshots/:id',
    summary: 'Delete a snapshot; data later snapshots need is merged into them (directory targets) or kept',
    tag: 'snapshots',
    access: 'user',
    params: idParams,
    status: 202,
    response: z.object({ job: jobOut }),
    handler: async ({ auth, params, services }) => {
      await visibleSnapshot(services, auth, params.id);
      const { job } = await deleteSnapshot(controllerOf(services), apiActor(auth), params.id);
      return { job };
    },
  });

  router.add({
    method: 'POST',
    url: '/v1/snapshots/:id/cancel',
    summary: 'Stop a snapshot being made; it ends failed and leaves nothing on the target',
    tag: 'snapshots',
    access: 'user',
    params: idParams,
    status: 202,
    response: jobOut,
    handler: async ({ auth, params, services }) => {
      await visibleSnapshot(services, auth, params.id);
      return cancelSnapshot(controllerOf(services), apiActor(auth), params.id);
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/snapshots/:id/restore-plan',
    summary: 'A complete restore plan (everything as it was) to edit and submit',
    tag: 'restores',
    access: 'user',
    params: idParams,
    query: z.strictObject({ kind: z.enum(['one_click', 'selective', 'in_place']).default('selective') }),
    handler: async ({ auth, params, query, services }) => {
      await visibleSnapshot(services, auth, params.id);
      const ctx = controllerOf(services);
      return generateRestorePlan(services.catalog, params.id, {
        kind: query.kind,
        defaultStorageDir: ctx.defaultStorageDir,
      });
    },
  });
}
