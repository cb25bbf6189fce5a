import type { Selectable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { assertValidName } from './names.js';
import { type Page, type ProjectScope, pageOf } from './page.js';
import type { CatalogDb, ProjectsTable, UsersTable } from './schema.js';
import { isoNow } from './time.js';

export type Project = Selectable<ProjectsTable>;
type User = Selectable<UsersTable>;

export async function createProject(
  db: CatalogDb,
  input: { name: string; description?: string },
): Promise<Project> {
  assertValidName('project', input.name);
  const now = isoNow();
  const row = {
    id: newId(),
    name: input.name,
    description: input.description ?? '',
    created_at: now,
    updated_at: now,
  };
  await guardWrite(`project ${input.name}`, () => db.insertInto('projects').values(row).execute());
  return row;
}

export async function getProject(db: CatalogDb, id: string): Promise<Project> {
  const row = await db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('project', id);
  return row;
}

export async function findProjectByName(db: CatalogDb, name: string): Promise<Project | undefined> {
  return db.selectFrom('projects').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function listProjects(
  db: CatalogDb,
  scope: ProjectScope = null,
  page?: Page,
): Promise<Project[]> {
  if (scope !== null && scope.length === 0) return [];
  const { limit, offset } = pageOf(page);
  let q = db.selectFrom('projects').selectAll().orderBy('name').limit(limit).offset(offset);
  if (scope !== null) q = q.where('id', 'in', [...scope]);
  return q.execute();
}

export async function updateProject(
  db: CatalogDb,
  id: string,
  patch: { name?: string; description?: string },
): Promise<Project> {
  if (patch.name !== undefined) assertValidName('project', patch.name);
  const res = await guardWrite(`project ${patch.name ?? id}`, () =>
    db
      .updateTable('projects')
      .set({ ...patch, updated_at: isoNow() })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst(),
  );
  if (!res) throw notFound('project', id);
  return res;
}

/** Fails with CATALOG_IN_USE while workloads still belong to the project. */
export async function deleteProject(db: CatalogDb, id: string): Promise<void> {
  const res = await guardWrite(`project ${id}`, () =>
    db.deleteFrom('projects').where('id', '=', id).executeTakeFirst(),
  );
  if (res.numDeletedRows === 0n) throw notFound('project', id);
}

/** Idempotent: adding a member twice is not an error. */
export async function addProjectMember(db: CatalogDb, projectId: string, userId: string): Promise<void> {
  await guardWrite('project member', () =>
    db
      .insertInto('project_members')
      .values({ project_id: projectId, user_id: userId, created_at: isoNow() })
      .onConflict((oc) => oc.columns(['project_id', 'user_id']).doNothing())
      .execute(),
  );
}

export async function removeProjectMember(
  db: CatalogDb,
  projectId: string,
  userId: string,
): Promise<boolean> {
  const res = await db
    .deleteFrom('project_members')
    .where('project_id', '=', projectId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return res.numDeletedRows > 0n;
}

export async function listProjectMembers(db: CatalogDb, projectId: string): Promise<User[]> {
  return db
    .selectFrom('project_members as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .selectAll('u')
    .where('m.project_id', '=', projectId)
    .orderBy('u.name')
    .execute();
}

export async function projectIdsOfUser(db: CatalogDb, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('project_members')
    .select('project_id')
    .where('user_id', '=', userId)
    .execute();
  return rows.map((r) => r.project_id);
}
