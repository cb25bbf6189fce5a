import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { type AuditActor, recordAudit } from '../../catalog/audit.js';
import { CatalogError, notFound } from '../../catalog/errors.js';
import { isUuid } from '../../catalog/ids.js';
import { openCatalog } from '../../catalog/open.js';
import {
  addProjectMember,
  createProject,
  deleteProject,
  findProjectByName,
  getProject,
  listProjectMembers,
  listProjects,
  type Project,
  removeProjectMember,
} from '../../catalog/projects.js';
import type { CatalogDb } from '../../catalog/schema.js';
import { isoPlus } from '../../catalog/time.js';
import { type ApiToken, createToken, getToken, listTokens, revokeToken } from '../../catalog/tokens.js';
import {
  countAdmins,
  createUser,
  deleteUser,
  listUsers,
  resolveUser,
  USER_ROLES,
} from '../../catalog/users.js';
import { printJson, table, write } from '../format.js';

/**
 * `lifeboat admin user|project|token ...`: identities straight on the catalog database. They bypass
 * the API on purpose — the first admin and their first token must exist before anyone can call it —
 * so they need the database URL (and whatever access to it the operator has), not a token.
 */

const DAY_MS = 86_400_000;

/** Where an installation keeps its state unless told otherwise: `$LIFEBOAT_HOME`, else ~/.lifeboat. */
export function lifeboatHome(): string {
  return process.env.LIFEBOAT_HOME || join(homedir(), '.lifeboat');
}

export function defaultCatalogUrl(): string {
  return process.env.LIFEBOAT_DB || join(lifeboatHome(), 'lifeboat.db');
}

interface CommonOptions {
  db?: string;
  json?: boolean;
}

/** Runs `fn` on the catalog named by --db (migrating it first) and always closes it. */
async function withCatalog<T>(
  cmd: Command,
  fn: (db: CatalogDb, opts: CommonOptions) => Promise<T>,
): Promise<T> {
  const opts = cmd.optsWithGlobals<CommonOptions>();
  const db = await openCatalog(opts.db ?? defaultCatalogUrl());
  try {
    return await fn(db, opts);
  } finally {
    await db.destroy();
  }
}

function cliActor(): AuditActor {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry for this uid (containers): keep 'unknown'
  }
  return { name: `cli:${name}`, source: 'cli' };
}

async function resolveProject(db: CatalogDb, idOrName: string): Promise<Project> {
  const byName = await findProjectByName(db, idOrName);
  if (byName) return byName;
  if (isUuid(idOrName)) return getProject(db, idOrName);
  throw notFound('project', idOrName);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Token records as the CLI shows them: never the hash. */
function presentToken(t: ApiToken, userName?: string) {
  const { token_hash: _hash, ...rest } = t;
  return userName ? { ...rest, user_name: userName } : rest;
}

export function registerAdminCommands(program: Command): void {
  const admin = program
    .command('admin')
    .description('manage users, projects and API tokens directly in the catalog database')
    .option(
      '--db <url>',
      'catalog: SQLite path or postgres:// URL (default: $LIFEBOAT_DB or ~/.lifeboat/lifeboat.db)',
    )
    .option('--json', 'print JSON');
  registerUserCommands(admin.command('user').description('users and their roles'));
  registerProjectCommands(admin.command('project').description('projects and their members'));
  registerTokenCommands(admin.command('token').description('API tokens (bearer tokens)'));
}

function registerUserCommands(user: Command): void {
  user
    .command('create')
    .description('create a user (role member unless --role admin)')
    .argument('<name>', 'user name')
    .addOption(new Option('--role <role>', 'role').choices(USER_ROLES).default('member'))
    .option('--email <email>', 'email address for notifications')
    .option('--project <project>', 'make the user a member of this project (repeatable)', collect, [])
    .action(
      async (
        name: string,
        o: { role: 'admin' | 'member'; email?: string; project: string[] },
        cmd: Command,
      ) =>
        withCatalog(cmd, async (db, opts) => {
          const projects = [];
          for (const p of o.project) projects.push(await resolveProject(db, p));
          const created = await createUser(db, { name, role: o.role, email: o.email });
          for (const p of projects) await addProjectMember(db, p.id, created.id);
          await recordAudit(db, cliActor(), {
            action: 'user.create',
            resourceType: 'user',
            resourceId: created.id,
            details: { name, role: o.role, project_ids: projects.map((p) => p.id) },
          });
          const out = { ...created, project_ids: projects.map((p) => p.id) };
          if (opts.json) printJson(out);
          else write(`created user ${created.name} (${created.role}) ${created.id}\n`);
        }),
    );

  user
    .command('list')
    .description('list users with their projects')
    .action(async (_o: unknown, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const users = await listUsers(db, { limit: 1000 });
        if (opts.json) return printJson(users);
        const names = new Map((await listProjects(db, null, { limit: 1000 })).map((p) => [p.id, p.name]));
        write(
          table(
            ['NAME', 'ROLE', 'ID', 'PROJECTS'],
            users.map((u) => [
              u.name,
              u.role,
              u.id,
              u.project_ids.map((id) => names.get(id) ?? id).join(','),
            ]),
          ),
        );
      }),
    );

  user
    .command('delete')
    .description('delete a user with their tokens (their workloads stay, unowned)')
    .argument('<user>', 'user name or id')
    .option('--force', 'allow deleting the last admin')
    .action(async (who: string, o: { force?: boolean }, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const target = await resolveUser(db, who);
        if (target.role === 'admin' && !o.force && (await countAdmins(db)) <= 1) {
          throw new CatalogError(
            'CATALOG_IN_USE',
            `${target.name} is the last admin (use --force to delete anyway)`,
          );
        }
        await deleteUser(db, target.id);
        await recordAudit(db, cliActor(), {
          action: 'user.delete',
          resourceType: 'user',
          resourceId: target.id,
          details: { name: target.name },
        });
        if (opts.json) printJson({ deleted: target.id });
        else write(`deleted user ${target.name}\n`);
      }),
    );
}

function registerProjectCommands(project: Command): void {
  project
    .command('create')
    .description('create a project')
    .argument('<name>', 'project name')
    .option('--description <text>', 'what the project is for')
    .action(async (name: string, o: { description?: string }, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const created = await createProject(db, { name, description: o.description });
        await recordAudit(db, cliActor(), {
          action: 'project.create',
          resourceType: 'project',
          resourceId: created.id,
          projectId: created.id,
          details: { name },
        });
        if (opts.json) printJson(created);
        else write(`created project ${created.name} ${created.id}\n`);
      }),
    );

  project
    .command('list')
    .description('list projects')
    .action(async (_o: unknown, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const projects = await listProjects(db, null, { limit: 1000 });
        if (opts.json) return printJson(projects);
        write(
          table(
            ['NAME', 'ID', 'DESCRIPTION'],
            projects.map((p) => [p.name, p.id, p.description]),
          ),
        );
      }),
    );

  project
    .command('delete')
    .description('delete a project (refused while it has workloads)')
    .argument('<project>', 'project name or id')
    .action(async (which: string, _o: unknown, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const target = await resolveProject(db, which);
        await deleteProject(db, target.id);
        await recordAudit(db, cliActor(), {
          action: 'project.delete',
          resourceType: 'project',
          resourceId: target.id,
          projectId: target.id,
          details: { name: target.name },
        });
        if (opts.json) printJson({ deleted: target.id });
        else write(`deleted project ${target.name}\n`);
      }),
    );

  project
    .command('add-member')
    .description('make a user a member of a project')
    .argument('<project>', 'project name or id')
    .argument('<user>', 'user name or id')
    .action(async (which: string, who: string, _o: unknown, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const p = await resolveProject(db, which);
        const u = await resolveUser(db, who);
        await addProjectMember(db, p.id, u.id);
        await recordAudit(db, cliActor(), {
          action: 'project.member.add',
          resourceType: 'user',
          resourceId: u.id,
          projectId: p.id,
        });
        const members = await listProjectMembers(db, p.id);
        if (opts.json)
          printJson({ project_id: p.id, members: members.map((m) => ({ id: m.id, name: m.name })) });
        else write(`${u.name} is a member of ${p.name}\n`);
      }),
    );

  project
    .command('remove-member')
    .description('remove a user from a project')
    .argument('<project>', 'project name or id')
    .argument('<user>', 'user name or id')
    .action(async (which: string, who: string, _o: unknown, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const p = await resolveProject(db, which);
        const u = await resolveUser(db, who);
        const removed = await removeProjectMember(db, p.id, u.id);
        if (removed) {
          await recordAudit(db, cliActor(), {
            action: 'project.member.remove',
            resourceType: 'user',
            resourceId: u.id,
            projectId: p.id,
          });
        }
        if (opts.json) printJson({ project_id: p.id, user_id: u.id, removed });
        else write(removed ? `${u.name} left ${p.name}\n` : `${u.name} was not a member of ${p.name}\n`);
      }),
    );
}

function registerTokenCommands(token: Command): void {
  token
    .command('create')
    .description('create an API token for a user; the token is printed once and never stored')
    .requiredOption('--user <user>', 'user name or id')
    .option('--name <name>', 'what the token is for', 'cli')
    .option('--expires-days <days>', 'expire after this many days (default: never)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 3650) {
        throw new CatalogError(
          'CATALOG_INVALID_NAME',
          `--expires-days must be an integer from 1 to 3650, not ${v}`,
        );
      }
      return n;
    })
    .action(async (o: { user: string; name: string; expiresDays?: number }, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const u = await resolveUser(db, o.user);
        const expiresAt = o.expiresDays ? isoPlus(o.expiresDays * DAY_MS) : null;
        const { token: created, secret } = await createToken(db, { userId: u.id, name: o.name, expiresAt });
        await recordAudit(db, cliActor(), {
          action: 'token.create',
          resourceType: 'token',
          resourceId: created.id,
          details: { user_id: u.id, name: o.name, expires_at: expiresAt },
        });
        if (opts.json) printJson({ ...presentToken(created, u.name), token: secret });
        else {
          write(`${secret}\n`);
          process.stderr.write(
            `token ${created.id} for ${u.name}: shown once, store it now (Authorization: Bearer <token>)\n`,
          );
        }
      }),
    );

  token
    .command('list')
    .description('list tokens (all, or one user’s)')
    .option('--user <user>', 'user name or id')
    .action(async (o: { user?: string }, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        const only = o.user ? await resolveUser(db, o.user) : undefined;
        const users = new Map((await listUsers(db, { limit: 1000 })).map((u) => [u.id, u.name]));
        const tokens = await listTokens(db, only ? { userId: only.id } : {});
        if (opts.json) return printJson(tokens.map((t) => presentToken(t, users.get(t.user_id))));
        const state = (t: ApiToken) =>
          t.revoked_at
            ? 'revoked'
            : t.expires_at && t.expires_at <= new Date().toISOString()
              ? 'expired'
              : 'active';
        write(
          table(
            ['ID', 'USER', 'NAME', 'PREFIX', 'STATE', 'EXPIRES', 'LAST USED'],
            tokens.map((t) => [
              t.id,
              users.get(t.user_id) ?? t.user_id,
              t.name,
              t.token_prefix,
              state(t),
              t.expires_at ?? '-',
              t.last_used_at ?? '-',
            ]),
          ),
        );
      }),
    );

  token
    .command('revoke')
    .description('revoke a token: it stops working at once')
    .argument('<id>', 'token id (see token list)')
    .action(async (id: string, _o: unknown, cmd: Command) =>
      withCatalog(cmd, async (db, opts) => {
        if (!isUuid(id)) throw notFound('token', id);
        const before = await getToken(db, id);
        const revoked = await revokeToken(db, id);
        await recordAudit(db, cliActor(), {
          action: 'token.revoke',
          resourceType: 'token',
          resourceId: id,
          details: { user_id: before.user_id, name: before.name },
        });
        if (opts.json) printJson(presentToken(revoked));
        else write(`revoked token ${id} (${before.name})\n`);
      }),
    );
}
