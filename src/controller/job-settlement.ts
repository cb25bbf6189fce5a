import { CatalogError } from '../catalog/errors.js';
import { countTasksByStatus, getJob, type Job, setJobProgress, setJobStatus } from '../catalog/jobs.js';
import type { CatalogDb } from '../catalog/schema.js';
import { isTerminal } from '../catalog/status.js';
import type { Task } from '../catalog/tasks.js';
import { isoNow } from '../catalog/time.js';

/**
 * How task outcomes become the job's outcome (docs/datamover-protocol.md, "Jobs from tasks"):
 * - a failed task fails the job at once (with that task's reason); the job's queued tasks are
 *   cancelled and its running ones are told to stop at their next heartbeat;
 * - otherwise the job ends when no task is queued or running: succeeded when every task did,
 *   cancelled when it was being cancelled, failed when a task was cancelled behind its back.
 * Returns the job when this call finished it, undefined when it is still going (or someone else
 * finished it first: only one caller sees each transition).
 */
export async function settleJob(db: CatalogDb, jobId: string, trigger?: Task): Promise<Job | undefined> {
  const job = await getJob(db, jobId);
  if (isTerminal('job', job.status)) return undefined;
  if (trigger?.status === 'failed') {
    await cancelQueuedTasks(db, jobId);
    return transition(db, job, 'failed', taskFailureReason(trigger));
  }
  const counts = await countTasksByStatus(db, jobId);
  if (counts.queued + counts.running > 0) return undefined;
  const total = counts.succeeded + counts.failed + counts.cancelled;
  if (total === 0) return undefined;
  if (counts.failed > 0) return transition(db, job, 'failed', 'a task of this job failed');
  if (counts.cancelled > 0) {
    return job.status === 'cancelling' || job.status === 'queued'
      ? transition(db, job, 'cancelled')
      : transition(db, job, 'failed', 'a task of this job was cancelled');
  }
  await aggregateJobProgress(db, jobId);
  return transition(db, job, 'succeeded');
}

export function taskFailureReason(task: Task): string {
  return `${task.kind} task ${task.id} failed: ${task.error ?? 'no reason recorded'}`;
}

async function transition(
  db: CatalogDb,
  job: Job,
  to: 'succeeded' | 'failed' | 'cancelled',
  error?: string,
): Promise<Job | undefined> {
  // A queued job has no path to succeeded/cancelled-by-task; route it through running first.
  try {
    if (job.status === 'queued' && to !== 'failed' && to !== 'cancelled')
      await setJobStatus(db, job.id, 'running');
    return await setJobStatus(db, job.id, to, error === undefined ? {} : { error });
  } catch (err) {
    if (err instanceof CatalogError && err.code === 'CATALOG_BAD_TRANSITION') return undefined;
    throw err;
  }
}

async function cancelQueuedTasks(db: CatalogDb, jobId: string): Promise<void> {
  await db
    .updateTable('tasks')
    .set({ status: 'cancelled', finished_at: isoNow(), error: 'another task of the job failed' })
    .where('job_id', '=', jobId)
    .where('status', '=', 'queued')
    .execute();
}

/**
 * Queued tasks of finished jobs can never be claimed (claims skip finished jobs): e.g. a task whose
 * lease expired after another task had failed the job. They are cancelled so nothing looks pending.
 */
export async function cancelOrphanedTasks(db: CatalogDb): Promise<number> {
  const res = await db
    .updateTable('tasks')
    .set({ status: 'cancelled', finished_at: isoNow(), error: 'its job had already finished' })
    .where('status', '=', 'queued')
    .where('job_id', 'in', (eb) =>
      eb.selectFrom('jobs').select('id').where('status', 'in', ['succeeded', 'failed', 'cancelled']),
    )
    .executeTakeFirst();
  return Number(res.numUpdatedRows);
}

/** The job's progress is the sum of its tasks' (bytes for data-moving tasks). */
export async function aggregateJobProgress(
  db: CatalogDb,
  jobId: string,
): Promise<{ done: number; total: number }> {
  const row = await db
    .selectFrom('tasks')
    .select((eb) => [
      eb.fn.coalesce(eb.fn.sum<number>('progress_done'), eb.lit(0)).as('done'),
      eb.fn.coalesce(eb.fn.sum<number>('progress_total'), eb.lit(0)).as('total'),
    ])
    .where('job_id', '=', jobId)
    .executeTakeFirstOrThrow();
  const done = Number(row.done);
  const total = Number(row.total);
  await setJobProgress(db, jobId, done, total);
  return { done, total };
}

/**
 * Jobs that are running or cancelling but have no live task left — e.g. cancelled after their last
 * task had already finished. The sweeper settles them; `quietSince` leaves alone jobs touched
 * recently (a hook may be adding the next task of a job right now).
 */
export async function jobsWithoutLiveTasks(db: CatalogDb, quietSince: string): Promise<string[]> {
  const rows = await db
    .selectFrom('jobs as j')
    .select('j.id')
    .where('j.status', 'in', ['running', 'cancelling'])
    .where('j.updated_at', '<', quietSince)
    .where(({ exists, selectFrom }) =>
      exists(selectFrom('tasks as t').select('t.id').whereRef('t.job_id', '=', 'j.id')),
    )
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('tasks as t')
            .select('t.id')
            .whereRef('t.job_id', '=', 'j.id')
            .where((eb) =>
              eb.or([eb('t.status', 'in', ['queued', 'running']), eb('t.finished_at', '>=', quietSince)]),
            ),
        ),
      ),
    )
    .execute();
  return rows.map((r) => r.id);
}
