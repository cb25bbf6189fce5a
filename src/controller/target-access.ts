import type { CatalogDb } from '../catalog/schema.js';
import { getTarget, getTargetSecrets, listTargets, type Target as TargetRow } from '../catalog/targets.js';
import { openLocator, type TargetLocator } from '../datamover/handlers/target-locator.js';
import { TargetError } from '../target/errors.js';
import { type LeaseOwner, WorkloadLease } from '../target/lease.js';
import type { Target } from '../target/target.js';
import { ControllerError } from './errors.js';

const LEASE_TTL_MS = 30 * 60_000;

/** How a lease is taken. */
export interface LeaseRequest {
  /**
   * The caller holds the workload's lock in the catalog (a job of this installation): a lease this
   * installation holds on the target is then a leftover (this controller restarted mid-job, or
   * another of its processes died) and is taken over instead of waited out.
   */
  holdsWorkloadLock?: boolean;
}

/**
 * Opens the catalog's targets (one open Target per target id, kept for the life of the controller)
 * and holds the workload leases of running jobs. A lease object lives in this process only: a
 * controller that restarts mid-job loses it; the next job on the workload (which holds the
 * catalog's workload lock) takes the leftover over. Other installations wait for it to expire.
 */
export class TargetAccess {
  private readonly open = new Map<string, Promise<Target>>();
  private readonly leases = new Map<string, WorkloadLease>();

  constructor(
    private readonly db: CatalogDb,
    readonly owner: LeaseOwner,
  ) {}

  /**
   * Where a target is, as task payloads carry it: without credentials. Payloads are stored in the
   * catalog with the task history; the datamover gets the credentials with the task when it claims
   * it (TaskDispatcher.claim), over its authenticated connection.
   */
  async locator(targetId: string): Promise<TargetLocator> {
    const row = await getTarget(this.db, targetId);
    return { id: row.id, kind: row.kind, url: row.url, settings: row.settings, secrets: {} };
  }

  /** The target behind a catalog target id; an empty directory or bucket is initialized. */
  target(targetId: string): Promise<Target> {
    let p = this.open.get(targetId);
    if (!p) {
      p = this.locator(targetId).then(async (loc) =>
        openLocator({ ...loc, secrets: await getTargetSecrets(this.db, targetId) }),
      );
      p.catch(() => this.open.delete(targetId));
      this.open.set(targetId, p);
    }
    return p;
  }

  /** The target a new workload of `projectId` writes to when none is named: the only one it may use. */
  async defaultTargetId(projectId: string): Promise<string> {
    const visible = await listTargets(this.db, [projectId]);
    const own = visible.filter((t) => t.project_id === projectId);
    const pick =
      own.length === 1 ? own[0] : own.length === 0 && visible.length === 1 ? visible[0] : undefined;
    if (!pick) {
      throw new ControllerError(
        'CONTROLLER_NO_TARGET',
        visible.length === 0
          ? 'no backup target is registered: add one first'
          : `several backup targets could hold this workload (${visible.map((t) => t.name).join(', ')}): name one`,
      );
    }
    return pick.id;
  }

  /** Takes the workload's lease on its target (TARGET_LEASE_HELD: someone else is writing it). */
  async acquireLease(
    targetId: string,
    workloadId: string,
    request: LeaseRequest = {},
  ): Promise<WorkloadLease> {
    const key = `${targetId}/${workloadId}`;
    const held = this.leases.get(key);
    if (held) {
      await held.renew();
      return held;
    }
    const target = await this.target(targetId);
    let lease: WorkloadLease;
    try {
      const ours = this.owner.installationId;
      lease = await WorkloadLease.acquire(target.backend, workloadId, this.owner, {
        ttlMs: LEASE_TTL_MS,
        takeOver: request.holdsWorkloadLock ? (held) => held.installationId === ours : undefined,
      });
    } catch (err) {
      if (err instanceof TargetError && err.code === 'TARGET_LEASE_HELD') {
        throw new ControllerError('CONTROLLER_TARGET_LEASE', err.message, { cause: err });
      }
      throw err;
    }
    this.leases.set(key, lease);
    return lease;
  }

  heldLease(targetId: string, workloadId: string): WorkloadLease | undefined {
    return this.leases.get(`${targetId}/${workloadId}`);
  }

  async releaseLease(targetId: string, workloadId: string): Promise<void> {
    const key = `${targetId}/${workloadId}`;
    const lease = this.leases.get(key);
    this.leases.delete(key);
    await lease?.release().catch(() => undefined); // lost already: nothing to give back
  }

  /** Runs `fn` under the workload's lease, taken just for it unless a job already holds it. */
  async withLease<T>(
    targetId: string,
    workloadId: string,
    fn: (lease: WorkloadLease) => Promise<T>,
    request: LeaseRequest = {},
  ): Promise<T> {
    const already = this.heldLease(targetId, workloadId);
    const lease = already ?? (await this.acquireLease(targetId, workloadId, request));
    try {
      return await fn(lease);
    } finally {
      if (!already) await this.releaseLease(targetId, workloadId);
    }
  }

  async close(): Promise<void> {
    for (const key of [...this.leases.keys()]) {
      const [t, w] = key.split('/');
      await this.releaseLease(t, w);
    }
    for (const p of this.open.values()) await (await p.catch(() => undefined))?.backend.close();
    this.open.clear();
  }
}

export type { TargetRow };
