import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../api/server.js';
import { getHost, type Host } from '../catalog/hosts.js';
import { openCatalog } from '../catalog/open.js';
import type { CatalogDb } from '../catalog/schema.js';
import type { Target } from '../catalog/targets.js';
import { LibvirtCloud } from '../cloud/libvirt/driver.js';
import { DatamoverService } from '../datamover/service.js';
import { defaultTaskHandlers, type TaskHandlerRegistry } from '../datamover/task-handlers.js';
import { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { DEFAULT_LIBVIRT_URI } from '../hypervisor/virsh.js';
import {
  ensureDatamoverUser,
  ensureDefaultTarget,
  ensureFirstAdmin,
  issueLocalDatamoverToken,
} from './bootstrap.js';
import { createDomainServices } from './domain-services.js';
import { type ControllerLog, TaskDispatcher } from './task-dispatch.js';
import { sweepIntervalFor, TaskSweeper } from './task-sweeper.js';

/**
 * `lifeboat serve`, wired: catalog (opened and migrated), default target, REST API with the
 * datamover protocol, the lease sweeper, and — in the embedded default — a datamover for this host
 * running in this process. The local datamover is the same DatamoverService a remote host runs and
 * talks to this controller over HTTP on the loopback address, so there is one code path to test.
 */

export interface ControllerOptions {
  /** Catalog URL: SQLite path or postgres://. */
  db: string;
  /** Backup target: a directory or s3://bucket/prefix. */
  target: string;
  /** `HOST:PORT` to listen on (port 0: any free port). */
  listen: string;
  /** Run a datamover for this host in-process (default true). */
  localDatamover?: boolean;
  /** Name of this host in the catalog (default: the hostname). */
  hostName?: string;
  libvirtUri?: string;
  leaseMs?: number;
  sweepIntervalMs?: number;
  claimWaitMs?: number;
  hostOfflineAfterMs?: number;
  /** Task handlers of the local datamover (default: every registered one). */
  handlers?: TaskHandlerRegistry;
  version?: string;
  /** Log every HTTP request (pino, JSON on stdout). */
  logRequests?: boolean;
  log?: ControllerLog;
}

export interface RunningController {
  url: string;
  db: CatalogDb;
  dispatcher: TaskDispatcher;
  cloud: LibvirtCloud;
  api: FastifyInstance;
  target: Target;
  /** Set on the first start only: the admin token, shown once. */
  firstAdmin?: { userName: string; token: string };
  localDatamover?: DatamoverService;
  /** The host the local datamover registered (once it did). */
  localHost(): Promise<Host | undefined>;
  /** Graceful stop: local datamover, sweeper, held claims, HTTP server, catalog. */
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`--listen ${listen}: expected HOST:PORT, e.g. 127.0.0.1:7480`);
  return { host: m[1] ?? m[2], port };
}

/** Where a process on this machine reaches a server listening on `host`. */
function loopbackUrl(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return `http://127.0.0.1:${port}`;
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}

export async function startController(options: ControllerOptions): Promise<RunningController> {
  const log: ControllerLog = options.log ?? (() => undefined);
  const db = await openCatalog(options.db);
  const cleanups: Array<() => Promise<void> | void> = [() => db.destroy()];
  const closeAll = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  try {
    const target = await ensureDefaultTarget(
      db,
      options.target.startsWith('s3://') ? options.target : resolve(options.target),
    );
    const firstAdmin = await ensureFirstAdmin(db);
    const datamoverUser = await ensureDatamoverUser(db);

    const leaseMs = options.leaseMs ?? 60_000;
    const dispatcher = new TaskDispatcher(db, {
      leaseMs,
      claimWaitMs: options.claimWaitMs,
      hostOfflineAfterMs: options.hostOfflineAfterMs,
      log,
    });
    const cloud = new LibvirtCloud(db, dispatcher);
    const controller = createDomainServices(db, {
      vms: (hostId) => cloud.vms(hostId, { refresh: true }),
      hooks: dispatcher.hooks,
      wake: (jobId) => void dispatcher.addTasks(jobId, []).catch(() => undefined),
    });
    cleanups.push(() => controller.targets.close());
    const api = await buildApi({
      catalog: db,
      version: options.version,
      logger: options.logRequests ? { level: 'info' } : false,
      taskDispatch: dispatcher,
      hostInventory: cloud,
      controller,
    });
    const { host, port } = parseListen(options.listen);
    await api.listen({ host, port });
    cleanups.push(() => api.close());
    // Before the HTTP server closes: held claims end now instead of at the end of their wait.
    cleanups.push(() => dispatcher.close());
    const address = api.server.address();
    const boundPort = typeof address === 'object' && address ? address.port : port;
    const url = loopbackUrl(host, boundPort);

    const sweeper = new TaskSweeper(
      dispatcher,
      options.sweepIntervalMs ?? sweepIntervalFor(leaseMs),
      log,
    ).start();
    cleanups.push(() => sweeper.stop());

    let localDatamover: DatamoverService | undefined;
    const hostName = options.hostName ?? hostname();
    if (options.localDatamover ?? true) {
      const libvirtUri = options.libvirtUri ?? DEFAULT_LIBVIRT_URI;
      localDatamover = new DatamoverService({
        controllerUrl: url,
        token: await issueLocalDatamoverToken(db, datamoverUser),
        name: hostName,
        address: hostName,
        libvirtUri,
        version: options.version,
        handlers: options.handlers ?? defaultTaskHandlers,
        claimWaitMs: options.claimWaitMs,
        log: (level, message) => log(level, `local datamover: ${message}`),
      }).start();
      const dm = localDatamover;
      // The local host's inventory is read straight from libvirt, not through a task.
      void dm.registered.then(() => {
        if (dm.hostId) cloud.setLocalHost(dm.hostId, new LibvirtHypervisor({ uri: libvirtUri }));
      });
      cleanups.push(() => dm.stop());
    }

    return {
      url,
      db,
      dispatcher,
      cloud,
      api,
      target,
      firstAdmin: firstAdmin && { userName: firstAdmin.user.name, token: firstAdmin.token },
      localDatamover,
      localHost: async () => {
        if (!localDatamover) return undefined;
        await localDatamover.registered;
        return getHost(db, localDatamover.hostId as string);
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
