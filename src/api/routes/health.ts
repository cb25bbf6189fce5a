import { sql } from 'kysely';
import { z } from 'zod';
import { catalogDialect } from '../../catalog/open.js';
import type { ApiRouter } from '../router.js';

export function registerHealthRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/health',
    summary: 'Liveness and catalog reachability (no authentication)',
    tag: 'system',
    access: 'public',
    response: z.object({
      status: z.literal('ok'),
      version: z.string(),
      catalog: z.enum(['sqlite', 'postgres']),
    }),
    handler: async ({ services }) => {
      await sql`select 1`.execute(services.catalog);
      return {
        status: 'ok' as const,
        version: services.version ?? 'unknown',
        catalog: catalogDialect(services.catalog),
      };
    },
  });
}
