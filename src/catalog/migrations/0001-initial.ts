import { type Kysely, sql } from 'kysely';

/**
 * The first schema. Only portable types (text, integer, bigint) so SQLite and PostgreSQL behave the
 * same: ids are UUID strings made by the application, times ISO-8601 text, JSON as text, flags as
 * 0/1 integers. Children that mean nothing without their parent are deleted with it (CASCADE); a
 * parent that others still need (a project with workloads, a target with workloads, a host with VMs)
 * cannot be deleted (RESTRICT, reported as CATALOG_IN_USE).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('projects')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('role', 'text', (c) => c.notNull().check(sqlIn('role', ['admin', 'member'])))
    .addColumn('email', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('project_members')
    .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('project_members_pk', ['project_id', 'user_id'])
    .execute();
  await db.schema.createIndex('project_members_user_idx').on('project_members').column('user_id').execute();

  await db.schema
    .createTable('api_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('token_prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('last_used_at', 'text')
    .addColumn('revoked_at', 'text')
    .execute();
  await db.schema.createIndex('api_tokens_user_idx').on('api_tokens').column('user_id').execute();

  await db.schema
    .createTable('hosts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('address', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sqlIn('status', ['online', 'offline', 'unknown'])))
    .addColumn('version', 'text')
    .addColumn('capabilities', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('last_heartbeat_at', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('targets')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.references('projects.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('kind', 'text', (c) => c.notNull().check(sqlIn('kind', ['fs', 's3'])))
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('settings', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('target_secrets')
    .addColumn('target_id', 'text', (c) => c.primaryKey().references('targets.id').onDelete('cascade'))
    .addColumn('secrets', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('jobs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .check(sqlIn('status', ['queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'])),
    )
    .addColumn('project_id', 'text', (c) => c.references('projects.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('resource_type', 'text')
    .addColumn('resource_id', 'text')
    .addColumn('progress_done', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('progress_total', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('messages', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .execute();
  await db.schema.createIndex('jobs_status_idx').on('jobs').column('status').execute();
  await db.schema.createIndex('jobs_project_idx').on('jobs').columns(['project_id', 'created_at']).execute();
  await db.schema
    .createIndex('jobs_resource_idx')
    .on('jobs')
    .columns(['resource_type', 'resource_id'])
    .execute();

  await db.schema
    .createTable('workloads')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('restrict'))
    .addColumn('owner_user_id', 'text', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('target_id', 'text', (c) => c.references('targets.id').onDelete('restrict'))
    .addColumn('schedule_cron', 'text')
    .addColumn('schedule_timezone', 'text')
    .addColumn('schedule_paused', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('retention_keep_count', 'integer')
    .addColumn('retention_keep_days', 'integer')
    .addColumn('full_every', 'integer')
    .addColumn('locked_by_job_id', 'text', (c) => c.references('jobs.id').onDelete('set null'))
    .addColumn('lock_expires_at', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('workloads_project_name_unique', ['project_id', 'name'])
    .execute();

  await db.schema
    .createTable('workload_vms')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('workload_id', 'text', (c) => c.notNull().references('workloads.id').onDelete('cascade'))
    .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id').onDelete('restrict'))
    .addColumn('domain_uuid', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('excluded_disks', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    // A VM belongs to at most one workload: two workloads backing up one VM would fight over its
    // checkpoints.
    .addUniqueConstraint('workload_vms_vm_unique', ['host_id', 'domain_uuid'])
    .execute();
  await db.schema.createIndex('workload_vms_workload_idx').on('workload_vms').column('workload_id').execute();

  await db.schema
    .createTable('snapshots')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('workload_id', 'text', (c) => c.notNull().references('workloads.id').onDelete('cascade'))
    .addColumn('job_id', 'text', (c) => c.references('jobs.id').onDelete('set null'))
    .addColumn('type', 'text', (c) => c.notNull().check(sqlIn('type', ['full', 'incremental'])))
    .addColumn('parent_id', 'text', (c) => c.references('snapshots.id').onDelete('set null'))
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sqlIn('status', ['creating', 'available', 'failed', 'deleting'])),
    )
    .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('target_id', 'text', (c) => c.references('targets.id').onDelete('set null'))
    .addColumn('target_path', 'text')
    .addColumn('size_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('stored_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('progress_done', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('progress_total', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('warnings', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .execute();
  await db.schema
    .createIndex('snapshots_workload_idx')
    .on('snapshots')
    .columns(['workload_id', 'created_at'])
    .execute();

  await db.schema
    .createTable('snapshot_vms')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('snapshot_id', 'text', (c) => c.notNull().references('snapshots.id').onDelete('cascade'))
    .addColumn('workload_vm_id', 'text', (c) => c.references('workload_vms.id').onDelete('set null'))
    .addColumn('host_id', 'text', (c) => c.references('hosts.id').onDelete('set null'))
    .addColumn('domain_uuid', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('definition', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('snapshot_vms_snapshot_idx').on('snapshot_vms').column('snapshot_id').execute();

  await db.schema
    .createTable('snapshot_disks')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('snapshot_id', 'text', (c) => c.notNull().references('snapshots.id').onDelete('cascade'))
    .addColumn('snapshot_vm_id', 'text', (c) => c.notNull().references('snapshot_vms.id').onDelete('cascade'))
    .addColumn('target_dev', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull().check(sqlIn('type', ['full', 'incremental'])))
    .addColumn('target_path', 'text')
    .addColumn('virtual_size', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('stored_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('checkpoint_name', 'text')
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sqlIn('status', ['creating', 'available', 'failed'])),
    )
    .addColumn('warnings', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('finished_at', 'text')
    .addUniqueConstraint('snapshot_disks_dev_unique', ['snapshot_vm_id', 'target_dev'])
    .execute();
  await db.schema
    .createIndex('snapshot_disks_snapshot_idx')
    .on('snapshot_disks')
    .column('snapshot_id')
    .execute();

  await db.schema
    .createTable('restores')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('snapshot_id', 'text', (c) => c.notNull().references('snapshots.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('job_id', 'text', (c) => c.references('jobs.id').onDelete('set null'))
    .addColumn('kind', 'text', (c) =>
      c.notNull().check(sqlIn('kind', ['one_click', 'selective', 'in_place'])),
    )
    .addColumn('plan', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sqlIn('status', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])),
    )
    .addColumn('progress_done', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('progress_total', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .execute();
  await db.schema.createIndex('restores_snapshot_idx').on('restores').column('snapshot_id').execute();

  await db.schema
    .createTable('tasks')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
    .addColumn('host_id', 'text', (c) => c.references('hosts.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sqlIn('status', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])),
    )
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', 'text')
    .addColumn('heartbeat_at', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_attempts', 'integer', (c) => c.notNull().defaultTo(3))
    .addColumn('progress_done', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('progress_total', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('result', 'text')
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .execute();
  await db.schema
    .createIndex('tasks_claim_idx')
    .on('tasks')
    .columns(['status', 'host_id', 'created_at'])
    .execute();
  await db.schema.createIndex('tasks_job_idx').on('tasks').column('job_id').execute();
  await db.schema
    .createIndex('tasks_lease_idx')
    .on('tasks')
    .columns(['status', 'lease_expires_at'])
    .execute();

  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('actor_user_id', 'text')
    .addColumn('actor_name', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('resource_type', 'text')
    .addColumn('resource_id', 'text')
    .addColumn('project_id', 'text')
    .addColumn('details', 'text', (c) => c.notNull().defaultTo('{}'))
    .execute();
  await db.schema.createIndex('audit_log_at_idx').on('audit_log').column('at').execute();
  await db.schema
    .createIndex('audit_log_project_idx')
    .on('audit_log')
    .columns(['project_id', 'at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'audit_log',
    'tasks',
    'restores',
    'snapshot_disks',
    'snapshot_vms',
    'snapshots',
    'workload_vms',
    'workloads',
    'jobs',
    'target_secrets',
    'targets',
    'hosts',
    'api_tokens',
    'project_members',
    'users',
    'projects',
  ]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}

/** A CHECK (column IN (...)) with literal values: the status names the rest of the code relies on. */
function sqlIn(column: string, values: readonly string[]) {
  return sql`${sql.ref(column)} in (${sql.join(values.map((v) => sql.lit(v)))})`;
}
