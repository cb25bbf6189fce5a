import type { Task } from '../catalog/tasks.js';
import type { ApiToken } from '../catalog/tokens.js';

/**
 * What leaves the API for records whose rows hold more than callers may see. Tokens lose their hash;
 * tasks lose payload, result and lease details (datamover business, and possibly sensitive).
 */
export function presentToken(t: ApiToken) {
  return {
    id: t.id,
    user_id: t.user_id,
    name: t.name,
    token_prefix: t.token_prefix,
    created_at: t.created_at,
    expires_at: t.expires_at,
    last_used_at: t.last_used_at,
    revoked_at: t.revoked_at,
  };
}

export function presentTask(t: Task) {
  return {
    id: t.id,
    job_id: t.job_id,
    host_id: t.host_id,
    kind: t.kind,
    status: t.status,
    attempts: t.attempts,
    max_attempts: t.max_attempts,
    progress_done: t.progress_done,
    progress_total: t.progress_total,
    error: t.error,
    created_at: t.created_at,
    started_at: t.started_at,
    finished_at: t.finished_at,
  };
}
