import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotWriter } from '../../target/snapshot-writer.js';
import { DEFAULT_SCRATCH_DIR } from '../backup.js';
import { backupVm } from '../backup-vm.js';
import type { TaskContext, TaskHandler } from '../task-handlers.js';
import { delegatedLease } from './delegated-lease.js';
import { SNAPSHOT_VM_TASK, type SnapshotVmResult, snapshotVmPayload } from './payloads.js';
import { openLocator } from './target-locator.js';

/**
 * `snapshot.vm`: one VM of a workload snapshot. Opens the snapshot folder the controller chose
 * (type and parent are the controller's), writes this VM's images, manifests and vm.json through
 * backupVm (changed-block incremental on the parent's checkpoint; a disk that cannot be incremental
 * falls back to full with a warning), and leaves the commit (snapshot.json) to the controller once
 * every VM is done. A VM the parent snapshot does not hold is backed up in full.
 */
export const snapshotVmHandler: TaskHandler = async (ctx: TaskContext) => {
  const p = snapshotVmPayload.parse(ctx.task.payload);
  const target = await openLocator(p.target);
  try {
    const lease = delegatedLease(target, p.workloadId, p.leaseToken);
    const parentVm = p.parentSnapshotId
      ? ((await target.readVm(p.workloadId, p.parentSnapshotId, p.vm.id)) ?? null)
      : null;
    const writer = await SnapshotWriter.begin(target, lease, {
      snapshotId: p.snapshotId,
      type: p.type,
      parentSnapshotId: p.parentSnapshotId,
    });
    // One scratch folder per VM: the VMs of a host run at once, and a killed run's crash journal is
    // found again by the next run of the same VM.
    const scratchDir = join(DEFAULT_SCRATCH_DIR, `vm-${p.vm.uuid}`);
    await mkdir(scratchDir, { recursive: true, mode: 0o755 });
    await chmod(scratchDir, 0o755);
    const totals = new Map<string, { done: number; total: number }>();
    // The VM is known by UUID (names change); libvirt lookups here go by name.
    const found = (await ctx.hypervisor.domains.list()).find((d) => d.uuid.toLowerCase() === p.vm.uuid);
    const handle = await backupVm({
      hypervisor: ctx.hypervisor,
      domain: found?.name ?? p.vm.uuid,
      writer,
      vmId: p.vm.id,
      parentVm,
      excludeDisks: p.vm.excludedDisks,
      scratchDir,
      signal: ctx.signal,
      journalTarget: {
        location: target.location,
        workloadId: p.workloadId,
        snapshotId: p.snapshotId,
        leaseToken: p.leaseToken,
      },
      onProgress: (x) => {
        totals.set(x.disk, { done: x.bytesDone, total: x.bytesTotal });
        let done = 0;
        let total = 0;
        for (const t of totals.values()) {
          done += t.done;
          total += t.total;
        }
        ctx.progress({ done, total });
      },
    });
    // The VM's part is on the target: its new checkpoint now covers every later change. If the
    // snapshot as a whole fails, the next one of this VM falls back to full (with a warning).
    const after = await handle.finish(true);
    for (const problem of after.problems) ctx.log('warn', problem);
    const result: SnapshotVmResult = {
      vmId: handle.vmId,
      disks: handle.disks.length,
      bytes: handle.disks.reduce((n, d) => n + d.copiedBytes, 0),
      warnings: handle.warnings.map((w) => w.message),
    };
    return result;
  } finally {
    await target.backend.close();
  }
};

export { SNAPSHOT_VM_TASK };
