import { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { collectHostInventory } from './host-inventory.js';
import type { ClaimedTask } from './protocol.js';

/**
 * The task handlers a datamover runs, by task kind. A handler gets the claimed task, an AbortSignal
 * that fires when the job is cancelled (or the lease is lost, or the datamover stops), and a
 * progress callback; what it returns (JSON) becomes the task's result, what it throws (a
 * LifeboatError, ideally) becomes the task's typed failure. Domain services add their kinds with
 * `registerTaskHandler` (see docs/datamover-protocol.md); `host.inventory` is built in.
 */

export interface TaskProgress {
  done?: number;
  total?: number;
  message?: string;
}

export interface TaskContext {
  task: ClaimedTask;
  /** Fires on cancellation, lost lease or shutdown; `signal.reason` says which. Stop soon after. */
  signal: AbortSignal;
  /** Records progress; sent to the controller (throttled), which also renews the lease. */
  progress(update: TaskProgress): void;
  host: { id: string; name: string; libvirtUri: string };
  /** The host's libvirt connection (one per datamover). */
  hypervisor: LibvirtHypervisor;
  log(level: 'info' | 'warn' | 'error', message: string): void;
}

export type TaskHandler = (ctx: TaskContext) => Promise<unknown>;

export class TaskHandlerRegistry {
  private readonly handlers = new Map<string, TaskHandler>();

  /** Registers (or replaces: the last registration of a kind wins) the handler of `kind`. */
  register(kind: string, handler: TaskHandler): this {
    if (!/^[a-z][a-z0-9_.-]{0,63}$/.test(kind)) throw new Error(`bad task kind ${JSON.stringify(kind)}`);
    this.handlers.set(kind, handler);
    return this;
  }

  get(kind: string): TaskHandler | undefined {
    return this.handlers.get(kind);
  }

  kinds(): string[] {
    return [...this.handlers.keys()].sort();
  }
}

/** Payload: none. Result: the host's HostInventory (VMs, networks, storage). */
export const HOST_INVENTORY_TASK = 'host.inventory';

export const hostInventoryHandler: TaskHandler = async (ctx) => {
  ctx.progress({ message: 'listing domains, networks and storage' });
  return collectHostInventory(ctx.hypervisor);
};

/** The registry `lifeboat datamover` and the controller's local datamover use. */
export const defaultTaskHandlers = new TaskHandlerRegistry().register(
  HOST_INVENTORY_TASK,
  hostInventoryHandler,
);

export function registerTaskHandler(kind: string, handler: TaskHandler): void {
  defaultTaskHandlers.register(kind, handler);
}

/** For handlers and tests that want a hypervisor of their own. */
export function hypervisorFor(uri: string): LibvirtHypervisor {
  return new LibvirtHypervisor({ uri });
}
