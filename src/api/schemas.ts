import { z } from 'zod';
import { NAME_PATTERN, NAME_RULE } from '../catalog/names.js';
import { DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT } from '../catalog/page.js';
import { JOB_STATUSES, TASK_STATUSES } from '../catalog/status.js';

/**
 * Shared zod schemas: request pieces (ids, names, paging) and the documented shapes of answers.
 * JSON fields are snake_case, like the catalog and the OpenStack APIs operators already know.
 */

export const idParams = z.strictObject({ id: z.uuid() });

export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_LIMIT).default(DEFAULT_PAGE_LIMIT),
  offset: z.coerce.number().int().min(0).default(0),
};

/** Names people type and scripts match on: the catalog's one rule (catalog/names.ts). */
export const nameSchema = z.string().trim().min(1).max(128).regex(NAME_PATTERN, NAME_RULE);

const time = z.string().describe('ISO-8601 UTC time');
const nullableTime = time.nullable();

export const errorOut = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const projectOut = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string(),
  created_at: time,
  updated_at: time,
});

export const userOut = z.object({
  id: z.uuid(),
  name: z.string(),
  role: z.enum(['admin', 'member']),
  email: z.string().nullable(),
  project_ids: z.array(z.uuid()),
  created_at: time,
  updated_at: time,
});

export const memberOut = z.object({ id: z.uuid(), name: z.string(), role: z.enum(['admin', 'member']) });

export const tokenOut = z.object({
  id: z.uuid(),
  user_id: z.uuid(),
  name: z.string(),
  token_prefix: z.string().describe('the first characters of the token, to tell tokens apart'),
  created_at: time,
  expires_at: nullableTime,
  last_used_at: nullableTime,
  revoked_at: nullableTime,
});

export const newTokenOut = tokenOut.extend({
  token: z.string().describe('the bearer token: shown this once, never stored'),
});

export const hostOut = z.object({
  id: z.uuid(),
  name: z.string(),
  address: z.string(),
  status: z.enum(['online', 'offline', 'unknown']),
  version: z.string().nullable(),
  capabilities: z.record(z.string(), z.unknown()),
  last_heartbeat_at: nullableTime,
  created_at: time,
  updated_at: time,
});

export const taskOut = z.object({
  id: z.uuid(),
  job_id: z.uuid(),
  host_id: z.uuid().nullable(),
  kind: z.string(),
  status: z.enum(TASK_STATUSES),
  attempts: z.number().int(),
  max_attempts: z.number().int(),
  progress_done: z.number(),
  progress_total: z.number(),
  error: z.string().nullable(),
  created_at: time,
  started_at: nullableTime,
  finished_at: nullableTime,
});

export const jobOut = z.object({
  id: z.uuid(),
  kind: z.string(),
  status: z.enum(JOB_STATUSES),
  project_id: z.uuid().nullable(),
  user_id: z.uuid().nullable(),
  resource_type: z.string().nullable(),
  resource_id: z.string().nullable(),
  progress_done: z.number().describe('bytes (or units) done'),
  progress_total: z.number().describe('bytes (or units) in all'),
  messages: z.array(z.object({ at: time, level: z.enum(['info', 'warning', 'error']), text: z.string() })),
  error: z.string().nullable(),
  created_at: time,
  updated_at: time,
  started_at: nullableTime,
  finished_at: nullableTime,
});

export const jobDetailOut = jobOut.extend({ tasks: z.array(taskOut) });

export const auditOut = z.object({
  id: z.uuid(),
  at: time,
  actor_user_id: z.string().nullable(),
  actor_name: z.string(),
  source: z.string(),
  action: z.string(),
  resource_type: z.string().nullable(),
  resource_id: z.string().nullable(),
  project_id: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
});

export const listOf = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item) });
