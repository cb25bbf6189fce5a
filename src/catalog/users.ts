import type { Selectable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { isUuid, newId } from './ids.js';
import { assertValidName } from './names.js';
import { type Page, pageOf } from './page.js';
import { projectIdsOfUser } from './projects.js';
import type { CatalogDb, UsersTable } from './schema.js';
import { isoNow } from './time.js';

export type User = Selectable<UsersTable>;
export type UserRole = User['role'];
export const USER_ROLES = ['admin', 'member'] as const satisfies readonly UserRole[];

export interface UserWithProjects extends User {
  project_ids: string[];
}

export async function createUser(
  db: CatalogDb,
  input: { name: string; role: UserRole; email?: string | null },
): Promise<User> {
  assertValidName('user', input.name);
  const now = isoNow();
  const row: User = {
    id: newId(),
    name: input.name,
    role: input.role,
    email: input.email ?? null,
    created_at: now,
    updated_at: now,
  };
  await guardWrite(`user ${input.name}`, () => db.insertInto('users').values(row).execute());
  return row;
}

export async function getUser(db: CatalogDb, id: string): Promise<User> {
  const row = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('user', id);
  return row;
}

export async function findUserByName(db: CatalogDb, name: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
}

/** For people typing at a prompt: a UUID is an id, anything else a name. */
export async function resolveUser(db: CatalogDb, idOrName: string): Promise<User> {
  const byName = await findUserByName(db, idOrName);
  if (byName) return byName;
  if (isUuid(idOrName)) return getUser(db, idOrName);
  throw notFound('user', idOrName);
}

export async function getUserWithProjects(db: CatalogDb, id: string): Promise<UserWithProjects> {
  const user = await getUser(db, id);
  return { ...user, project_ids: await projectIdsOfUser(db, id) };
}

export async function listUsers(db: CatalogDb, page?: Page): Promise<UserWithProjects[]> {
  const { limit, offset } = pageOf(page);
  const users = await db
    .selectFrom('users')
    .selectAll()
    .orderBy('name')
    .limit(limit)
    .offset(offset)
    .execute();
  if (users.length === 0) return [];
  const memberships = await db
    .selectFrom('project_members')
    .select(['user_id', 'project_id'])
    .where(
      'user_id',
      'in',
      users.map((u) => u.id),
    )
    .execute();
  return users.map((u) => ({
    ...u,
    project_ids: memberships.filter((m) => m.user_id === u.id).map((m) => m.project_id),
  }));
}

export async function updateUser(
  db: CatalogDb,
  id: string,
  patch: { name?: string; role?: UserRole; email?: string | null },
): Promise<User> {
  if (patch.name !== undefined) assertValidName('user', patch.name);
  const res = await guardWrite(`user ${patch.name ?? id}`, () =>
    db
      .updateTable('users')
      .set({ ...patch, updated_at: isoNow() })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst(),
  );
  if (!res) throw notFound('user', id);
  return res;
}

/** Deletes the user with their tokens and memberships; their workloads and jobs stay, unowned. */
export async function deleteUser(db: CatalogDb, id: string): Promise<void> {
  const res = await guardWrite(`user ${id}`, () =>
    db.deleteFrom('users').where('id', '=', id).executeTakeFirst(),
  );
  if (res.numDeletedRows === 0n) throw notFound('user', id);
}

export async function countAdmins(db: CatalogDb): Promise<number> {
  const row = await db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('role', '=', 'admin')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
