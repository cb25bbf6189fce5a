import type { FastifyServerOptions } from 'fastify';
import type { CatalogDb } from '../catalog/schema.js';

/**
 * What the API is built from. The controller adds its services here (workload, snapshot and
 * restore orchestration, scheduler...) as it grows; route modules take what they need.
 */
export interface ApiServices {
  catalog: CatalogDb;
  /** Reported by /v1/health. */
  version?: string;
  /** Fastify/pino logger settings; off unless given. */
  logger?: FastifyServerOptions['logger'];
}
