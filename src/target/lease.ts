import { randomUUID } from 'node:crypto';
import type { TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { leaseKey } from './layout.js';
import { decodeMetadata, encodeMetadata } from './metadata/codec.js';
import type { LeaseMeta } from './metadata/schemas.js';

export interface LeaseOwner {
  /** The installation (controller database) writing to the target. */
  installationId: string;
  host: string;
}

export interface LeaseOptions {
  /** How long a lease lasts without renewal (default 10 minutes). */
  ttlMs?: number;
  /** Extra time past expiry before another owner may take over, for clock skew (default 30 s). */
  skewMs?: number;
  /** The clock, for tests. */
  now?: () => Date;
  /**
   * Says whether an active lease held by `owner` may be taken over anyway. For a caller that knows
   * the holder is gone: a controller restarted mid-job finds its previous life's lease, and its
   * catalog's workload lock already excludes every other writer of the same installation.
   */
  takeOver?: (owner: LeaseOwner) => boolean;
}

const DEFAULT_TTL_MS = 10 * 60_000;
const DEFAULT_SKEW_MS = 30_000;

/** True when the lease still excludes everyone else at `now`. */
export function leaseActive(lease: LeaseMeta, now: Date, skewMs = DEFAULT_SKEW_MS): boolean {
  return !lease.released && Date.parse(lease.expiresAt) + skewMs > now.getTime();
}

/** The lease object of a workload as it is now; `corrupt` when the file exists but does not decode. */
export async function readLease(
  backend: TargetBackend,
  workloadId: string,
): Promise<{ lease?: LeaseMeta; version: string; corrupt?: string } | undefined> {
  const key = leaseKey(workloadId);
  const got = await backend.readVersioned(key);
  if (!got) return undefined;
  try {
    return { lease: decodeMetadata('lease', got.bytes, `${backend.location}/${key}`), version: got.version };
  } catch (err) {
    if (err instanceof TargetError && err.code !== 'TARGET_FORMAT_VERSION') {
      return { version: got.version, corrupt: err.message };
    }
    throw err;
  }
}

/**
 * The right to write one workload on a target (docs/target-format.md, "Leases"). Acquisition and
 * every renewal are compare-and-swap writes of workloads/<id>/lease.json (S3: If-None-Match / If-Match;
 * filesystem: link(2) / a lock file), so two owners never both believe they hold it.
 */
export class WorkloadLease {
  private constructor(
    private readonly backend: TargetBackend,
    readonly workloadId: string,
    readonly owner: LeaseOwner,
    private doc: LeaseMeta,
    private version: string,
    private readonly opts: Required<Omit<LeaseOptions, 'takeOver'>>,
  ) {}

  get token(): string {
    return this.doc.token;
  }

  get expiresAt(): Date {
    return new Date(this.doc.expiresAt);
  }

  static async acquire(
    backend: TargetBackend,
    workloadId: string,
    owner: LeaseOwner,
    options: LeaseOptions = {},
  ): Promise<WorkloadLease> {
    const opts = { ttlMs: DEFAULT_TTL_MS, skewMs: DEFAULT_SKEW_MS, now: () => new Date(), ...options };
    const key = leaseKey(workloadId);
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = opts.now();
      const doc = {
        workloadId,
        owner: { ...owner },
        token: randomUUID(),
        acquiredAt: now.toISOString(),
        renewedAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + opts.ttlMs).toISOString(),
        released: false,
      };
      const bytes = encodeMetadata('lease', doc);
      const current = await readLease(backend, workloadId);
      let won: boolean;
      if (!current) {
        won = await backend.putIfAbsent(key, bytes);
      } else {
        if (
          current.lease &&
          leaseActive(current.lease, now, opts.skewMs) &&
          !options.takeOver?.(current.lease.owner)
        ) {
          const l = current.lease;
          throw new TargetError(
            'TARGET_LEASE_HELD',
            `workload ${workloadId} is being written by ${l.owner.installationId} on ${l.owner.host} (lease until ${l.expiresAt})`,
            { details: { owner: l.owner, expiresAt: l.expiresAt } },
          );
        }
        won = await backend.putIfMatch(key, bytes, current.version);
      }
      if (won) {
        // Read back: catches a server that silently ignores conditional headers in the common case.
        const check = await readLease(backend, workloadId);
        if (check?.lease?.token === doc.token) {
          const parsed = check.lease;
          return new WorkloadLease(backend, workloadId, owner, parsed, check.version, opts);
        }
      }
      // Lost a race: look again (the winner's lease is then reported as held).
    }
    throw new TargetError(
      'TARGET_LEASE_HELD',
      `workload ${workloadId}: lost the lease race to another owner`,
    );
  }

  /** Extends the lease; TARGET_LEASE_LOST when someone else took it over meanwhile. */
  async renew(): Promise<void> {
    const now = this.opts.now();
    await this.swap({
      renewedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + this.opts.ttlMs).toISOString(),
    });
  }

  /** Confirms we still hold the lease and extends it: call before every commit. */
  async assertHeld(): Promise<void> {
    await this.renew();
  }

  /** Gives the lease up (marks it released, so the next owner need not wait for expiry). */
  async release(): Promise<void> {
    await this.swap({ released: true, renewedAt: this.opts.now().toISOString() });
  }

  private async swap(change: Partial<LeaseMeta>): Promise<void> {
    const key = leaseKey(this.workloadId);
    const current = await readLease(this.backend, this.workloadId);
    const mine = current?.lease && current.lease.token === this.doc.token && !current.lease.released;
    if (!current || !mine) {
      throw new TargetError(
        'TARGET_LEASE_LOST',
        `workload ${this.workloadId}: our lease was taken over or released`,
      );
    }
    const next = { ...current.lease!, ...change };
    const { checksum: _c, formatVersion: _f, kind: _k, ...input } = next;
    const ok = await this.backend.putIfMatch(key, encodeMetadata('lease', input), current.version);
    if (!ok)
      throw new TargetError('TARGET_LEASE_LOST', `workload ${this.workloadId}: lease changed under us`);
    const after = await readLease(this.backend, this.workloadId);
    if (after?.lease?.token !== this.doc.token) {
      throw new TargetError('TARGET_LEASE_LOST', `workload ${this.workloadId}: lease changed under us`);
    }
    this.doc = after.lease;
    this.version = after.version;
  }
}
