import { getHost } from '../../catalog/hosts.js';
import type { CatalogDb } from '../../catalog/schema.js';
import {
  collectHostInventory,
  type HostInventory,
  type InventoryNetwork,
  type InventoryStorage,
  type InventoryVm,
} from '../../datamover/host-inventory.js';
import { HOST_INVENTORY_TASK } from '../../datamover/task-handlers.js';
import { isLifeboatError } from '../../errors.js';
import type { LibvirtHypervisor } from '../../hypervisor/libvirt.js';
import { CloudError } from '../errors.js';

/**
 * Runs one task on a host's datamover and returns its result (the controller's TaskDispatcher is
 * one). Throws with a code ending in _TIMEOUT when the host did not answer in time.
 */
export interface RemoteTaskRunner {
  runTask(
    hostId: string,
    kind: string,
    payload: Record<string, unknown>,
    options: { timeoutMs: number },
  ): Promise<unknown>;
}

export interface LibvirtCloudOptions {
  /** Inventories younger than this are answered from memory (default 10 s). */
  cacheMs?: number;
  /** How long to wait for a remote host's `host.inventory` task (default 60 s). */
  inventoryTimeoutMs?: number;
}

/**
 * The standalone-KVM cloud driver: the registered hosts' VMs, networks and storage. The controller's
 * own host (the embedded datamover's) is asked directly through the hypervisor layer; any other host
 * gets a `host.inventory` task that its datamover runs, since only it can reach that libvirt.
 * Concurrent questions about one host share one collection.
 */
export class LibvirtCloud {
  private local: { hostId: string; hypervisor: LibvirtHypervisor } | undefined;
  private readonly cache = new Map<string, { at: number; inventory: HostInventory }>();
  private readonly inFlight = new Map<string, Promise<HostInventory>>();

  constructor(
    private readonly db: CatalogDb,
    private readonly tasks: RemoteTaskRunner,
    private readonly options: LibvirtCloudOptions = {},
  ) {}

  /** Names the host whose libvirt this process reaches itself. */
  setLocalHost(hostId: string, hypervisor: LibvirtHypervisor): void {
    this.local = { hostId, hypervisor };
  }

  get localHostId(): string | undefined {
    return this.local?.hostId;
  }

  async vms(hostId: string, options: { refresh?: boolean } = {}): Promise<InventoryVm[]> {
    return (await this.inventory(hostId, options)).vms;
  }

  async networks(hostId: string, options: { refresh?: boolean } = {}): Promise<InventoryNetwork[]> {
    return (await this.inventory(hostId, options)).networks;
  }

  async storage(hostId: string, options: { refresh?: boolean } = {}): Promise<InventoryStorage> {
    return (await this.inventory(hostId, options)).storage;
  }

  async inventory(hostId: string, options: { refresh?: boolean } = {}): Promise<HostInventory> {
    const host = await getHost(this.db, hostId);
    const cached = this.cache.get(host.id);
    if (!options.refresh && cached && Date.now() - cached.at < (this.options.cacheMs ?? 10_000)) {
      return cached.inventory;
    }
    let pending = this.inFlight.get(host.id);
    if (!pending) {
      pending = this.collect(host.id, host.name, host.status).finally(() => this.inFlight.delete(host.id));
      this.inFlight.set(host.id, pending);
    }
    const inventory = await pending;
    this.cache.set(host.id, { at: Date.now(), inventory });
    return inventory;
  }

  private async collect(hostId: string, name: string, status: string): Promise<HostInventory> {
    if (this.local?.hostId === hostId) {
      try {
        return await collectHostInventory(this.local.hypervisor);
      } catch (err) {
        throw new CloudError('CLOUD_INVENTORY_FAILED', `host ${name}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    if (status !== 'online') {
      throw new CloudError(
        'CLOUD_HOST_OFFLINE',
        `host ${name} is ${status}: its datamover is not reporting`,
        {
          details: { hostId },
        },
      );
    }
    try {
      const timeoutMs = this.options.inventoryTimeoutMs ?? 60_000;
      return (await this.tasks.runTask(hostId, HOST_INVENTORY_TASK, {}, { timeoutMs })) as HostInventory;
    } catch (err) {
      if (isLifeboatError(err) && err.code.endsWith('_TIMEOUT')) {
        throw new CloudError(
          'CLOUD_INVENTORY_TIMEOUT',
          `host ${name}: its datamover did not list its VMs in time`,
          {
            cause: err,
            details: { hostId },
          },
        );
      }
      throw new CloudError('CLOUD_INVENTORY_FAILED', `host ${name}: ${(err as Error).message}`, {
        cause: err,
        details: { hostId },
      });
    }
  }
}
