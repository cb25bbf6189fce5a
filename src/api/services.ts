import type { FastifyServerOptions } from 'fastify';
import type { CatalogDb } from '../catalog/schema.js';
import type { ControllerContext } from '../controller/context.js';
import type { TaskDispatcher } from '../controller/task-dispatch.js';
import type { HostInventory } from '../datamover/host-inventory.js';

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
  /** The controller's task plumbing; when present the datamover protocol (/v1/datamover/...) is served. */
  taskDispatch?: TaskDispatcher;
  /** Host inventories; when present /v1/hosts/:id/vms, /networks and /storage are served. */
  hostInventory?: { inventory(hostId: string, options?: { refresh?: boolean }): Promise<HostInventory> };
  /** Workloads, snapshots, restores and import; when present their routes are served. */
  controller?: ControllerContext;
}
