import { TargetError } from '../target/errors.js';
import { leaseKey, snapshotKey, snapshotPrefix } from '../target/layout.js';
import { type LeaseOwner, readLease, WorkloadLease } from '../target/lease.js';
import { encodeMetadata } from '../target/metadata/codec.js';
import type { SnapshotMeta, VmMeta, WorkloadMeta } from '../target/metadata/schemas.js';
import type { Target } from '../target/target.js';

/**
 * The target side of a standalone backup (`lifeboat vm backup`, no controller): the workload a
 * domain is backed up into, its newest committed snapshot, and the workload lease held (and
 * renewed) while the snapshot is written.
 */

/** The workload id a domain gets when none is given: stable across renames and hosts. */
export function defaultWorkloadId(domainUuid: string): string {
  return `vm-${domainUuid}`;
}

/** The newest committed snapshot of a workload (by start time), or undefined. */
export async function latestCommittedSnapshot(
  target: Target,
  workloadId: string,
): Promise<SnapshotMeta | undefined> {
  let best: SnapshotMeta | undefined;
  for (const sid of await target.listSnapshotFolders(workloadId)) {
    const snap = await target.readSnapshot(workloadId, sid).catch(() => undefined);
    if (!snap) continue;
    if (
      !best ||
      snap.startedAt > best.startedAt ||
      (snap.startedAt === best.startedAt && snap.id > best.id)
    ) {
      best = snap;
    }
  }
  return best;
}

/**
 * The parent an incremental of `vmId` builds on: the newest committed snapshot holding that VM,
 * and its vm.json. Undefined when there is none (the backup is then a full).
 */
export async function parentForVm(
  target: Target,
  workloadId: string,
  vmId: string,
): Promise<{ snapshot: SnapshotMeta; vm: VmMeta } | undefined> {
  const latest = await latestCommittedSnapshot(target, workloadId);
  if (!latest?.vms.some((v) => v.id === vmId)) return undefined;
  const vm = await target.readVm(workloadId, latest.id, vmId);
  return vm ? { snapshot: latest, vm } : undefined;
}

/** Creates workload.json on first use, or adds the VM to it; only the lease holder calls this. */
export async function ensureWorkload(
  target: Target,
  lease: WorkloadLease,
  vm: { id: string; name: string; uuid: string },
): Promise<WorkloadMeta> {
  const wid = lease.workloadId;
  const now = new Date().toISOString();
  const existing = await target.readWorkload(wid);
  if (existing?.vms.some((v) => v.id === vm.id && v.name === vm.name)) return existing;
  const vms = [
    ...(existing?.vms ?? []).filter((v) => v.id !== vm.id),
    { id: vm.id, name: vm.name, uuid: vm.uuid },
  ];
  const { checksum: _c, formatVersion: _f, kind: _k, ...keep } = existing ?? ({} as Partial<WorkloadMeta>);
  await target.writeWorkload(lease, {
    ...keep,
    id: wid,
    name: existing?.name ?? vm.name,
    description: existing?.description ?? `libvirt domain ${vm.name} (${vm.uuid})`,
    labels: existing?.labels ?? {},
    vms,
    policy: existing?.policy ?? null,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  });
  return (await target.readWorkload(wid))!;
}

/**
 * Holds a workload lease for the length of a backup: renewed in the background well before it
 * expires; `stop` ends the renewals and releases it. Every lease operation (background renewals and
 * the snapshot writer's checks) runs one at a time: two compare-and-swap renewals racing each other
 * would make the loser believe the lease was taken over.
 */
export class HeldLease {
  private timer: NodeJS.Timeout | undefined;
  private lost: unknown;
  private queue: Promise<unknown> = Promise.resolve();
  /** What the snapshot writer and workload.json updates are given: checks go through the queue. */
  readonly lease: WorkloadLease;

  private constructor(inner: WorkloadLease) {
    const serial = <T>(op: () => Promise<T>): Promise<T> => this.serial(op);
    const shim = {
      workloadId: inner.workloadId,
      owner: inner.owner,
      get token() {
        return inner.token;
      },
      get expiresAt() {
        return inner.expiresAt;
      },
      assertHeld: () => serial(() => inner.assertHeld()),
      renew: () => serial(() => inner.renew()),
      release: () => serial(() => inner.release()),
    };
    // WorkloadLease's private members make a structural stand-in impossible to type; only the
    // public surface above is used (SnapshotWriter: workloadId + assertHeld).
    this.lease = shim as unknown as WorkloadLease;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => {});
    return run;
  }

  static async acquire(
    target: Target,
    workloadId: string,
    owner: LeaseOwner,
    ttlMs = 10 * 60_000,
  ): Promise<HeldLease> {
    const held = new HeldLease(await WorkloadLease.acquire(target.backend, workloadId, owner, { ttlMs }));
    held.timer = setInterval(
      () => {
        held.lease.renew().catch((err) => {
          held.lost ??= err;
        });
      },
      Math.max(1000, Math.floor(ttlMs / 4)),
    );
    held.timer.unref();
    return held;
  }

  /** Throws when a background renewal found the lease taken over. */
  check(): void {
    if (this.lost) throw this.lost;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.lease.release().catch(() => {});
  }
}

/**
 * Gives up the lease a dead local backup held (known by its token from the crash journal), so the
 * next run need not wait for it to expire. Compare-and-swap: only that exact lease is released.
 */
export async function releaseDeadLease(target: Target, workloadId: string, token: string): Promise<boolean> {
  const current = await readLease(target.backend, workloadId);
  const lease = current?.lease;
  if (!current || !lease || lease.token !== token || lease.released) return false;
  const { checksum: _c, formatVersion: _f, kind: _k, ...doc } = lease;
  const bytes = encodeMetadata('lease', { ...doc, released: true, renewedAt: new Date().toISOString() });
  return target.backend.putIfMatch(leaseKey(workloadId), bytes, current.version);
}

/** Removes an unfinished snapshot folder (no snapshot.json) of a dead run; the caller holds the lease. */
export async function removeUnfinishedSnapshot(
  target: Target,
  workloadId: string,
  snapshotId: string,
): Promise<boolean> {
  if (await target.backend.stat(snapshotKey(workloadId, snapshotId))) return false;
  const n = await target.backend.deletePrefix(snapshotPrefix(workloadId, snapshotId));
  if (n === 0) return false;
  return true;
}

export function isLeaseHeld(err: unknown): boolean {
  return err instanceof TargetError && err.code === 'TARGET_LEASE_HELD';
}
