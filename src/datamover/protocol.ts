import { z } from 'zod';

/**
 * The datamover protocol's messages (docs/datamover-protocol.md), shared by both ends: the
 * controller's routes validate requests with them, the datamover validates answers with them. JSON
 * fields are snake_case like the rest of the API. Version 1 lives under `/v1/datamover/`.
 */

export const PROTOCOL_PREFIX = '/v1/datamover';

export const registerHostRequest = z.strictObject({
  name: z.string().trim().min(1).max(253),
  address: z.string().trim().min(1).max(253),
  version: z.string().max(64).optional(),
  libvirt_uri: z.string().max(512).optional(),
  /** Task kinds this datamover has handlers for (informative: tasks are routed by host, not kind). */
  task_kinds: z.array(z.string().max(64)).max(256).optional(),
});
export type RegisterHostRequest = z.infer<typeof registerHostRequest>;

export const registerHostAnswer = z.object({
  host_id: z.string(),
  name: z.string(),
  /** How long a claimed task stays leased without a heartbeat or progress report. */
  lease_ms: z.number().int().positive(),
  /** The longest the controller holds a claim request open when there is nothing to do. */
  claim_wait_ms: z.number().int().positive(),
});
export type RegisterHostAnswer = z.infer<typeof registerHostAnswer>;

export const hostHeartbeatAnswer = z.object({ host_id: z.string(), status: z.string() });

export const claimRequest = z.strictObject({
  /** Who holds the lease: unique per datamover process run, so a restarted datamover never
   * mistakes the leases of its previous life for its own. */
  owner: z.string().trim().min(1).max(200),
  /** How long to wait for a task (capped by the controller's claim_wait_ms). 0: answer at once. */
  wait_ms: z.number().int().min(0).max(120_000).optional(),
});

export const claimedTask = z.object({
  id: z.string(),
  job_id: z.string(),
  kind: z.string(),
  payload: z.record(z.string(), z.unknown()),
  attempt: z.number().int(),
  max_attempts: z.number().int(),
  lease_ms: z.number().int().positive(),
  lease_expires_at: z.string().nullable(),
});
export type ClaimedTask = z.infer<typeof claimedTask>;

export const claimAnswer = z.object({ task: claimedTask });

export const ownerBody = z.strictObject({ owner: z.string().trim().min(1).max(200) });

export const progressRequest = z.strictObject({
  owner: z.string().trim().min(1).max(200),
  done: z.number().int().min(0).optional(),
  total: z.number().int().min(0).optional(),
  message: z.string().max(1000).optional(),
});
export type ProgressRequest = z.infer<typeof progressRequest>;

/** Answer to progress and heartbeat: the renewed lease, and whether the task must stop. */
export const leaseAnswer = z.object({
  cancel_requested: z.boolean(),
  lease_expires_at: z.string().nullable(),
  lease_ms: z.number().int().positive(),
});
export type LeaseAnswer = z.infer<typeof leaseAnswer>;

export const completeRequest = z.strictObject({
  owner: z.string().trim().min(1).max(200),
  result: z.unknown().optional(),
});

export const failRequest = z.strictObject({
  owner: z.string().trim().min(1).max(200),
  /** A stable error code (the LifeboatError code the handler threw, e.g. DOMAIN_NOT_FOUND). */
  code: z.string().trim().min(1).max(64),
  message: z.string().max(4000),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type FailRequest = z.infer<typeof failRequest>;

export const taskStateAnswer = z.object({
  id: z.string(),
  status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']),
});

/**
 * The service user whose tokens carry the datamover capability: they may speak this protocol (and,
 * being a member of no project, see nothing else). Admin tokens may speak it too. Only admins
 * create users, so only admins can mint such tokens.
 */
export const DATAMOVER_USER_NAME = 'datamover';
