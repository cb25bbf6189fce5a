import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { finishTask, getJob, listTasks, requestJobCancel } from '../src/catalog/jobs.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';
import { createTarget } from '../src/catalog/targets.js';
import { TargetAccess } from '../src/controller/target-access.js';
import { TaskDispatcher } from '../src/controller/task-dispatch.js';

/** The controller side of the task plumbing on real catalogs, without HTTP. */

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`task dispatch on ${dialect}`, () => {
    let scratch: ScratchCatalog;
    let d: TaskDispatcher;
    let hostA: string;
    let hostB: string;

    before(async () => {
      scratch = await openScratchCatalog(dialect);
      d = new TaskDispatcher(scratch.db, { leaseMs: 60_000, claimWaitMs: 20_000 });
      hostA = (await d.registerHost({ name: 'host-a', address: 'a' })).id;
      hostB = (await d.registerHost({ name: 'host-b', address: 'b' })).id;
    });
    after(async () => {
      d?.close();
      await scratch?.drop();
    });

    test('a held claim is answered when a task for its host is submitted', async () => {
      const claim = d.claim(hostA, 'a/1', 20_000);
      const { tasks } = await d.submitJob({ kind: 'k' }, [{ kind: 'noop', hostId: hostA }]);
      const task = await claim;
      assert.equal(task?.id, tasks[0].id);
      assert.equal(task?.lease_owner, 'a/1');
      await d.complete(task.id, 'a/1', { ok: true });
      assert.equal((await getJob(scratch.db, task.job_id)).status, 'succeeded');
      // A host never gets another host's task.
      await d.submitJob({ kind: 'k' }, [{ kind: 'noop', hostId: hostB }]);
      assert.equal(await d.claim(hostA, 'a/1', 0), undefined);
      const b = await d.claim(hostB, 'b/1', 0);
      assert.ok(b);
      await d.complete(b.id, 'b/1', null);
    });

    test('target credentials reach the datamover at claim time and are never stored with the task', async () => {
      const target = await createTarget(scratch.db, {
        name: `s3-${dialect}`,
        kind: 's3',
        url: 's3://bucket/prefix',
        settings: { endpoint: 'http://127.0.0.1:1' },
        secrets: { accessKeyId: 'AK-claim', secretAccessKey: 'SK-claim' },
      });
      const access = new TargetAccess(scratch.db, { installationId: 'test', host: 'test' });
      const locator = await access.locator(target.id);
      assert.deepEqual(locator.secrets, {}, 'payload locators carry no credentials');
      const { job } = await d.submitJob({ kind: 'snap' }, [
        { kind: 'snapshot.vm', hostId: hostA, payload: { target: locator, workloadId: 'w' } },
      ]);
      const stored = await listTasks(scratch.db, job.id);
      assert.equal(JSON.stringify(stored).includes('SK-claim'), false, 'secret stored in the task');
      const claimed = await d.claim(hostA, 'a/1', 0);
      assert.ok(claimed);
      assert.deepEqual((claimed.payload.target as { secrets: unknown }).secrets, {
        accessKeyId: 'AK-claim',
        secretAccessKey: 'SK-claim',
      });
      assert.equal(claimed.payload.workloadId, 'w');
      await d.complete(claimed.id, 'a/1', null);
      const after = await listTasks(scratch.db, job.id);
      assert.equal(JSON.stringify(after).includes('SK-claim'), false, 'secret written back to the task');
    });

    test('a restarted controller takes its own leftover target lease over, only under the workload lock', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'lifeboat-lease-takeover-'));
      try {
        const target = await createTarget(scratch.db, { name: `dir-${dialect}`, kind: 'fs', url: dir });
        const first = new TargetAccess(scratch.db, { installationId: 'inst-1', host: 'c1' });
        await first.acquireLease(target.id, 'wl-restart'); // then the process dies: never released
        const restarted = new TargetAccess(scratch.db, { installationId: 'inst-1', host: 'c1' });
        await assert.rejects(restarted.acquireLease(target.id, 'wl-restart'), {
          code: 'CONTROLLER_TARGET_LEASE',
        });
        const other = new TargetAccess(scratch.db, { installationId: 'inst-2', host: 'c2' });
        await assert.rejects(other.acquireLease(target.id, 'wl-restart', { holdsWorkloadLock: true }), {
          code: 'CONTROLLER_TARGET_LEASE',
        });
        const lease = await restarted.acquireLease(target.id, 'wl-restart', { holdsWorkloadLock: true });
        await lease.assertHeld();
        for (const a of [first, restarted, other]) await a.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    test('progress rolls up into the job; a repeated message is recorded once', async () => {
      const { job } = await d.submitJob({ kind: 'multi' }, [
        { kind: 'part', hostId: hostA },
        { kind: 'part', hostId: hostA },
      ]);
      const t1 = await d.claim(hostA, 'a/1', 0);
      const t2 = await d.claim(hostA, 'a/1', 0);
      assert.ok(t1 && t2);
      await d.progress(t1.id, 'a/1', { done: 10, total: 100, message: 'copying vda' });
      await d.progress(t1.id, 'a/1', { done: 20, total: 100, message: 'copying vda' });
      await d.progress(t2.id, 'a/1', { done: 5, total: 50 });
      const mid = await getJob(scratch.db, job.id);
      assert.equal(mid.progress_done, 25);
      assert.equal(mid.progress_total, 150);
      assert.equal(mid.messages.filter((m) => m.text === 'part: copying vda').length, 1);
      await d.progress(t1.id, 'a/1', { done: 100 });
      await d.complete(t1.id, 'a/1', null);
      assert.equal((await getJob(scratch.db, job.id)).status, 'running', 'one task still running');
      await d.progress(t2.id, 'a/1', { done: 50 });
      await d.complete(t2.id, 'a/1', null);
      const done = await getJob(scratch.db, job.id);
      assert.equal(done.status, 'succeeded');
      assert.equal(done.progress_done, 150);
    });

    test('a failed task fails its job at once, cancels queued siblings and stops running ones', async () => {
      const finished: string[] = [];
      const off = d.hooks.onJob('fragile', { onJobFinished: ({ job }) => void finished.push(job.status) });
      const failedHook: string[] = [];
      const offTask = d.hooks.onTask('step', { onTaskFailed: ({ reason }) => void failedHook.push(reason) });
      const { job } = await d.submitJob({ kind: 'fragile' }, [
        { kind: 'step', hostId: hostA },
        { kind: 'step', hostId: hostA },
        { kind: 'step', hostId: hostA },
      ]);
      const t1 = await d.claim(hostA, 'a/1', 0);
      const t2 = await d.claim(hostA, 'a/1', 0);
      assert.ok(t1 && t2);
      await d.fail(t1.id, 'a/1', { code: 'DOMAIN_NOT_FOUND', message: 'no domain vm9' });
      const failed = await getJob(scratch.db, job.id);
      assert.equal(failed.status, 'failed');
      assert.match(failed.error ?? '', /DOMAIN_NOT_FOUND: no domain vm9/);
      assert.deepEqual(failedHook, ['DOMAIN_NOT_FOUND: no domain vm9']);
      assert.deepEqual(finished, ['failed']);
      const statuses = (await listTasks(scratch.db, job.id)).map((t) => t.status).sort();
      assert.deepEqual(statuses, ['cancelled', 'failed', 'running']);
      assert.equal((await d.heartbeat(t2.id, 'a/1')).cancelRequested, true);
      await d.cancelled(t2.id, 'a/1');
      assert.equal((await getJob(scratch.db, job.id)).status, 'failed', 'the job keeps its first outcome');
      assert.deepEqual(finished, ['failed'], 'job hooks run once');
      off();
      offTask();
    });

    test('cancellation: heartbeat answers cancel_requested, the cancelled task ends the job cancelled', async () => {
      const { job } = await d.submitJob({ kind: 'long' }, [{ kind: 'work', hostId: hostA }]);
      const t = await d.claim(hostA, 'a/1', 0);
      assert.ok(t);
      assert.equal((await d.heartbeat(t.id, 'a/1')).cancelRequested, false);
      assert.equal((await requestJobCancel(scratch.db, job.id)).status, 'cancelling');
      assert.equal((await d.progress(t.id, 'a/1', { done: 1 })).cancelRequested, true);
      await d.cancelled(t.id, 'a/1');
      assert.equal((await getJob(scratch.db, job.id)).status, 'cancelled');
    });

    test('the sweeper requeues an expired lease, then fails it when attempts run out; a lost lease is refused', async () => {
      const { job } = await d.submitJob({ kind: 'flaky' }, [{ kind: 'work', hostId: hostB, maxAttempts: 2 }]);
      const first = await d.claim(hostB, 'b/old', 0);
      assert.ok(first);
      const later = (ms: number) => new Date(Date.now() + ms);
      const r1 = await d.sweep(later(61_000));
      assert.deepEqual(
        r1.requeued.map((t) => t.id),
        [first.id],
      );
      assert.match(
        (await getJob(scratch.db, job.id)).messages.at(-1)?.text ?? '',
        /lease expired.*queued again/,
      );
      await assert.rejects(d.heartbeat(first.id, 'b/old'), { code: 'CATALOG_LEASE_LOST' });
      const second = await d.claim(hostB, 'b/new', 0);
      assert.equal(second?.id, first.id);
      assert.equal(second?.attempts, 2);
      const r2 = await d.sweep(later(122_000));
      assert.deepEqual(
        r2.failed.map((t) => t.id),
        [first.id],
      );
      const failed = await getJob(scratch.db, job.id);
      assert.equal(failed.status, 'failed');
      assert.match(failed.error ?? '', /lease expired/);
    });

    test('a task requeued after its job failed is cancelled, not left queued forever', async () => {
      const { job } = await d.submitJob({ kind: 'two' }, [
        { kind: 'w', hostId: hostB },
        { kind: 'w', hostId: hostB },
      ]);
      const t1 = await d.claim(hostB, 'b/x', 0);
      const t2 = await d.claim(hostB, 'b/x', 0);
      assert.ok(t1 && t2);
      await d.fail(t1.id, 'b/x', { code: 'X', message: 'broke' });
      // t2's datamover dies: its lease expires with attempts left, but its job is over.
      await d.sweep(new Date(Date.now() + 61_000));
      const tasks = await listTasks(scratch.db, job.id);
      assert.equal(tasks.find((t) => t.id === t2.id)?.status, 'cancelled');
      assert.equal((await getJob(scratch.db, job.id)).status, 'failed');
    });

    test('a hook that throws leaves a warning and keeps the outcome', async () => {
      const off = d.hooks.onTask('hooked', {
        onTaskSucceeded: () => {
          throw new Error('cleanup exploded');
        },
      });
      const { job } = await d.submitJob({ kind: 'h' }, [{ kind: 'hooked', hostId: hostA }]);
      const t = await d.claim(hostA, 'a/1', 0);
      assert.ok(t);
      await d.complete(t.id, 'a/1', 1);
      const j = await getJob(scratch.db, job.id);
      assert.equal(j.status, 'succeeded');
      assert.ok(j.messages.some((m) => m.level === 'warning' && /cleanup exploded/.test(m.text)));
      off();
    });

    test('a hook may add the next task: the job goes on', async () => {
      const off = d.hooks.onTask('stage1', {
        onTaskSucceeded: async ({ job }) => {
          await d.addTasks(job.id, [{ kind: 'stage2', hostId: hostA }]);
        },
      });
      const { job } = await d.submitJob({ kind: 'staged' }, [{ kind: 'stage1', hostId: hostA }]);
      const s1 = await d.claim(hostA, 'a/1', 0);
      assert.ok(s1);
      await d.complete(s1.id, 'a/1', null);
      assert.equal((await getJob(scratch.db, job.id)).status, 'running');
      const s2 = await d.claim(hostA, 'a/1', 0);
      assert.equal(s2?.kind, 'stage2');
      await d.complete(s2.id, 'a/1', null);
      assert.equal((await getJob(scratch.db, job.id)).status, 'succeeded');
      off();
    });

    test('the sweeper settles a job left without live tasks (its controller died before settling it)', async () => {
      const { job } = await d.submitJob({ kind: 'orphan' }, [{ kind: 'work', hostId: hostA }]);
      const t = await d.claim(hostA, 'a/1', 0);
      assert.ok(t);
      // The outcome is recorded straight in the catalog, as by a controller that died right after.
      await finishTask(scratch.db, t.id, 'a/1', { status: 'succeeded', result: null });
      assert.equal((await requestJobCancel(scratch.db, job.id)).status, 'cancelling');
      const soon = await d.sweep(new Date());
      assert.ok(!soon.jobsSettled.some((j) => j.id === job.id), 'not while a task finished recently');
      const report = await d.sweep(new Date(Date.now() + 3_600_000));
      const settled = report.jobsSettled.find((j) => j.id === job.id);
      // Every task succeeded before the cancel was noticed: the job keeps that outcome.
      assert.equal(settled?.status, 'succeeded');
      // Hosts silent for an hour are offline.
      assert.ok(report.hostsOffline.some((h) => h.id === hostA));
    });
  });
}
