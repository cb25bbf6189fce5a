import type { Selectable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import type { ProjectScope } from './page.js';
import type { CatalogDb, TargetsTable } from './schema.js';
import { isoNow } from './time.js';

/** A backup target as anyone may see it: no secrets, ever (they are in target_secrets). */
export interface Target extends Omit<Selectable<TargetsTable>, 'settings'> {
  settings: Record<string, unknown>;
}
export type TargetKind = Target['kind'];
/** Credentials for a target (S3 keys...). Kept out of Target so they cannot leak with it. */
export type TargetSecrets = Record<string, string>;

function toTarget(row: Selectable<TargetsTable>): Target {
  return { ...row, settings: parseJson(row.settings, {}) };
}

export async function createTarget(
  db: CatalogDb,
  input: {
    name: string;
    kind: TargetKind;
    url: string;
    projectId?: string | null;
    settings?: Record<string, unknown>;
    secrets?: TargetSecrets;
  },
): Promise<Target> {
  const now = isoNow();
  const row = {
    id: newId(),
    project_id: input.projectId ?? null,
    name: input.name,
    kind: input.kind,
    url: input.url,
    settings: toJson(input.settings ?? {}),
    created_at: now,
    updated_at: now,
  };
  await guardWrite(`target ${input.name}`, () =>
    db.transaction().execute(async (trx) => {
      await trx.insertInto('targets').values(row).execute();
      if (input.secrets) {
        await trx
          .insertInto('target_secrets')
          .values({ target_id: row.id, secrets: toJson(input.secrets), updated_at: now })
          .execute();
      }
    }),
  );
  return toTarget(row);
}

export async function getTarget(db: CatalogDb, id: string): Promise<Target> {
  const row = await db.selectFrom('targets').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('target', id);
  return toTarget(row);
}

/** Targets a scope may use: its projects' own plus the shared ones (project_id null). */
export async function listTargets(db: CatalogDb, scope: ProjectScope = null): Promise<Target[]> {
  let q = db.selectFrom('targets').selectAll().orderBy('name');
  if (scope !== null) {
    q = q.where((eb) =>
      scope.length === 0
        ? eb('project_id', 'is', null)
        : eb.or([eb('project_id', 'is', null), eb('project_id', 'in', [...scope])]),
    );
  }
  return (await q.execute()).map(toTarget);
}

export async function getTargetSecrets(db: CatalogDb, targetId: string): Promise<TargetSecrets> {
  const row = await db
    .selectFrom('target_secrets')
    .select('secrets')
    .where('target_id', '=', targetId)
    .executeTakeFirst();
  return parseJson<TargetSecrets>(row?.secrets, {});
}

export async function setTargetSecrets(
  db: CatalogDb,
  targetId: string,
  secrets: TargetSecrets,
): Promise<void> {
  await getTarget(db, targetId);
  const now = isoNow();
  await db
    .insertInto('target_secrets')
    .values({ target_id: targetId, secrets: toJson(secrets), updated_at: now })
    .onConflict((oc) => oc.column('target_id').doUpdateSet({ secrets: toJson(secrets), updated_at: now }))
    .execute();
}

/** Fails with CATALOG_IN_USE while workloads still write to it. */
export async function deleteTarget(db: CatalogDb, id: string): Promise<void> {
  const res = await guardWrite(`target ${id}`, () =>
    db.deleteFrom('targets').where('id', '=', id).executeTakeFirst(),
  );
  if (res.numDeletedRows === 0n) throw notFound('target', id);
}
