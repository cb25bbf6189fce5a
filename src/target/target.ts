import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { assertSafeId } from './keys.js';
import {
  ROOT_KEY,
  snapshotKey,
  snapshotPrefix,
  snapshotsPrefix,
  vmKey,
  vmsPrefix,
  WORKLOADS_PREFIX,
  workloadKey,
} from './layout.js';
import type { WorkloadLease } from './lease.js';
import { encodeMetadata, type MetadataInput } from './metadata/codec.js';
import type { SnapshotMeta, TargetRoot, VmMeta, WorkloadMeta } from './metadata/schemas.js';
import { readMetadata, writeMetadata } from './metadata-io.js';

/** A Lifeboat target: a backend whose root holds lifeboat-target.json. */
export class Target {
  private constructor(
    readonly backend: TargetBackend,
    readonly root: TargetRoot,
  ) {}

  /** Opens an initialized target: TARGET_NOT_INITIALIZED when the root document is missing. */
  static async open(backend: TargetBackend): Promise<Target> {
    const root = await readMetadata(backend, 'target', ROOT_KEY);
    if (!root) {
      throw new TargetError(
        'TARGET_NOT_INITIALIZED',
        `${backend.location} is not a Lifeboat target (no ${ROOT_KEY})`,
      );
    }
    return new Target(backend, root);
  }

  /** Opens the target, writing its root document first when the location is empty. */
  static async init(
    backend: TargetBackend,
    opts: { targetId?: string; createdBy?: string } = {},
  ): Promise<Target> {
    const existing = await readMetadata(backend, 'target', ROOT_KEY);
    if (existing) return new Target(backend, existing);
    const targetId = opts.targetId ?? randomUUID();
    assertSafeId(targetId, 'target id');
    const bytes = encodeMetadata('target', {
      targetId,
      createdAt: new Date().toISOString(),
      createdBy: opts.createdBy ?? `lifeboat on ${hostname()}`,
    });
    // Two installations initializing one empty target at once agree on whichever root landed first.
    await backend.putIfAbsent(ROOT_KEY, bytes);
    return Target.open(backend);
  }

  get location(): string {
    return this.backend.location;
  }

  async listWorkloadIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const name of this.backend.listFolders(WORKLOADS_PREFIX)) ids.push(name);
    return ids.sort();
  }

  readWorkload(workloadId: string): Promise<WorkloadMeta | undefined> {
    return readMetadata(this.backend, 'workload', workloadKey(workloadId));
  }

  /** Writes workload.json; only the lease holder may. */
  async writeWorkload(lease: WorkloadLease, doc: MetadataInput<'workload'>): Promise<void> {
    if (lease.workloadId !== doc.id)
      throw new TargetError('TARGET_STATE', `lease is for ${lease.workloadId}, not ${doc.id}`);
    await lease.assertHeld();
    await writeMetadata(this.backend, 'workload', workloadKey(doc.id), doc);
  }

  /** Ids of the snapshot folders, committed or not. */
  async listSnapshotFolders(workloadId: string): Promise<string[]> {
    const ids: string[] = [];
    for await (const name of this.backend.listFolders(snapshotsPrefix(workloadId))) ids.push(name);
    return ids.sort();
  }

  /** The snapshot's commit marker; undefined for an unfinished (or absent) snapshot. */
  readSnapshot(workloadId: string, snapshotId: string): Promise<SnapshotMeta | undefined> {
    return readMetadata(this.backend, 'snapshot', snapshotKey(workloadId, snapshotId));
  }

  /**
   * Deletes a committed snapshot under the lease: the commit marker goes first, so a crash midway
   * leaves an unfinished folder (removed by cleanup), never a snapshot with missing files. Refuses a
   * snapshot that another committed snapshot still builds on (merge it first).
   */
  async deleteSnapshot(lease: WorkloadLease, snapshotId: string): Promise<number> {
    const wid = lease.workloadId;
    await lease.assertHeld();
    for (const sid of await this.listSnapshotFolders(wid)) {
      if (sid === snapshotId) continue;
      const other = await this.readSnapshot(wid, sid).catch(() => undefined);
      if (other?.parentSnapshotId === snapshotId) {
        throw new TargetError(
          'TARGET_STATE',
          `snapshot ${snapshotId} is the parent of ${sid}; merge before deleting`,
        );
      }
    }
    await this.backend.delete(snapshotKey(wid, snapshotId));
    return this.backend.deletePrefix(snapshotPrefix(wid, snapshotId));
  }

  async listVmIds(workloadId: string, snapshotId: string): Promise<string[]> {
    const ids: string[] = [];
    for await (const name of this.backend.listFolders(vmsPrefix(workloadId, snapshotId))) ids.push(name);
    return ids.sort();
  }

  readVm(workloadId: string, snapshotId: string, vmId: string): Promise<VmMeta | undefined> {
    return readMetadata(this.backend, 'vm', vmKey(workloadId, snapshotId, vmId));
  }
}
