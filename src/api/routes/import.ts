import { z } from 'zod';
import { getProject } from '../../catalog/projects.js';
import { importWorkloads, listImportable } from '../../controller/import.js';
import { apiActor } from '../audit-actor.js';
import type { ApiRouter } from '../router.js';
import type { ApiServices } from '../services.js';
import { controllerOf } from './controller-access.js';
import { userIdOf } from './workloads.js';

async function targetIdOf(services: ApiServices, given: string | undefined, projectId?: string) {
  if (given) return given;
  const ctx = controllerOf(services);
  if (projectId) return ctx.targets.defaultTargetId(projectId);
  const rows = await services.catalog.selectFrom('targets').select('id').execute();
  if (rows.length === 1) return rows[0].id;
  return ctx.targets.defaultTargetId('');
}

/** Disaster recovery: workloads found on a target, brought into this catalog. Admins only. */
export function registerImportRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/import',
    summary: 'Workloads on a target that this catalog does not know (owner, VMs, snapshots)',
    tag: 'import',
    access: 'admin',
    query: z.strictObject({ target_id: z.uuid().optional() }),
    handler: async ({ query, services }) => {
      const targetId = await targetIdOf(services, query.target_id);
      return { target_id: targetId, items: await listImportable(controllerOf(services), targetId) };
    },
  });

  router.add({
    method: 'POST',
    url: '/v1/import',
    summary: 'Import workloads from a target (all, or the ones named) into a project, with a new owner',
    tag: 'import',
    access: 'admin',
    status: 201,
    body: z.strictObject({
      target_id: z.uuid().optional(),
      workload_ids: z.array(z.string().min(1).max(200)).max(1000).optional(),
      project_id: z.uuid(),
      owner: z.string().min(1).max(128).optional().describe('user id or name'),
    }),
    handler: async ({ auth, body, services }) => {
      await getProject(services.catalog, body.project_id);
      const targetId = await targetIdOf(services, body.target_id);
      const items = await importWorkloads(controllerOf(services), apiActor(auth), {
        targetId,
        workloadIds: body.workload_ids,
        projectId: body.project_id,
        ownerUserId: (await userIdOf(services, body.owner)) ?? auth.user.id,
      });
      return { items };
    },
  });
}
