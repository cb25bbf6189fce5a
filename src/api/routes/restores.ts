import { z } from 'zod';
import { getRestore, listRestores } from '../../catalog/restores.js';
import { RESTORE_STATUSES } from '../../catalog/status.js';
import { startRestore } from '../../controller/restores.js';
import { apiActor } from '../audit-actor.js';
import { assertProjectVisible } from '../auth.js';
import type { ApiRouter } from '../router.js';
import { idParams, jobOut, listOf, pageQuery } from '../schemas.js';
import { controllerOf } from './controller-access.js';
import { visibleSnapshot } from './snapshots.js';

const restoreOut = z.looseObject({
  id: z.uuid(),
  project_id: z.uuid(),
  snapshot_id: z.uuid(),
  job_id: z.uuid().nullable(),
  kind: z.enum(['one_click', 'selective', 'in_place']),
  plan: z.record(z.string(), z.unknown()),
  status: z.enum(RESTORE_STATUSES),
  error: z.string().nullable(),
});

export function registerRestoreRoutes(router: ApiRouter): void {
  router.add({
    method: 'POST',
    url: '/v1/restores',
    summary: 'Restore a snapshot: one_click (as it was), selective (with a plan) or in_place',
    tag: 'restores',
    access: 'user',
    status: 202,
    body: z.strictObject({
      snapshot_id: z.uuid(),
      kind: z.enum(['one_click', 'selective', 'in_place']),
      plan: z.record(z.string(), z.unknown()).optional().describe('see GET /v1/snapshots/{id}/restore-plan'),
    }),
    response: z.object({ restore: restoreOut, job: jobOut }),
    handler: async ({ auth, body, services }) => {
      await visibleSnapshot(services, auth, body.snapshot_id);
      return startRestore(controllerOf(services), apiActor(auth), {
        snapshotId: body.snapshot_id,
        kind: body.kind,
        plan: body.plan,
      });
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/restores',
    summary: "Restores of the caller's projects, newest first",
    tag: 'restores',
    access: 'user',
    query: z.strictObject({ snapshot_id: z.uuid().optional(), ...pageQuery }),
    response: listOf(restoreOut),
    handler: async ({ auth, query, services }) => {
      if (query.snapshot_id) await visibleSnapshot(services, auth, query.snapshot_id);
      const items = await listRestores(
        services.catalog,
        { scope: auth.scope, snapshotId: query.snapshot_id },
        { limit: query.limit, offset: query.offset },
      );
      return { items };
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/restores/:id',
    summary: 'One restore',
    tag: 'restores',
    access: 'user',
    params: idParams,
    response: restoreOut,
    handler: async ({ auth, params, services }) => {
      const r = await getRestore(services.catalog, params.id);
      assertProjectVisible(auth, r.project_id, 'restore', params.id);
      return r;
    },
  });
}
