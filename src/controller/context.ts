import type { CatalogDb } from '../catalog/schema.js';
import type { LeaseOwner } from '../target/lease.js';
import type { TargetAccess } from './target-access.js';

/** One VM as its hypervisor reports it now. */
export interface InventoryVm {
  uuid: string;
  name: string;
  state: string;
}

/**
 * What the controller may ask a cloud about its VMs (src/cloud/* implements it). Optional: without it
 * VMs must be named by UUID and "do the originals still exist?" is left to the datamover, which never
 * overwrites a domain that exists.
 */
export interface VmInventory {
  /** The VMs of a host; undefined when the host cannot be asked right now. */
  listVms(hostId: string): Promise<InventoryVm[] | undefined>;
}

/** Everything the controller's services work with. One per controller process. */
export interface ControllerContext {
  db: CatalogDb;
  /** Who this installation is when it takes workload leases on targets. */
  installation: LeaseOwner;
  targets: TargetAccess;
  inventory?: VmInventory;
  /** Where restored disks go when a plan does not say and the host advertises no `storageDir`. */
  defaultStorageDir: string;
  /** How long the catalog lock of a workload lasts without renewal (default 6 h). */
  lockLeaseMs?: number;
  /** Tells waiting datamovers that new tasks are queued (the task plumbing's wakeup). */
  wake?: (jobId: string) => void;
}

export const DEFAULT_LOCK_LEASE_MS = 6 * 3600_000;
