import { restoreDomain } from '../restore-domain.js';
import { restoreInPlace } from '../restore-in-place.js';
import { findSnapshot, findVm } from '../restore-source.js';
import type { TaskContext, TaskHandler } from '../task-handlers.js';
import { RESTORE_VM_TASK, restoreVmPayload } from './payloads.js';
import { openLocator } from './target-locator.js';

/**
 * `restore.vm`: one VM of a snapshot, either as a new domain (name, storage directory, network map,
 * disks from the plan) or in place over the existing domain, which is shut off first (a guest that
 * does not stop within a minute is powered off: the restore overwrites its disks anyway).
 */
export const restoreVmHandler: TaskHandler = async (ctx: TaskContext) => {
  const p = restoreVmPayload.parse(ctx.task.payload);
  const target = await openLocator(p.target);
  try {
    const snap = await findSnapshot(target, p.workloadId, p.snapshotId);
    const vm = await findVm(target, snap, p.vmId);
    const onProgress = (x: { bytesDone: number; bytesTotal: number }) =>
      ctx.progress({ done: x.bytesDone, total: x.bytesTotal });
    if (p.mode === 'in_place') {
      const hv = ctx.hypervisor;
      if ((await hv.domains.state(p.name)) !== 'shutoff') {
        ctx.log('info', `shutting ${p.name} off before writing its disks`);
        await hv.domains.shutdown(p.name, { timeoutMs: 60_000, forceAfterTimeout: true });
      }
      const r = await restoreInPlace({
        backend: target.backend,
        vm,
        hypervisor: hv,
        domain: p.name,
        disks: p.disks,
        onProgress,
        signal: ctx.signal,
      });
      return { name: r.domain, mode: 'in_place', disks: r.disks };
    }
    const r = await restoreDomain({
      backend: target.backend,
      vm,
      hypervisor: ctx.hypervisor,
      name: p.name,
      dir: p.storageDir ?? '/var/lib/libvirt/images/lifeboat',
      networkMap: p.networkMap,
      disks: p.disks,
      start: p.start,
      onProgress,
      signal: ctx.signal,
    });
    return {
      name: r.name,
      uuid: r.uuid,
      mode: 'new',
      disks: r.disks,
      skipped: r.skipped,
      started: r.started,
    };
  } finally {
    await target.backend.close();
  }
};

export { RESTORE_VM_TASK };
