import { z } from 'zod';

/**
 * Task kinds the controller sends for workloads, snapshots and restores, with their payloads. The
 * controller builds them; the datamover handlers parse them (a payload that does not parse fails the
 * task with a clear error instead of doing something half-understood).
 */
export const SNAPSHOT_VM_TASK = 'snapshot.vm';
export const RESTORE_VM_TASK = 'restore.vm';
export const SNAPSHOT_DELETE_TASK = 'snapshot.delete';

const targetLocator = z.object({
  id: z.string(),
  kind: z.enum(['fs', 's3']),
  url: z.string(),
  settings: z.record(z.string(), z.unknown()).default({}),
  secrets: z.record(z.string(), z.string()).default({}),
});

export const snapshotVmPayload = z.object({
  target: targetLocator,
  workloadId: z.string(),
  snapshotId: z.string(),
  type: z.enum(['full', 'incremental']),
  parentSnapshotId: z.string().nullable(),
  /** The controller holds the workload's lease on the target; this is its token (checked before writing). */
  leaseToken: z.string(),
  vm: z.object({
    /** The VM's folder on the target: its libvirt UUID, stable across snapshots and installations. */
    id: z.string(),
    uuid: z.string(),
    name: z.string(),
    excludedDisks: z.array(z.string()).default([]),
  }),
});
export type SnapshotVmPayload = z.infer<typeof snapshotVmPayload>;

/** What a snapshot.vm task reports; the controller reads the rest from the VM's vm.json. */
export const snapshotVmResult = z.object({
  vmId: z.string(),
  disks: z.number().int().nonnegative().optional(),
  bytes: z.number().nonnegative().optional(),
  warnings: z.array(z.string()).default([]),
});
export type SnapshotVmResult = z.infer<typeof snapshotVmResult>;

export const nicTarget = z.union([
  z.object({ type: z.literal('network'), network: z.string(), portgroup: z.string().optional() }),
  z.object({ type: z.literal('bridge'), bridge: z.string() }),
  z.object({ type: z.literal('user') }),
]);

export const restoreVmPayload = z.object({
  target: targetLocator,
  workloadId: z.string(),
  snapshotId: z.string(),
  vmId: z.string(),
  mode: z.enum(['new', 'in_place']),
  /** new: the name of the new domain; in_place: the existing domain (name or UUID). */
  name: z.string(),
  /** new: where the new images go. */
  storageDir: z.string().optional(),
  networkMap: z.record(z.string(), nicTarget).default({}),
  /** Target devs to restore; absent: every backed-up disk. */
  disks: z.array(z.string()).optional(),
  start: z.boolean().default(false),
});
export type RestoreVmPayload = z.infer<typeof restoreVmPayload>;

export const snapshotDeletePayload = z.object({
  target: targetLocator,
  workloadId: z.string(),
  snapshotId: z.string(),
  leaseToken: z.string(),
  /** The next snapshot whose images are overlays on this one's: merged into (fs) before the delete. */
  childSnapshotId: z.string().nullable(),
});
export type SnapshotDeletePayload = z.infer<typeof snapshotDeletePayload>;
