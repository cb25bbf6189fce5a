import { type Selectable, sql } from 'kysely';
import { CatalogError, guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import { catalogDialect } from './open.js';
import type { CatalogDb, TasksTable } from './schema.js';
import { allowedFrom, TASK_STATUSES, type TaskStatus } from './status.js';
import { type IsoTime, isoNow, isoPlus } from './time.js';

/**
 * Tasks are the units a datamover pulls and runs. A claimed task carries a lease (owner + expiry);
 * the owner renews it with heartbeats. A lease that runs out puts the task back in the queue (or
 * fails it after max_attempts), so a datamover that dies never leaves a job hanging. Every write
 * by a datamover names its lease owner and is refused (CATALOG_LEASE_LOST) once it no longer holds it.
 */
export interface Task extends Omit<Selectable<TasksTable>, 'payload' | 'result'> {
  payload: Record<string, unknown>;
  result: unknown;
}

export function toTask(row: Selectable<TasksTable>): Task {
  return { ...row, payload: parseJson(row.payload, {}), result: parseJson<unknown>(row.result, null) };
}

export async function createTask(
  db: CatalogDb,
  input: {
    jobId: string;
    kind: string;
    hostId?: string | null;
    payload?: Record<string, unknown>;
    maxAttempts?: number;
  },
): Promise<Task> {
  const id = newId();
  await guardWrite(`task ${input.kind}`, () =>
    db
      .insertInto('tasks')
      .values({
        id,
        job_id: input.jobId,
        host_id: input.hostId ?? null,
        kind: input.kind,
        payload: toJson(input.payload ?? {}),
        status: 'queued',
        lease_owner: null,
        lease_expires_at: null,
        heartbeat_at: null,
        max_attempts: input.maxAttempts ?? 3,
        result: null,
        error: null,
        created_at: isoNow(),
        started_at: null,
        finished_at: null,
      })
      .execute(),
  );
  return getTask(db, id);
}

export async function getTask(db: CatalogDb, id: string): Promise<Task> {
  const row = await db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('task', id);
  return toTask(row);
}

export async function listTasks(db: CatalogDb, jobId: string): Promise<Task[]> {
  const rows = await db
    .selectFrom('tasks')
    .selectAll()
    .where('job_id', '=', jobId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.map(toTask);
}

export async function countTasksByStatus(db: CatalogDb, jobId: string): Promise<Record<TaskStatus, number>> {
  const rows = await db
    .selectFrom('tasks')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .where('job_id', '=', jobId)
    .groupBy('status')
    .execute();
  const counts = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
  for (const r of rows) counts[r.status] = Number(r.n);
  return counts;
}

/**
 * Atomically takes the oldest queued task this host may run (its own, or one for any host) whose
 * job is still live, and leases it for `leaseMs`. Two claimers never get the same task: PostgreSQL
 * locks the candidate row with FOR UPDATE SKIP LOCKED (a concurrent claimer moves on to the next
 * one); SQLite runs the single UPDATE under its database write lock. Returns undefined when there is
 * nothing to do. Marks the job running when this is its first claimed task.
 */
export async function claimNextTask(
  db: CatalogDb,
  hostId: string,
  leaseMs: number,
  options: { owner?: string; now?: IsoTime } = {},
): Promise<Task | undefined> {
  const now = options.now ?? isoNow();
  const owner = options.owner ?? hostId;
  const expires = isoPlus(leaseMs, now);
  const lockClause = catalogDialect(db) === 'postgres' ? sql`for update of t skip locked` : sql``;
  const result = await sql<Selectable<TasksTable>>`
    update tasks
       set status = 'running', lease_owner = ${owner}, lease_expires_at = ${expires}, heartbeat_at = ${now},
           attempts = attempts + 1, started_at = coalesce(started_at, ${now})
     where id = (
             select t.id from tasks t join jobs j on j.id = t.job_id
              where t.status = 'queued' and (t.host_id = ${hostId} or t.host_id is null)
                and j.status in ('queued', 'running')
              order by t.created_at, t.id
              limit 1
              ${lockClause})
       and status = 'queued'
    returning *`.execute(db);
  const row = result.rows[0];
  if (!row) return undefined;
  await db
    .updateTable('jobs')
    .set({ status: 'running', started_at: now, updated_at: now })
    .where('id', '=', row.job_id)
    .where('status', '=', 'queued')
    .execute();
  return toTask(row);
}

export interface HeartbeatResult {
  task: Task;
  /** The job was asked to stop: the datamover should wind down and report `cancelled`. */
  cancelRequested: boolean;
}

/** Renews the lease (and records progress). CATALOG_LEASE_LOST when `owner` no longer holds the task. */
export async function heartbeatTask(
  db: CatalogDb,
  taskId: string,
  owner: string,
  leaseMs: number,
  progress: { done?: number; total?: number; now?: IsoTime } = {},
): Promise<HeartbeatResult> {
  const now = progress.now ?? isoNow();
  const row = await db
    .updateTable('tasks')
    .set({
      lease_expires_at: isoPlus(leaseMs, now),
      heartbeat_at: now,
      ...(progress.done !== undefined ? { progress_done: progress.done } : {}),
      ...(progress.total !== undefined ? { progress_total: progress.total } : {}),
    })
    .where('id', '=', taskId)
    .where('status', '=', 'running')
    .where('lease_owner', '=', owner)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw await leaseLost(db, taskId, owner);
  const job = await db.selectFrom('jobs').select('status').where('id', '=', row.job_id).executeTakeFirst();
  return { task: toTask(row), cancelRequested: job?.status === 'cancelling' || job?.status === 'cancelled' };
}

/** The lease holder reports the end of its task: succeeded (with a result), failed or cancelled. */
export async function finishTask(
  db: CatalogDb,
  taskId: string,
  owner: string,
  outcome:
    | { status: 'succeeded'; result?: unknown }
    | { status: 'failed'; error: string }
    | { status: 'cancelled' },
  now: IsoTime = isoNow(),
): Promise<Task> {
  const row = await db
    .updateTable('tasks')
    .set({
      status: outcome.status,
      finished_at: now,
      lease_expires_at: null,
      ...(outcome.status === 'succeeded' ? { result: toJson(outcome.result ?? null) } : {}),
      ...(outcome.status === 'failed' ? { error: outcome.error } : {}),
    })
    .where('id', '=', taskId)
    .where('status', 'in', allowedFrom('task', outcome.status))
    .where('lease_owner', '=', owner)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw await leaseLost(db, taskId, owner);
  return toTask(row);
}

async function leaseLost(db: CatalogDb, taskId: string, owner: string): Promise<CatalogError> {
  const task = await getTask(db, taskId);
  return new CatalogError(
    'CATALOG_LEASE_LOST',
    `task ${taskId} is ${task.status}${task.lease_owner ? ` (lease held by ${task.lease_owner})` : ''}, not leased to ${owner}`,
    { details: { taskId, status: task.status, leaseOwner: task.lease_owner } },
  );
}

export interface ExpiredTasks {
  /** Back in the queue for another attempt. */
  requeued: Task[];
  /** Out of attempts. */
  failed: Task[];
  /** Their job was being cancelled anyway. */
  cancelled: Task[];
}

/**
 * Reaps running tasks whose lease ran out before `now`: requeued while attempts remain, failed
 * after that, cancelled if their job is being cancelled. Each is one conditional UPDATE, safe to run
 * from several controllers at once.
 */
export async function expireStaleTasks(db: CatalogDb, now: IsoTime = isoNow()): Promise<ExpiredTasks> {
  const stale = db.updateTable('tasks').where('status', '=', 'running').where('lease_expires_at', '<', now);
  const cancellingJobs = db
    .selectFrom('jobs')
    .select('id')
    .where('status', 'in', ['cancelling', 'cancelled']);
  const cancelled = await stale
    .set({
      status: 'cancelled',
      lease_owner: null,
      lease_expires_at: null,
      finished_at: now,
      error: 'lease expired',
    })
    .where('job_id', 'in', cancellingJobs)
    .returningAll()
    .execute();
  const requeued = await stale
    .set({ status: 'queued', lease_owner: null, lease_expires_at: null })
    .where((eb) => eb('attempts', '<', eb.ref('max_attempts')))
    .returningAll()
    .execute();
  const failed = await stale
    .set({
      status: 'failed',
      lease_owner: null,
      lease_expires_at: null,
      finished_at: now,
      error: 'lease expired: the datamover stopped reporting and no attempts are left',
    })
    .returningAll()
    .execute();
  return { requeued: requeued.map(toTask), failed: failed.map(toTask), cancelled: cancelled.map(toTask) };
}
