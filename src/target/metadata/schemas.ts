import { z } from 'zod';
import { isSafeId } from '../keys.js';
import { formatVersionSchema } from './version.js';

/**
 * Schemas of format 1. Readers parse the top level loosely (codec.ts): a newer minor version may add
 * members, and a reader that rewrites a document keeps what it does not know.
 */
const safeId = z.string().refine(isSafeId, { message: 'not a safe id ([A-Za-z0-9._-], no ..)' });
const time = z.iso.datetime({ offset: true });
const bytes = z.number().int().nonnegative();
const checksum = z.string().regex(/^sha256:[0-9a-f]{64}$/);

const header = {
  checksum: checksum.optional(),
  formatVersion: formatVersionSchema,
};

export const targetRootSchema = z.object({
  ...header,
  kind: z.literal('target'),
  targetId: safeId,
  createdAt: time,
  createdBy: z.string().optional(),
});
export type TargetRoot = z.infer<typeof targetRootSchema>;

export const workloadSchema = z.object({
  ...header,
  kind: z.literal('workload'),
  id: safeId,
  name: z.string(),
  description: z.string().default(''),
  /** Who it belonged to where it was made: project.id, project.name, owner.id, owner.name, cloud... */
  labels: z.record(z.string(), z.string()).default({}),
  vms: z.array(z.object({ id: safeId, name: z.string(), uuid: z.string().optional() })).default([]),
  policy: z
    .looseObject({
      name: z.string().optional(),
      schedule: z.string().optional(),
      retention: z.string().optional(),
      fullEvery: z.number().int().positive().optional(),
    })
    .nullable()
    .default(null),
  createdAt: time,
  updatedAt: time,
});
export type WorkloadMeta = z.infer<typeof workloadSchema>;

export const leaseSchema = z.object({
  ...header,
  kind: z.literal('lease'),
  workloadId: safeId,
  owner: z.object({ installationId: z.string().min(1), host: z.string() }),
  /** New for every acquisition, so one owner's two processes never mistake each other's lease. */
  token: z.string().min(1),
  acquiredAt: time,
  renewedAt: time,
  expiresAt: time,
  released: z.boolean().default(false),
});
export type LeaseMeta = z.infer<typeof leaseSchema>;

export const snapshotWarningSchema = z.object({
  code: z.string(),
  message: z.string(),
  vmId: safeId.optional(),
  disk: safeId.optional(),
});

export const snapshotSchema = z.object({
  ...header,
  kind: z.literal('snapshot'),
  id: safeId,
  workloadId: safeId,
  type: z.enum(['full', 'incremental']),
  parentSnapshotId: safeId.nullable(),
  startedAt: time,
  finishedAt: time,
  /** ok: every disk as asked; warnings: some disk fell back to full or similar; partial: a VM is missing. */
  status: z.enum(['ok', 'warnings', 'partial']),
  sizes: z.object({ virtualBytes: bytes, allocatedBytes: bytes, storedBytes: bytes }),
  vms: z.array(
    z.object({
      id: safeId,
      name: z.string(),
      disks: z.array(safeId),
      storedBytes: bytes,
    }),
  ),
  warnings: z.array(snapshotWarningSchema).default([]),
});
export type SnapshotMeta = z.infer<typeof snapshotSchema>;

export const vmDiskSchema = z.object({
  name: safeId,
  targetDev: z.string(),
  format: z.literal('qcow2'),
  /** File names inside the VM folder. */
  image: safeId,
  manifest: safeId,
  virtualSize: bytes,
  allocatedBytes: bytes,
  storedBytes: bytes,
  /** Relative to this image's folder, e.g. ../../../<parent>/vms/<vm>/<disk>.qcow2; null for a full. */
  backing: z.string().nullable(),
  mode: z.enum(['full', 'incremental']),
  checkpointName: z.string().nullable(),
  checkpointXml: z.string().nullable(),
  fallbackWarning: z.string().nullable(),
});
export type VmDiskMeta = z.infer<typeof vmDiskSchema>;

export const vmSchema = z.object({
  ...header,
  kind: z.literal('vm'),
  id: safeId,
  workloadId: safeId,
  snapshotId: safeId,
  name: z.string(),
  uuid: z.string(),
  /** The libvirt domain definition as saved (secrets such as graphics passwords removed). */
  domainXml: z.string(),
  memoryBytes: bytes,
  vcpus: z.number().int().positive(),
  disks: z.array(vmDiskSchema),
  nics: z.array(
    z.object({
      mac: z.string().nullable(),
      model: z.string().nullable(),
      network: z.string().nullable(),
      bridge: z.string().nullable().optional(),
    }),
  ),
  networks: z.array(z.object({ name: z.string() })).default([]),
  /** Cloud-specific facts (flavor, image, security groups...), free-form. */
  cloud: z.record(z.string(), z.unknown()).default({}),
});
export type VmMeta = z.infer<typeof vmSchema>;

export const MANIFEST_BLOCK_SIZE = 4 * 1024 * 1024;

export const manifestSchema = z.object({
  ...header,
  kind: z.literal('manifest'),
  algorithm: z.literal('sha256'),
  blockSize: z.number().int().positive(),
  /** Size in bytes of the image file (not the virtual disk). */
  size: bytes,
  /** One hex digest per blockSize bytes of the file; the last block may be short. */
  blocks: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
});
export type ManifestMeta = z.infer<typeof manifestSchema>;
