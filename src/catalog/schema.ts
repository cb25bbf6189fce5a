import type { Generated, Kysely } from 'kysely';
import type { IsoTime } from './time.js';

/**
 * The catalog's tables as Kysely sees them (rows as stored: snake_case, JSON columns as TEXT, times
 * as ISO strings — see time.ts). Migrations in migrations/ create exactly these; the query modules
 * turn rows into the domain objects the rest of Lifeboat uses.
 */

/** A JSON document stored as TEXT (identical on SQLite and PostgreSQL). */
export type JsonText = string;

export interface ProjectsTable {
  id: string;
  name: string;
  description: Generated<string>;
  created_at: IsoTime;
  updated_at: IsoTime;
}

export interface UsersTable {
  id: string;
  name: string;
  role: 'admin' | 'member';
  email: string | null;
  created_at: IsoTime;
  updated_at: IsoTime;
}

export interface ProjectMembersTable {
  project_id: string;
  user_id: string;
  created_at: IsoTime;
}

export interface ApiTokensTable {
  id: string;
  user_id: string;
  name: string;
  /** Hex SHA-256 of the token; the token itself is shown once and never stored. */
  token_hash: string;
  /** The first characters of the token, so people can tell their tokens apart. */
  token_prefix: string;
  created_at: IsoTime;
  expires_at: IsoTime | null;
  last_used_at: IsoTime | null;
  revoked_at: IsoTime | null;
}

export interface HostsTable {
  id: string;
  name: string;
  address: string;
  status: 'online' | 'offline' | 'unknown';
  version: string | null;
  capabilities: Generated<JsonText>;
  last_heartbeat_at: IsoTime | null;
  created_at: IsoTime;
  updated_at: IsoTime;
}

export interface TargetsTable {
  id: string;
  /** null: shared by every project. */
  project_id: string | null;
  name: string;
  kind: 'fs' | 's3';
  url: string;
  /** Settings safe to show and to copy anywhere (bucket, region, path style...). Never secrets. */
  settings: Generated<JsonText>;
  created_at: IsoTime;
  updated_at: IsoTime;
}

/** Credentials live apart from targets so that no query (or export) of targets can carry them along. */
export interface TargetSecretsTable {
  target_id: string;
  secrets: JsonText;
  updated_at: IsoTime;
}

export interface WorkloadsTable {
  id: string;
  project_id: string;
  owner_user_id: string | null;
  name: string;
  description: Generated<string>;
  target_id: string | null;
  schedule_cron: string | null;
  schedule_timezone: string | null;
  /** 0/1: integers, not booleans, so both databases store and return the same thing. */
  schedule_paused: Generated<number>;
  retention_keep_count: number | null;
  retention_keep_days: number | null;
  /** Take a full snapshot every N snapshots (null: only when the chain needs one). */
  full_every: number | null;
  locked_by_job_id: string | null;
  lock_expires_at: IsoTime | null;
  created_at: IsoTime;
  updated_at: IsoTime;
}

export interface WorkloadVmsTable {
  id: string;
  workload_id: string;
  host_id: string;
  domain_uuid: string;
  name: string;
  /** JSON array of target devs (vda, vdb...) left out of backups. */
  excluded_disks: Generated<JsonText>;
  created_at: IsoTime;
}

export interface SnapshotsTable {
  id: string;
  workload_id: string;
  job_id: string | null;
  type: 'full' | 'incremental';
  parent_id: string | null;
  status: 'creating' | 'available' | 'failed' | 'deleting';
  name: Generated<string>;
  target_id: string | null;
  target_path: string | null;
  size_bytes: Generated<number>;
  stored_bytes: Generated<number>;
  progress_done: Generated<number>;
  progress_total: Generated<number>;
  warnings: Generated<JsonText>;
  error: string | null;
  created_at: IsoTime;
  started_at: IsoTime | null;
  finished_at: IsoTime | null;
}

export interface SnapshotVmsTable {
  id: string;
  snapshot_id: string;
  workload_vm_id: string | null;
  host_id: string | null;
  domain_uuid: string;
  name: string;
  /** Everything needed to rebuild the VM (domain XML, flavor, networks...). */
  definition: Generated<JsonText>;
  created_at: IsoTime;
}

export interface SnapshotDisksTable {
  id: string;
  snapshot_id: string;
  snapshot_vm_id: string;
  target_dev: string;
  type: 'full' | 'incremental';
  target_path: string | null;
  virtual_size: Generated<number>;
  stored_bytes: Generated<number>;
  checkpoint_name: string | null;
  status: 'creating' | 'available' | 'failed';
  warnings: Generated<JsonText>;
  created_at: IsoTime;
  finished_at: IsoTime | null;
}

export interface RestoresTable {
  id: string;
  project_id: string;
  snapshot_id: string;
  user_id: string | null;
  job_id: string | null;
  kind: 'one_click' | 'selective' | 'in_place';
  plan: Generated<JsonText>;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  progress_done: Generated<number>;
  progress_total: Generated<number>;
  error: string | null;
  created_at: IsoTime;
  started_at: IsoTime | null;
  finished_at: IsoTime | null;
}

export interface JobsTable {
  id: string;
  kind: string;
  status: 'queued' | 'running' | 'cancelling' | 'succeeded' | 'failed' | 'cancelled';
  project_id: string | null;
  user_id: string | null;
  /** What the job works on, e.g. ('workload', id): generic so that any resource can have jobs. */
  resource_type: string | null;
  resource_id: string | null;
  progress_done: Generated<number>;
  progress_total: Generated<number>;
  /** JSON array of {at, level, text}. */
  messages: Generated<JsonText>;
  error: string | null;
  created_at: IsoTime;
  updated_at: IsoTime;
  started_at: IsoTime | null;
  finished_at: IsoTime | null;
}

export interface TasksTable {
  id: string;
  job_id: string;
  /** The datamover host that must run it; null: any host. */
  host_id: string | null;
  kind: string;
  payload: Generated<JsonText>;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  lease_owner: string | null;
  lease_expires_at: IsoTime | null;
  heartbeat_at: IsoTime | null;
  attempts: Generated<number>;
  max_attempts: Generated<number>;
  progress_done: Generated<number>;
  progress_total: Generated<number>;
  result: JsonText | null;
  error: string | null;
  created_at: IsoTime;
  started_at: IsoTime | null;
  finished_at: IsoTime | null;
}

/** History: no foreign keys, so entries outlive the users and resources they mention. */
export interface AuditLogTable {
  id: string;
  at: IsoTime;
  actor_user_id: string | null;
  actor_name: string;
  /** Where the action came from: 'api', 'cli', 'scheduler', 'controller'. */
  source: string;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  project_id: string | null;
  details: Generated<JsonText>;
}

export interface CatalogSchema {
  projects: ProjectsTable;
  users: UsersTable;
  project_members: ProjectMembersTable;
  api_tokens: ApiTokensTable;
  hosts: HostsTable;
  targets: TargetsTable;
  target_secrets: TargetSecretsTable;
  workloads: WorkloadsTable;
  workload_vms: WorkloadVmsTable;
  snapshots: SnapshotsTable;
  snapshot_vms: SnapshotVmsTable;
  snapshot_disks: SnapshotDisksTable;
  restores: RestoresTable;
  jobs: JobsTable;
  tasks: TasksTable;
  audit_log: AuditLogTable;
}

/** The catalog: a Kysely instance over the schema above (or a transaction of one). */
export type CatalogDb = Kysely<CatalogSchema>;
