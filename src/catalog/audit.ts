import type { Selectable } from 'kysely';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import { type Page, type ProjectScope, pageOf } from './page.js';
import type { AuditLogTable, CatalogDb } from './schema.js';
import { type IsoTime, isoNow } from './time.js';

/** Who did something: a user (through the API or CLI) or Lifeboat itself (scheduler, controller). */
export interface AuditActor {
  userId?: string | null;
  name: string;
  source: 'api' | 'cli' | 'scheduler' | 'controller';
}

export interface AuditEntry extends Omit<Selectable<AuditLogTable>, 'details'> {
  details: Record<string, unknown>;
}

export interface AuditEvent {
  /** `resource.verb`, e.g. `user.create`, `token.revoke`, `workload.delete`. */
  action: string;
  resourceType?: string | null;
  resourceId?: string | null;
  projectId?: string | null;
  details?: Record<string, unknown>;
}

/** Appends to the audit log. Entries are never updated, and survive the deletion of what they name. */
export async function recordAudit(
  db: CatalogDb,
  actor: AuditActor,
  event: AuditEvent,
  at: IsoTime = isoNow(),
): Promise<AuditEntry> {
  const row = {
    id: newId(),
    at,
    actor_user_id: actor.userId ?? null,
    actor_name: actor.name,
    source: actor.source,
    action: event.action,
    resource_type: event.resourceType ?? null,
    resource_id: event.resourceId ?? null,
    project_id: event.projectId ?? null,
    details: toJson(event.details ?? {}),
  };
  await db.insertInto('audit_log').values(row).execute();
  return { ...row, details: event.details ?? {} };
}

export interface AuditFilter {
  scope?: ProjectScope;
  actorUserId?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  since?: IsoTime;
  until?: IsoTime;
}

/** Newest first. */
export async function listAudit(db: CatalogDb, filter: AuditFilter = {}, page?: Page): Promise<AuditEntry[]> {
  const scope = filter.scope ?? null;
  if (scope !== null && scope.length === 0) return [];
  const { limit, offset } = pageOf(page);
  let q = db.selectFrom('audit_log').selectAll();
  if (scope !== null) q = q.where('project_id', 'in', [...scope]);
  if (filter.actorUserId) q = q.where('actor_user_id', '=', filter.actorUserId);
  if (filter.action) q = q.where('action', '=', filter.action);
  if (filter.resourceType) q = q.where('resource_type', '=', filter.resourceType);
  if (filter.resourceId) q = q.where('resource_id', '=', filter.resourceId);
  if (filter.since) q = q.where('at', '>=', filter.since);
  if (filter.until) q = q.where('at', '<', filter.until);
  const rows = await q.orderBy('at', 'desc').orderBy('id', 'desc').limit(limit).offset(offset).execute();
  return rows.map((r) => ({ ...r, details: parseJson(r.details, {}) }));
}
