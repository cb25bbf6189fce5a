import { hostname } from 'node:os';
import { type AuditActor, recordAudit } from '../catalog/audit.js';
import { CatalogError } from '../catalog/errors.js';
import { addProjectMember, createProject, findProjectByName } from '../catalog/projects.js';
import type { CatalogDb } from '../catalog/schema.js';
import { createTarget, listTargets, type Target } from '../catalog/targets.js';
import { createToken } from '../catalog/tokens.js';
import { countAdmins, createUser, findUserByName, type User } from '../catalog/users.js';
import { DATAMOVER_USER_NAME } from '../datamover/protocol.js';
import { openBackend } from '../target/open-target.js';
import { Target as BackupTarget } from '../target/target.js';

/** What `lifeboat serve` makes sure of at every start: an admin, the datamover user, a default target. */

const CONTROLLER_ACTOR: AuditActor = { name: 'controller', source: 'controller' };
export const FIRST_ADMIN_NAME = 'admin';
/** The project the first admin works in, so a fresh installation can protect VMs at once. */
export const FIRST_PROJECT_NAME = 'default';

/**
 * On a catalog without any admin, creates the user `admin` and a token for it, and returns the
 * token — the only time it exists in clear. Undefined when an admin exists (or another controller
 * starting at the same moment made one).
 */
export async function ensureFirstAdmin(db: CatalogDb): Promise<{ user: User; token: string } | undefined> {
  if ((await countAdmins(db)) > 0) return undefined;
  let user: User;
  try {
    user = await createUser(db, { name: FIRST_ADMIN_NAME, role: 'admin' });
  } catch (err) {
    if (err instanceof CatalogError && err.code === 'CATALOG_CONFLICT') return undefined;
    throw err;
  }
  const project =
    (await findProjectByName(db, FIRST_PROJECT_NAME)) ??
    (await createProject(db, { name: FIRST_PROJECT_NAME, description: 'created at first start' }));
  await addProjectMember(db, project.id, user.id);
  const { token, secret } = await createToken(db, { userId: user.id, name: 'first-start' });
  await recordAudit(db, CONTROLLER_ACTOR, {
    action: 'project.create',
    resourceType: 'project',
    resourceId: project.id,
    details: { name: project.name, reason: 'first start' },
  });
  await recordAudit(db, CONTROLLER_ACTOR, {
    action: 'user.create',
    resourceType: 'user',
    resourceId: user.id,
    details: { name: user.name, role: user.role, reason: 'first start' },
  });
  await recordAudit(db, CONTROLLER_ACTOR, {
    action: 'token.create',
    resourceType: 'token',
    resourceId: token.id,
    details: { user_id: user.id, name: token.name },
  });
  return { user, token: secret };
}

/** The service user whose tokens datamovers use (a member of no project: it sees nothing else). */
export async function ensureDatamoverUser(db: CatalogDb): Promise<User> {
  const existing = await findUserByName(db, DATAMOVER_USER_NAME);
  if (existing) return existing;
  try {
    const user = await createUser(db, { name: DATAMOVER_USER_NAME, role: 'member' });
    await recordAudit(db, CONTROLLER_ACTOR, {
      action: 'user.create',
      resourceType: 'user',
      resourceId: user.id,
      details: { name: user.name, role: user.role, reason: 'datamover service user' },
    });
    return user;
  } catch (err) {
    if (err instanceof CatalogError && err.code === 'CATALOG_CONFLICT') {
      const raced = await findUserByName(db, DATAMOVER_USER_NAME);
      if (raced) return raced;
    }
    throw err;
  }
}

/**
 * A fresh token for the controller's own (in-process) datamover, held in memory only. The one of
 * the previous start on this machine is deleted, so restarts leave no trail of dead tokens.
 */
export async function issueLocalDatamoverToken(db: CatalogDb, datamoverUser: User): Promise<string> {
  const name = `local-datamover@${hostname()}`.slice(0, 128).replace(/[^A-Za-z0-9 ._@+-]/g, '-');
  await db
    .deleteFrom('api_tokens')
    .where('user_id', '=', datamoverUser.id)
    .where('name', '=', name)
    .execute();
  const { secret } = await createToken(db, { userId: datamoverUser.id, name });
  return secret;
}

/**
 * The target given to `serve` (a directory or s3://...): initialised as a Lifeboat target (root
 * document written when the location is empty) and registered in the catalog, shared by every
 * project. A location registered already is reused, whatever its name.
 */
export async function ensureDefaultTarget(db: CatalogDb, location: string): Promise<Target> {
  const kind = location.startsWith('s3://') ? 's3' : 'fs';
  const backend = await openBackend(location, { create: kind === 'fs' });
  try {
    await BackupTarget.init(backend, { createdBy: `lifeboat serve on ${hostname()}` });
  } finally {
    await backend.close();
  }
  const url = kind === 'fs' ? backend.location : location;
  const targets = await listTargets(db);
  const existing = targets.find((t) => t.url === url);
  if (existing) return existing;
  const taken = new Set(targets.map((t) => t.name));
  let name = 'default';
  for (let i = 2; taken.has(name); i++) name = `default-${i}`;
  const target = await createTarget(db, { name, kind, url });
  await recordAudit(db, CONTROLLER_ACTOR, {
    action: 'target.create',
    resourceType: 'target',
    resourceId: target.id,
    details: { name, kind, url, reason: 'lifeboat serve --target' },
  });
  return target;
}
