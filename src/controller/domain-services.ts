import { hostname } from 'node:os';
import type { CatalogDb } from '../catalog/schema.js';
import type { ControllerContext, InventoryVm } from './context.js';
import { registerDomainHooks } from './domain-hooks.js';
import { TargetAccess } from './target-access.js';
import type { TaskHookRegistry } from './task-hooks.js';

export interface DomainServicesOptions {
  /** Who this installation is on shared targets (lease owner); default `lifeboat@<hostname>`. */
  installationId?: string;
  /** The cloud's VM lists (LibvirtCloud.vms); hosts it cannot ask count as unknown, not empty. */
  vms?: (hostId: string) => Promise<InventoryVm[]>;
  /** The task plumbing: its hooks settle snapshots and restores, its wakeup tells datamovers. */
  hooks?: TaskHookRegistry;
  wake?: (jobId: string) => void;
  defaultStorageDir?: string;
}

/**
 * The controller's domain services (workloads, snapshots, restores, import) as one context, wired
 * into the task plumbing. `lifeboat serve` makes one and hands it to the API as `controller`.
 */
export function createDomainServices(db: CatalogDb, options: DomainServicesOptions = {}): ControllerContext {
  const vms = options.vms;
  const ctx: ControllerContext = {
    db,
    installation: { installationId: options.installationId ?? `lifeboat@${hostname()}`, host: hostname() },
    targets: new TargetAccess(db, {
      installationId: options.installationId ?? `lifeboat@${hostname()}`,
      host: hostname(),
    }),
    inventory: vms ? { listVms: (hostId) => vms(hostId).catch(() => undefined) } : undefined,
    defaultStorageDir: options.defaultStorageDir ?? '/var/lib/libvirt/images/lifeboat',
    wake: options.wake,
  };
  if (options.hooks) registerDomainHooks(options.hooks, ctx);
  return ctx;
}
