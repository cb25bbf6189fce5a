import { z } from 'zod';
import { listAudit } from '../../catalog/audit.js';
import type { ApiRouter } from '../router.js';
import { auditOut, listOf, pageQuery } from '../schemas.js';

const isoTime = z.iso.datetime({ offset: true }).transform((t) => new Date(t).toISOString());

export function registerAuditRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/audit',
    summary: 'The audit log, newest first',
    tag: 'audit',
    access: 'admin',
    query: z.strictObject({
      project_id: z.uuid().optional(),
      user_id: z.uuid().optional(),
      action: z.string().max(64).optional(),
      resource_type: z.string().max(64).optional(),
      resource_id: z.string().max(64).optional(),
      since: isoTime.optional(),
      until: isoTime.optional(),
      ...pageQuery,
    }),
    response: listOf(auditOut),
    handler: async ({ query, services }) => {
      const { limit, offset, project_id, user_id, resource_type, resource_id, ...rest } = query;
      const items = await listAudit(
        services.catalog,
        {
          ...rest,
          scope: project_id ? [project_id] : null,
          actorUserId: user_id,
          resourceType: resource_type,
          resourceId: resource_id,
        },
        { limit, offset },
      );
      return { items };
    },
  });
}
