import type { Selectable, Updateable } from 'kysely';
import { CatalogError, guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson } from './json.js';
import { appendToJsonArray } from './json-append.js';
import { type Page, type ProjectScope, pageOf } from './page.js';
import type { CatalogDb, JobsTable } from './schema.js';
import { allowedFrom, badTransition, isTerminal, type JobStatus } from './status.js';
import { type IsoTime, isoNow } from './time.js';

export * from './tasks.js';

export interface JobMessage {
  at: IsoTime;
  level: 'info' | 'warning' | 'error';
  text: string;
}

export interface Job extends Omit<Selectable<JobsTable>, 'messages'> {
  messages: JobMessage[];
}

export function toJob(row: Selectable<JobsTable>): Job {
  return { ...row, messages: parseJson<JobMessage[]>(row.messages, []) };
}

export interface NewJob {
  kind: string;
  projectId?: string | null;
  userId?: string | null;
  resourceType?: string | null;
  resourceId?: string | null;
}

export async function createJob(db: CatalogDb, input: NewJob): Promise<Job> {
  const now = isoNow();
  const id = newId();
  await guardWrite(`job ${input.kind}`, () =>
    db
      .insertInto('jobs')
      .values({
        id,
        kind: input.kind,
        status: 'queued',
        project_id: input.projectId ?? null,
        user_id: input.userId ?? null,
        resource_type: input.resourceType ?? null,
        resource_id: input.resourceId ?? null,
        error: null,
        created_at: now,
        updated_at: now,
        started_at: null,
        finished_at: null,
      })
      .execute(),
  );
  return getJob(db, id);
}

export async function getJob(db: CatalogDb, id: string): Promise<Job> {
  const row = await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('job', id);
  return toJob(row);
}

export interface JobFilter {
  scope?: ProjectScope;
  status?: JobStatus;
  kind?: string;
  resourceType?: string;
  resourceId?: string;
}

/** Newest first. */
export async function listJobs(db: CatalogDb, filter: JobFilter = {}, page?: Page): Promise<Job[]> {
  const scope = filter.scope ?? null;
  if (scope !== null && scope.length === 0) return [];
  const { limit, offset } = pageOf(page);
  let q = db.selectFrom('jobs').selectAll();
  if (scope !== null) q = q.where('project_id', 'in', [...scope]);
  if (filter.status) q = q.where('status', '=', filter.status);
  if (filter.kind) q = q.where('kind', '=', filter.kind);
  if (filter.resourceType) q = q.where('resource_type', '=', filter.resourceType);
  if (filter.resourceId) q = q.where('resource_id', '=', filter.resourceId);
  const rows = await q
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .offset(offset)
    .execute();
  return rows.map(toJob);
}

/**
 * Moves a job to `to` if status.ts allows it from the current status — one conditional UPDATE, so
 * of two racing writers exactly one wins and the other gets CATALOG_BAD_TRANSITION.
 */
export async function setJobStatus(
  db: CatalogDb,
  id: string,
  to: JobStatus,
  extra: { error?: string | null } = {},
): Promise<Job> {
  const now = isoNow();
  const set: Updateable<JobsTable> = { status: to, updated_at: now };
  if (extra.error !== undefined) set.error = extra.error;
  if (isTerminal('job', to)) set.finished_at = now;
  const row = await db
    .updateTable('jobs')
    .set((eb) => ({
      ...set,
      ...(to === 'running' ? { started_at: eb.fn.coalesce('started_at', eb.val(now)) } : {}),
    }))
    .where('id', '=', id)
    .where('status', 'in', allowedFrom('job', to))
    .returningAll()
    .executeTakeFirst();
  if (row) return toJob(row);
  throw badTransition('job', (await getJob(db, id)).status, to);
}

/**
 * Asks a job to stop. A queued job is cancelled at once; a running one becomes `cancelling` and its
 * datamovers learn it from their next heartbeat. Tasks nobody has claimed yet are cancelled now.
 * A job already finished is returned unchanged.
 */
export async function requestJobCancel(db: CatalogDb, id: string): Promise<Job> {
  const job = await getJob(db, id);
  if (isTerminal('job', job.status) || job.status === 'cancelling') return job;
  const now = isoNow();
  await db
    .updateTable('tasks')
    .set({ status: 'cancelled', finished_at: now })
    .where('job_id', '=', id)
    .where('status', '=', 'queued')
    .execute();
  try {
    return await setJobStatus(db, id, job.status === 'queued' ? 'cancelled' : 'cancelling');
  } catch (err) {
    // The job moved on between our read and our write (e.g. queued → running): try once more.
    if (err instanceof CatalogError && err.code === 'CATALOG_BAD_TRANSITION') return requestJobCancel(db, id);
    throw err;
  }
}

export async function setJobProgress(db: CatalogDb, id: string, done: number, total: number): Promise<void> {
  const res = await db
    .updateTable('jobs')
    .set({ progress_done: done, progress_total: total, updated_at: isoNow() })
    .where('id', '=', id)
    .executeTakeFirst();
  if (res.numUpdatedRows === 0n) throw notFound('job', id);
}

export async function appendJobMessage(
  db: CatalogDb,
  id: string,
  level: JobMessage['level'],
  text: string,
): Promise<void> {
  const message: JobMessage = { at: isoNow(), level, text };
  await appendToJsonArray(db, 'jobs', 'messages', id, message);
}

/** Deletes the job and its tasks. */
export async function deleteJob(db: CatalogDb, id: string): Promise<void> {
  const res = await db.deleteFrom('jobs').where('id', '=', id).executeTakeFirst();
  if (res.numDeletedRows === 0n) throw notFound('job', id);
}
