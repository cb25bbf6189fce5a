import { RESTORE_VM_TASK, SNAPSHOT_VM_TASK } from '../datamover/handlers/payloads.js';
import type { ControllerContext } from './context.js';
import { settleRestoreJob } from './restores.js';
import { settleSnapshotJob } from './snapshot-settle.js';
import type { TaskHookRegistry } from './task-hooks.js';

/**
 * Plugs the snapshot and restore services into the task plumbing: every outcome of one of their
 * tasks (and the end of their jobs) lets them settle their snapshot or restore.
 */
export function registerDomainHooks(registry: TaskHookRegistry, ctx: ControllerContext): void {
  const snapshot = ({ job }: { job: { id: string } }) => settleSnapshotJob(ctx, job.id);
  registry.onTask(SNAPSHOT_VM_TASK, {
    onTaskSucceeded: snapshot,
    onTaskFailed: snapshot,
    onTaskCancelled: snapshot,
  });
  registry.onJob('snapshot', { onJobFinished: snapshot });
  const restore = ({ job }: { job: { id: string } }) => settleRestoreJob(ctx, job.id);
  registry.onTask(RESTORE_VM_TASK, {
    onTaskSucceeded: restore,
    onTaskFailed: restore,
    onTaskCancelled: restore,
  });
  registry.onJob('restore', { onJobFinished: restore });
}
