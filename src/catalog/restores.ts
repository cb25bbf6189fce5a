import type { Selectable, Updateable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import { type Page, type ProjectScope, pageOf } from './page.js';
import type { CatalogDb, RestoresTable } from './schema.js';
import { allowedFrom, badTransition, isTerminal, type RestoreStatus } from './status.js';
import { isoNow } from './time.js';

export interface Restore extends Omit<Selectable<RestoresTable>, 'plan'> {
  /** The restore plan (which VMs, names, flavors, networks, disks); its shape belongs to the controller. */
  plan: Record<string, unknown>;
}
export type RestoreKind = Restore['kind'];

const toRestore = (r: Selectable<RestoresTable>): Restore => ({ ...r, plan: parseJson(r.plan, {}) });

export async function createRestore(
  db: CatalogDb,
  input: {
    projectId: string;
    snapshotId: string;
    kind: RestoreKind;
    plan?: Record<string, unknown>;
    userId?: string | null;
    jobId?: string | null;
  },
): Promise<Restore> {
  const id = newId();
  await guardWrite('restore', () =>
    db
      .insertInto('restores')
      .values({
        id,
        project_id: input.projectId,
        snapshot_id: input.snapshotId,
        user_id: input.userId ?? null,
        job_id: input.jobId ?? null,
        kind: input.kind,
        plan: toJson(input.plan ?? {}),
        status: 'queued',
        error: null,
        created_at: isoNow(),
        started_at: null,
        finished_at: null,
      })
      .execute(),
  );
  return getRestore(db, id);
}

export async function getRestore(db: CatalogDb, id: string): Promise<Restore> {
  const row = await db.selectFrom('restores').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('restore', id);
  return toRestore(row);
}

/** Newest first. */
export async function listRestores(
  db: CatalogDb,
  filter: { scope?: ProjectScope; snapshotId?: string } = {},
  page?: Page,
): Promise<Restore[]> {
  const scope = filter.scope ?? null;
  if (scope !== null && scope.length === 0) return [];
  const { limit, offset } = pageOf(page);
  let q = db.selectFrom('restores').selectAll();
  if (scope !== null) q = q.where('project_id', 'in', [...scope]);
  if (filter.snapshotId) q = q.where('snapshot_id', '=', filter.snapshotId);
  const rows = await q
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .offset(offset)
    .execute();
  return rows.map(toRestore);
}

export async function setRestoreStatus(
  db: CatalogDb,
  id: string,
  to: RestoreStatus,
  extra: { error?: string | null } = {},
): Promise<Restore> {
  const now = isoNow();
  const set: Updateable<RestoresTable> = { status: to };
  if (extra.error !== undefined) set.error = extra.error;
  if (to === 'running') set.started_at = now;
  if (isTerminal('restore', to)) set.finished_at = now;
  const row = await db
    .updateTable('restores')
    .set(set)
    .where('id', '=', id)
    .where('status', 'in', allowedFrom('restore', to))
    .returningAll()
    .executeTakeFirst();
  if (row) return toRestore(row);
  throw badTransition('restore', (await getRestore(db, id)).status, to);
}

export async function setRestoreProgress(
  db: CatalogDb,
  id: string,
  done: number,
  total: number,
): Promise<void> {
  const res = await db
    .updateTable('restores')
    .set({ progress_done: done, progress_total: total })
    .where('id', '=', id)
    .executeTakeFirst();
  if (res.numUpdatedRows === 0n) throw notFound('restore', id);
}
