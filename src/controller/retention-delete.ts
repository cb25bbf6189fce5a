import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type AuditActor, recordAudit } from '../catalog/audit.js';
import { appendJobMessage, createJob, deleteJob, type Job, setJobStatus } from '../catalog/jobs.js';
import {
  deleteSnapshot as deleteSnapshotRow,
  getSnapshot,
  listSnapshotDisks,
  listSnapshots,
  listSnapshotVms,
  type Snapshot,
  setSnapshotStatus,
  updateSnapshotDisk,
} from '../catalog/snapshots.js';
import { getWorkload, lockWorkload, unlockWorkload } from '../catalog/workloads.js';
import { commitOverlay, forgetCommit } from '../disk/qcow2/merge.js';
import { resolveRelativeKey } from '../target/keys.js';
import { diskManifestKey, snapshotKey, snapshotPrefix, vmFileKey, vmKey } from '../target/layout.js';
import { MANIFEST_BLOCK_SIZE } from '../target/metadata/schemas.js';
import { writeMetadata } from '../target/metadata-io.js';
import type { Target } from '../target/target.js';
import { type ControllerContext, DEFAULT_LOCK_LEASE_MS } from './context.js';
import { ControllerError } from './errors.js';

/**
 * Deleting a snapshot never loses data a later snapshot needs:
 * - the newest snapshot of a chain (or a failed one) is simply removed: snapshot.json first, so it
 *   stops being a snapshot at once, then its folder;
 * - a snapshot whose next snapshot is an overlay on it is MERGED on directory targets: each
 *   overlay image of the next snapshot is committed into this one's image (disk/qcow2/merge.ts:
 *   crash-safe, resumable, cost proportional to the overlay) and the result takes the overlay's
 *   place, so the next snapshot becomes self-sufficient (full, or an overlay on this one's parent);
 *   its vm.json, manifests and snapshot.json are rewritten, then this one is removed;
 * - on S3 targets such a snapshot is KEPT: the delete is refused (CONTROLLER_SNAPSHOT_NEEDED) and
 *   nothing changes; delete the later snapshots first.
 * The work runs in the controller (it only touches the target) as a job, under the workload lock
 * and the workload's lease on the target.
 */
export async function deleteSnapshot(
  ctx: ControllerContext,
  actor: AuditActor,
  snapshotId: string,
): Promise<{ job: Job; done: Promise<void> }> {
  const snap = await getSnapshot(ctx.db, snapshotId);
  const w = await getWorkload(ctx.db, snap.workload_id);
  if (snap.status === 'creating' || snap.status === 'deleting') {
    throw new ControllerError(
      'CONTROLLER_SNAPSHOT_STATE',
      `snapshot ${snapshotId} is ${snap.status}${snap.status === 'creating' ? ': cancel it first' : ''}`,
    );
  }
  const child = (await listSnapshots(ctx.db, { workloadId: w.id, status: 'available' })).find(
    (s) => s.parent_id === snap.id,
  );
  const target = snap.target_id ? await ctx.targets.locator(snap.target_id) : undefined;
  if (child && snap.status === 'available' && target?.kind !== 'fs') {
    throw new ControllerError(
      'CONTROLLER_SNAPSHOT_NEEDED',
      `snapshot ${snapshotId} holds data that snapshot ${child.id} needs, and its target cannot merge it: it is kept. Delete the later snapshots first`,
      { details: { neededBy: child.id } },
    );
  }
  const job = await createJob(ctx.db, {
    kind: 'snapshot.delete',
    projectId: w.project_id,
    userId: actor.userId ?? null,
    resourceType: 'workload',
    resourceId: w.id,
  });
  try {
    await lockWorkload(ctx.db, w.id, job.id, ctx.lockLeaseMs ?? DEFAULT_LOCK_LEASE_MS);
  } catch (err) {
    await deleteJob(ctx.db, job.id).catch(() => undefined);
    throw err;
  }
  await setSnapshotStatus(ctx.db, snap.id, 'deleting');
  await recordAudit(ctx.db, actor, {
    action: 'snapshot.delete',
    resourceType: 'snapshot',
    resourceId: snap.id,
    projectId: w.project_id,
    details: { workloadId: w.id, mergedInto: child?.id ?? null, jobId: job.id },
  });
  const done = runDelete(ctx, job.id, snap, snap.status === 'available' ? child : undefined);
  return { job, done };
}

async function runDelete(ctx: ControllerContext, jobId: string, snap: Snapshot, child: Snapshot | undefined) {
  const wid = snap.workload_id;
  try {
    await setJobStatus(ctx.db, jobId, 'running');
    if (snap.target_id) {
      const target = await ctx.targets.target(snap.target_id);
      const locator = await ctx.targets.locator(snap.target_id);
      await ctx.targets.withLease(
        snap.target_id,
        wid,
        async (lease) => {
          if (child) {
            await appendJobMessage(ctx.db, jobId, 'info', `merging snapshot ${child.id} into ${snap.id}`);
            await mergeChildInto(ctx, target, locator.url, snap, child);
          }
          await lease.assertHeld();
          // snapshot.json first: from that moment it is no longer a snapshot for any reader.
          if (await target.backend.stat(snapshotKey(wid, snap.id)))
            await target.backend.delete(snapshotKey(wid, snap.id));
          await target.backend.deletePrefix(snapshotPrefix(wid, snap.id));
        },
        { holdsWorkloadLock: true },
      );
    }
    await deleteSnapshotRow(ctx.db, snap.id);
    await appendJobMessage(ctx.db, jobId, 'info', `snapshot ${snap.id} deleted`);
    // Unlocked before the job reads succeeded, so a client acting on that finds the workload free.
    await unlockWorkload(ctx.db, wid, jobId);
    await setJobStatus(ctx.db, jobId, 'succeeded');
  } catch (err) {
    const reason = (err as Error).message;
    await setSnapshotStatus(ctx.db, snap.id, snap.status === 'failed' ? 'failed' : 'available', {
      error: `delete failed: ${reason}`,
    }).catch(() => undefined);
    await appendJobMessage(ctx.db, jobId, 'error', reason).catch(() => undefined);
    await setJobStatus(ctx.db, jobId, 'failed', { error: reason }).catch(() => undefined);
  } finally {
    await unlockWorkload(ctx.db, wid, jobId); // a no-op when already unlocked
  }
}

/** SHA-256 of each 4 MiB block of a file: the manifest of a rewritten image. */
async function manifestOf(path: string) {
  const blocks: string[] = [];
  let hash = createHash('sha256');
  let inBlock = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, MANIFEST_BLOCK_SIZE - inBlock);
      hash.update(chunk.subarray(off, off + n));
      inBlock += n;
      off += n;
      if (inBlock === MANIFEST_BLOCK_SIZE) {
        blocks.push(hash.digest('hex'));
        hash = createHash('sha256');
        inBlock = 0;
      }
    }
  }
  if (inBlock > 0) blocks.push(hash.digest('hex'));
  return {
    algorithm: 'sha256' as const,
    blockSize: MANIFEST_BLOCK_SIZE,
    size: (await stat(path)).size,
    blocks,
  };
}

async function mergeChildInto(
  ctx: ControllerContext,
  target: Target,
  root: string,
  snap: Snapshot,
  child: Snapshot,
) {
  const wid = snap.workload_id;
  const childMeta = await target.readSnapshot(wid, child.id);
  if (!childMeta) throw new Error(`snapshot ${child.id} is not committed on the target`);
  const path = (key: string) => join(root, ...key.split('/'));
  let stored = 0;
  let allFull = true;
  for (const v of childMeta.vms) {
    const vm = await target.readVm(wid, child.id, v.id);
    if (!vm) throw new Error(`vm.json of ${v.id} in snapshot ${child.id} is missing`);
    const parentVm = await target.readVm(wid, snap.id, v.id);
    const disks = [];
    const merged: string[] = [];
    for (const d of vm.disks) {
      const imageKey = vmFileKey(wid, child.id, v.id, d.image);
      const onParent =
        d.backing !== null &&
        resolveRelativeKey(imageKey, d.backing).startsWith(snapshotPrefix(wid, snap.id));
      if (!onParent) {
        if (d.mode === 'incremental') allFull = false;
        disks.push(d);
        continue;
      }
      const parentDisk = parentVm?.disks.find((p) => p.name === d.name);
      // A re-run after a crash finds the commit journal and resumes (or does nothing if it finished).
      await commitOverlay(path(imageKey));
      merged.push(path(imageKey));
      const manifest = await manifestOf(path(imageKey));
      await writeMetadata(target.backend, 'manifest', diskManifestKey(wid, child.id, v.id, d.name), manifest);
      // Snapshot folders all sit at the same depth, so the parent's relative backing name is valid here too.
      const backing = parentDisk?.backing ?? null;
      if (backing !== null) allFull = false;
      disks.push({
        ...d,
        backing,
        mode: backing === null ? ('full' as const) : ('incremental' as const),
        storedBytes: manifest.size,
      });
    }
    stored += disks.reduce((n, d) => n + d.storedBytes, 0);
    const { checksum: _c, formatVersion: _f, kind: _k, ...rest } = vm;
    await writeMetadata(target.backend, 'vm', vmKey(wid, child.id, v.id), { ...rest, disks });
    // vm.json now records the merge, so the journals (which keep a re-run from merging twice) can go.
    for (const p of merged) await forgetCommit(p);
    for (const row of await listSnapshotVms(ctx.db, child.id)) {
      if (row.domain_uuid !== vm.uuid.toLowerCase()) continue;
      for (const cd of await listSnapshotDisks(ctx.db, { snapshotVmId: row.id })) {
        const m = disks.find((x) => x.targetDev === cd.target_dev);
        if (m) await updateSnapshotDisk(ctx.db, cd.id, { type: m.mode, storedBytes: m.storedBytes });
      }
    }
  }
  const type = allFull ? 'full' : childMeta.type;
  const parentSnapshotId = type === 'full' ? null : snap.parent_id;
  const { checksum: _c, formatVersion: _f, kind: _k, ...rest } = childMeta;
  await writeMetadata(target.backend, 'snapshot', snapshotKey(wid, child.id), {
    ...rest,
    type,
    parentSnapshotId,
    sizes: { ...childMeta.sizes, storedBytes: stored },
  });
  await ctx.db
    .updateTable('snapshots')
    .set({ type, parent_id: parentSnapshotId, stored_bytes: stored })
    .where('id', '=', child.id)
    .execute();
}
