import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import {
  addProjectMember,
  addSnapshotDisk,
  addSnapshotVm,
  addSnapshotWarning,
  addWorkloadVm,
  appendJobMessage,
  authenticateToken,
  type CatalogDb,
  CatalogError,
  claimNextTask,
  createJob,
  createProject,
  createSnapshot,
  createTarget,
  createTask,
  createToken,
  createUser,
  createWorkload,
  deleteJob,
  deleteProject,
  deleteUser,
  deleteWorkload,
  expireStaleTasks,
  finishTask,
  getJob,
  getSnapshot,
  getTarget,
  getTargetSecrets,
  getTask,
  getWorkload,
  hashToken,
  heartbeatTask,
  isoPlus,
  listAudit,
  listJobs,
  listProjectMembers,
  listProjects,
  listSnapshotDisks,
  listTasks,
  listTokens,
  listUsers,
  listWorkloadVms,
  lockWorkload,
  openCatalog,
  recordAudit,
  registerHost,
  requestJobCancel,
  revokeToken,
  setJobStatus,
  setSnapshotStatus,
  unlockWorkload,
} from '../src/catalog/index.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';

/** The same suite runs against both databases: whatever passes on SQLite must pass on PostgreSQL. */

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CatalogError, `expected CatalogError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

const TABLES = [
  'api_tokens',
  'audit_log',
  'hosts',
  'jobs',
  'project_members',
  'projects',
  'restores',
  'snapshot_disks',
  'snapshot_vms',
  'snapshots',
  'target_secrets',
  'targets',
  'tasks',
  'users',
  'workload_vms',
  'workloads',
];

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`catalog on ${dialect}`, () => {
    let scratch: ScratchCatalog;
    let db: CatalogDb;

    before(async () => {
      scratch = await openScratchCatalog(dialect);
      db = scratch.db;
    });
    after(async () => {
      await scratch?.drop();
    });

    test('migrations create every table and are idempotent, also when several controllers start at once', async () => {
      const tables = (await db.introspection.getTables()).map((t) => t.name).sort();
      assert.deepEqual(tables, TABLES);

      const fresh = await openScratchCatalog(dialect, { migrate: false });
      try {
        const opened = await Promise.all([
          openCatalog(fresh.url),
          openCatalog(fresh.url),
          openCatalog(fresh.url),
        ]);
        for (const o of opened) await o.destroy();
        const names = (await fresh.db.introspection.getTables()).map((t) => t.name).sort();
        assert.deepEqual(names, TABLES);
        const applied = await fresh.db
          .selectFrom('kysely_migration' as never)
          .select('name' as never)
          .execute();
        assert.equal(applied.length, 1);
      } finally {
        await fresh.drop();
      }
    });

    test('projects and users: CRUD, membership, unique names', async () => {
      const p = await createProject(db, { name: 'crud-p', description: 'first' });
      await rejectsWithCode(createProject(db, { name: 'crud-p' }), 'CATALOG_CONFLICT');
      const u = await createUser(db, { name: 'crud-u', role: 'member' });
      await rejectsWithCode(createUser(db, { name: 'crud-u', role: 'admin' }), 'CATALOG_CONFLICT');
      await addProjectMember(db, p.id, u.id);
      await addProjectMember(db, p.id, u.id); // idempotent
      assert.deepEqual(
        (await listProjectMembers(db, p.id)).map((m) => m.name),
        ['crud-u'],
      );
      const listed = (await listUsers(db)).find((x) => x.id === u.id);
      assert.deepEqual(listed?.project_ids, [p.id]);
      assert.deepEqual(
        (await listProjects(db, [p.id])).map((x) => x.id),
        [p.id],
      );
      assert.deepEqual(await listProjects(db, []), []);
      await rejectsWithCode(
        addProjectMember(db, p.id, '00000000-0000-4000-8000-000000000000'),
        'CATALOG_IN_USE',
      );
      await deleteUser(db, u.id);
      assert.deepEqual(await listProjectMembers(db, p.id), []);
      await deleteProject(db, p.id);
      await rejectsWithCode(deleteProject(db, p.id), 'CATALOG_NOT_FOUND');
    });

    test('tokens: only the hash is stored, revoked and expired tokens do not authenticate', async () => {
      const u = await createUser(db, { name: 'tok-u', role: 'admin' });
      const { token, secret } = await createToken(db, { userId: u.id, name: 'laptop' });
      assert.match(secret, /^lb_[A-Za-z0-9_-]{43}$/);
      assert.equal(token.token_hash, hashToken(secret));
      const stored = await db
        .selectFrom('api_tokens')
        .selectAll()
        .where('id', '=', token.id)
        .executeTakeFirstOrThrow();
      assert.ok(!Object.values(stored).includes(secret), 'the token itself is never stored');

      const auth = await authenticateToken(db, secret);
      assert.equal(auth?.user.id, u.id);
      assert.equal(auth?.user.role, 'admin');
      assert.ok(auth?.token.last_used_at);
      assert.equal(await authenticateToken(db, `${secret}x`), undefined);

      const { secret: expiredSecret } = await createToken(db, {
        userId: u.id,
        name: 'old',
        expiresAt: isoPlus(-1000),
      });
      assert.equal(await authenticateToken(db, expiredSecret), undefined);

      await revokeToken(db, token.id);
      assert.equal(await authenticateToken(db, secret), undefined);
      const tokens = await listTokens(db, { userId: u.id });
      assert.equal(tokens.length, 2);
      await deleteUser(db, u.id);
      assert.deepEqual(await listTokens(db, { userId: u.id }), []);
    });

    test('a VM belongs to at most one workload', async () => {
      const p = await createProject(db, { name: 'vm-p' });
      const host = await registerHost(db, { name: 'vm-host', address: '10.0.0.1:7000', version: '0.1.0' });
      const again = await registerHost(db, { name: 'vm-host', address: '10.0.0.2:7000' });
      assert.equal(again.id, host.id, 're-registering keeps the host id');
      assert.equal(again.address, '10.0.0.2:7000');
      const w1 = await createWorkload(db, { projectId: p.id, name: 'w1' });
      const w2 = await createWorkload(db, { projectId: p.id, name: 'w2' });
      await rejectsWithCode(createWorkload(db, { projectId: p.id, name: 'w1' }), 'CATALOG_CONFLICT');
      const uuid = 'A1B2C3D4-0000-4000-8000-000000000001';
      await addWorkloadVm(db, w1.id, {
        hostId: host.id,
        domainUuid: uuid,
        name: 'web',
        excludedDisks: ['vdb'],
      });
      await rejectsWithCode(
        addWorkloadVm(db, w2.id, { hostId: host.id, domainUuid: uuid.toLowerCase(), name: 'web' }),
        'CATALOG_CONFLICT',
      );
      await rejectsWithCode(
        addWorkloadVm(db, w1.id, { hostId: host.id, domainUuid: uuid, name: 'web' }),
        'CATALOG_CONFLICT',
      );
      const vms = await listWorkloadVms(db, w1.id);
      assert.deepEqual(vms[0].excluded_disks, ['vdb']);
      await deleteWorkload(db, w1.id);
      await addWorkloadVm(db, w2.id, { hostId: host.id, domainUuid: uuid, name: 'web' });
      assert.equal((await listWorkloadVms(db, w2.id)).length, 1);
      await rejectsWithCode(deleteProject(db, p.id), 'CATALOG_IN_USE');
    });

    test('deleting cascades to what belongs to the deleted record; the audit log keeps history', async () => {
      const p = await createProject(db, { name: 'cascade-p' });
      const owner = await createUser(db, { name: 'cascade-owner', role: 'member' });
      const host = await registerHost(db, { name: 'cascade-host', address: 'h:1' });
      const target = await createTarget(db, {
        name: 'cascade-target',
        kind: 's3',
        url: 's3://bucket/prefix',
        settings: { region: 'us-east-1' },
        secrets: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      });
      assert.equal(
        JSON.stringify(await getTarget(db, target.id)).includes('SK'),
        false,
        'no secrets in targets',
      );
      assert.deepEqual(await getTargetSecrets(db, target.id), { accessKeyId: 'AK', secretAccessKey: 'SK' });

      const w = await createWorkload(db, {
        projectId: p.id,
        ownerUserId: owner.id,
        name: 'app',
        targetId: target.id,
        schedule_cron: '0 2 * * *',
        retention_keep_count: 7,
        schedule_paused: true,
      });
      assert.equal(w.schedule_paused, 1);
      assert.equal(w.retention_keep_count, 7);
      const vm = await addWorkloadVm(db, w.id, {
        hostId: host.id,
        domainUuid: 'b0000000-0000-4000-8000-000000000001',
        name: 'db',
      });
      const job = await createJob(db, {
        kind: 'snapshot',
        projectId: p.id,
        resourceType: 'workload',
        resourceId: w.id,
      });
      await createTask(db, { jobId: job.id, kind: 'backup-disk', hostId: host.id });
      const s1 = await createSnapshot(db, {
        workloadId: w.id,
        type: 'full',
        jobId: job.id,
        targetId: target.id,
      });
      const s2 = await createSnapshot(db, { workloadId: w.id, type: 'incremental', parentId: s1.id });
      const svm = await addSnapshotVm(db, {
        snapshotId: s1.id,
        workloadVmId: vm.id,
        hostId: host.id,
        domainUuid: vm.domain_uuid,
        name: 'db',
        definition: { xml: '<domain/>' },
      });
      const bigDisk = 5 * 2 ** 40; // 5 TiB: a bigint column must come back as the same number
      await addSnapshotDisk(db, {
        snapshotVmId: svm.id,
        targetDev: 'vda',
        type: 'full',
        virtualSize: bigDisk,
      });
      assert.equal((await listSnapshotDisks(db, { snapshotId: s1.id }))[0].virtual_size, bigDisk);
      await recordAudit(
        db,
        { userId: owner.id, name: owner.name, source: 'api' },
        { action: 'workload.create', resourceType: 'workload', resourceId: w.id, projectId: p.id },
      );

      await deleteUser(db, owner.id);
      assert.equal((await getWorkload(db, w.id)).owner_user_id, null, 'the workload outlives its owner');
      await rejectsWithCode(deleteProject(db, p.id), 'CATALOG_IN_USE');

      await deleteWorkload(db, w.id);
      for (const table of ['workload_vms', 'snapshots', 'snapshot_vms', 'snapshot_disks'] as const) {
        const n = await db.selectFrom(table).select('id').execute();
        assert.ok(
          !n.some((r) => [vm.id, s1.id, s2.id, svm.id].includes(r.id)),
          `${table} rows of the workload are gone`,
        );
      }
      await deleteJob(db, job.id);
      assert.deepEqual(await listTasks(db, job.id), []);
      await deleteProject(db, p.id);
      const history = await listAudit(db, { resourceId: w.id });
      assert.equal(history.length, 1);
      assert.equal(history[0].actor_name, 'cascade-owner');
    });

    test('status transitions are enforced', async () => {
      const job = await createJob(db, { kind: 'noop' });
      await rejectsWithCode(setJobStatus(db, job.id, 'succeeded'), 'CATALOG_BAD_TRANSITION');
      const running = await setJobStatus(db, job.id, 'running');
      assert.ok(running.started_at);
      const done = await setJobStatus(db, job.id, 'succeeded');
      assert.ok(done.finished_at);
      await rejectsWithCode(setJobStatus(db, job.id, 'running'), 'CATALOG_BAD_TRANSITION');
      await rejectsWithCode(setJobStatus(db, job.id, 'failed'), 'CATALOG_BAD_TRANSITION');

      const p = await createProject(db, { name: 'status-p' });
      const w = await createWorkload(db, { projectId: p.id, name: 'status-w' });
      const s = await createSnapshot(db, { workloadId: w.id, type: 'full' });
      await rejectsWithCode(setSnapshotStatus(db, s.id, 'deleting'), 'CATALOG_BAD_TRANSITION');
      await addSnapshotWarning(db, s.id, 'vdb: checkpoint missing, fell back to full');
      await setSnapshotStatus(db, s.id, 'available', { sizeBytes: 1024, storedBytes: 512 });
      const got = await getSnapshot(db, s.id);
      assert.equal(got.status, 'available');
      assert.deepEqual(got.warnings, ['vdb: checkpoint missing, fell back to full']);
      assert.equal(got.stored_bytes, 512);
    });

    test('job messages appended concurrently all land', async () => {
      const job = await createJob(db, { kind: 'chatty' });
      await Promise.all(Array.from({ length: 20 }, (_, i) => appendJobMessage(db, job.id, 'info', `m${i}`)));
      const { messages } = await getJob(db, job.id);
      assert.equal(messages.length, 20);
      assert.deepEqual(new Set(messages.map((m) => m.text)).size, 20);
    });

    test('concurrent claimers never get the same task', async () => {
      const hostA = await registerHost(db, { name: 'claim-a', address: 'a:1' });
      const hostB = await registerHost(db, { name: 'claim-b', address: 'b:1' });
      const job = await createJob(db, { kind: 'many' });
      const total = 40;
      for (let i = 0; i < total; i++) {
        await createTask(db, {
          jobId: job.id,
          kind: 'work',
          hostId: i % 4 === 0 ? hostB.id : null,
          payload: { i },
        });
      }
      // A second catalog on the same database: a second controller (its own connections).
      const other = await openCatalog(scratch.url);
      try {
        const claimed: { task: string; by: string }[] = [];
        const claimer = async (cat: CatalogDb, hostId: string, owner: string) => {
          for (;;) {
            const t = await claimNextTask(cat, hostId, 60_000, { owner });
            if (!t) return;
            if (hostId === hostA.id) assert.notEqual(t.host_id, hostB.id, 'a task for host B went to host A');
            claimed.push({ task: t.id, by: owner });
          }
        };
        await Promise.all([
          claimer(db, hostA.id, 'a1'),
          claimer(other, hostA.id, 'a2'),
          claimer(db, hostB.id, 'b1'),
          claimer(other, hostB.id, 'b2'),
        ]);
        assert.equal(claimed.length, total);
        assert.equal(new Set(claimed.map((c) => c.task)).size, total, 'no task claimed twice');
        const tasks = await listTasks(db, job.id);
        assert.ok(tasks.every((t) => t.status === 'running' && t.attempts === 1));
        assert.equal((await getJob(db, job.id)).status, 'running', 'the first claim starts the job');
        await deleteJob(db, job.id);
      } finally {
        await other.destroy();
      }
    });

    test('leases: heartbeats renew, expired leases requeue then fail, stale owners are refused', async () => {
      const host = await registerHost(db, { name: 'lease-host', address: 'l:1' });
      const job = await createJob(db, { kind: 'lease' });
      const task = await createTask(db, { jobId: job.id, kind: 'work', hostId: host.id, maxAttempts: 2 });
      const t0 = Date.parse('2030-01-01T00:00:00.000Z');
      const at = (ms: number) => new Date(t0 + ms).toISOString();

      const c1 = await claimNextTask(db, host.id, 10_000, { owner: 'dm-1', now: at(0) });
      assert.equal(c1?.id, task.id);
      assert.equal(await claimNextTask(db, host.id, 10_000, { owner: 'dm-2', now: at(0) }), undefined);
      await rejectsWithCode(heartbeatTask(db, task.id, 'dm-2', 10_000, { now: at(1) }), 'CATALOG_LEASE_LOST');
      const hb = await heartbeatTask(db, task.id, 'dm-1', 10_000, { done: 5, total: 10, now: at(5_000) });
      assert.equal(hb.task.lease_expires_at, at(15_000));
      assert.equal(hb.task.progress_done, 5);
      assert.equal(hb.cancelRequested, false);

      let reaped = await expireStaleTasks(db, at(14_000));
      assert.equal(reaped.requeued.length + reaped.failed.length, 0, 'a renewed lease is not expired');
      reaped = await expireStaleTasks(db, at(16_000));
      assert.deepEqual(
        reaped.requeued.map((t) => t.id),
        [task.id],
      );
      assert.equal((await getTask(db, task.id)).lease_owner, null);
      await rejectsWithCode(
        finishTask(db, task.id, 'dm-1', { status: 'succeeded', result: {} }, at(16_001)),
        'CATALOG_LEASE_LOST',
      );

      const c2 = await claimNextTask(db, host.id, 10_000, { owner: 'dm-2', now: at(17_000) });
      assert.equal(c2?.attempts, 2);
      reaped = await expireStaleTasks(db, at(30_000));
      assert.deepEqual(
        reaped.failed.map((t) => t.id),
        [task.id],
        'out of attempts',
      );
      assert.equal((await getTask(db, task.id)).status, 'failed');

      const ok = await createTask(db, { jobId: job.id, kind: 'work', hostId: host.id });
      await claimNextTask(db, host.id, 10_000, { owner: 'dm-3' });
      const finished = await finishTask(db, ok.id, 'dm-3', { status: 'succeeded', result: { bytes: 42 } });
      assert.deepEqual(finished.result, { bytes: 42 });
      await rejectsWithCode(
        finishTask(db, ok.id, 'dm-3', { status: 'failed', error: 'late' }),
        'CATALOG_LEASE_LOST',
      );
    });

    test('cancelling a job reaches its tasks and stops new claims', async () => {
      const host = await registerHost(db, { name: 'cancel-host', address: 'c:1' });
      const job = await createJob(db, { kind: 'cancel-me' });
      const tasks = [
        await createTask(db, { jobId: job.id, kind: 'work', hostId: host.id }),
        await createTask(db, { jobId: job.id, kind: 'work', hostId: host.id }),
      ];
      const t1 = (await claimNextTask(db, host.id, 10_000, { owner: 'dm' }))!;
      const t2 = tasks.find((t) => t.id !== t1.id)!;
      const j = await requestJobCancel(db, job.id);
      assert.equal(j.status, 'cancelling');
      assert.equal((await getTask(db, t2.id)).status, 'cancelled');
      assert.equal(await claimNextTask(db, host.id, 10_000, { owner: 'dm' }), undefined);
      const hb = await heartbeatTask(db, t1.id, 'dm', 10_000);
      assert.equal(hb.cancelRequested, true);
      await finishTask(db, t1.id, 'dm', { status: 'cancelled' });
      assert.equal((await setJobStatus(db, job.id, 'cancelled')).status, 'cancelled');

      const queuedJob = await createJob(db, { kind: 'never-ran' });
      assert.equal((await requestJobCancel(db, queuedJob.id)).status, 'cancelled');
    });

    test('workload locks: one job at a time, expired locks can be taken over', async () => {
      const p = await createProject(db, { name: 'lock-p' });
      const w = await createWorkload(db, { projectId: p.id, name: 'lock-w' });
      const j1 = await createJob(db, { kind: 'snapshot' });
      const j2 = await createJob(db, { kind: 'snapshot' });
      const t0 = Date.parse('2030-01-01T00:00:00.000Z');
      await lockWorkload(db, w.id, j1.id, 60_000, new Date(t0).toISOString());
      await rejectsWithCode(
        lockWorkload(db, w.id, j2.id, 60_000, new Date(t0 + 1000).toISOString()),
        'CATALOG_LOCKED',
      );
      await lockWorkload(db, w.id, j1.id, 60_000, new Date(t0 + 1000).toISOString()); // renewal by the holder
      const taken = await lockWorkload(db, w.id, j2.id, 60_000, new Date(t0 + 120_000).toISOString());
      assert.equal(taken.locked_by_job_id, j2.id);
      assert.equal(await unlockWorkload(db, w.id, j1.id), false);
      assert.equal(await unlockWorkload(db, w.id, j2.id), true);
    });

    test('audit log: entries are listed newest first and filtered', async () => {
      const actor = { userId: null, name: 'cli:root', source: 'cli' as const };
      await recordAudit(
        db,
        actor,
        { action: 'audit.test.one', projectId: 'p-audit' },
        '2031-01-01T00:00:00.000Z',
      );
      await recordAudit(
        db,
        actor,
        { action: 'audit.test.two', details: { why: 'because' } },
        '2031-01-02T00:00:00.000Z',
      );
      const recent = await listAudit(db, { since: '2031-01-01T00:00:00.000Z' });
      assert.deepEqual(
        recent.map((e) => e.action),
        ['audit.test.two', 'audit.test.one'],
      );
      assert.deepEqual(recent[0].details, { why: 'because' });
      assert.equal((await listAudit(db, { scope: ['p-audit'] })).length, 1);
      assert.equal((await listAudit(db, { action: 'audit.test.two' })).length, 1);
      assert.deepEqual(await listAudit(db, { scope: [] }), []);
    });

    test('job listing honours project scope', async () => {
      const p1 = await createProject(db, { name: 'jobs-p1' });
      const p2 = await createProject(db, { name: 'jobs-p2' });
      const j1 = await createJob(db, { kind: 'scoped', projectId: p1.id });
      await createJob(db, { kind: 'scoped', projectId: p2.id });
      const seen = await listJobs(db, { scope: [p1.id], kind: 'scoped' });
      assert.deepEqual(
        seen.map((j) => j.id),
        [j1.id],
      );
      assert.equal((await listJobs(db, { kind: 'scoped' })).length, 2);
    });
  });
}

describe('catalog on postgres: the server ends idle connections', () => {
  test('the pool drops them without crashing the process, and the next query works', async () => {
    const scratch = await openScratchCatalog('postgres');
    const other = await openScratchCatalog('postgres');
    try {
      await sql`select 1`.execute(scratch.db); // leaves an idle pooled connection behind
      // From another connection, as a failover or an operator would: end every session of that database.
      await sql`select pg_terminate_backend(pid) from pg_stat_activity
                where datname = ${new URL(scratch.url).pathname.slice(1)}`.execute(other.db);
      await new Promise((r) => setTimeout(r, 200)); // let the pool see the dead client
      const r = await sql<{ one: number }>`select 1 as one`.execute(scratch.db);
      assert.equal(r.rows[0].one, 1);
    } finally {
      await other.drop();
      await scratch.drop();
    }
  });
});
