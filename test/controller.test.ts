/**
 * The controller's domain services over the REST API, on SQLite and PostgreSQL, with a real
 * directory target: workloads (and their workload.json), snapshots (jobs, one task per VM, commit by
 * the controller, cleanup of a failed snapshot, the workload lock), restore plans and restores
 * (tasks and validation), snapshot delete with a merge, import into a fresh catalog, reassignment,
 * and project isolation. The datamover's part of a snapshot task is played by `writeVmForTask`,
 * which writes a real qcow2 image and vm.json through the target's SnapshotWriter exactly as a
 * datamover handler does (the real handlers run against libvirt in e2e.test.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../src/api/server.js';
import { registerHost } from '../src/catalog/hosts.js';
import { claimNextTask, finishTask, getJob, listTasks, type Task } from '../src/catalog/jobs.js';
import { addProjectMember, createProject } from '../src/catalog/projects.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';
import { createTarget } from '../src/catalog/targets.js';
import { createToken } from '../src/catalog/tokens.js';
import { createUser } from '../src/catalog/users.js';
import type { ControllerContext } from '../src/controller/context.js';
import { createDomainServices } from '../src/controller/domain-services.js';
import { settleRestoreJob } from '../src/controller/restores.js';
import { settleSnapshotJob } from '../src/controller/snapshot-settle.js';
import { delegatedLease } from '../src/datamover/handlers/delegated-lease.js';
import { snapshotVmPayload } from '../src/datamover/handlers/payloads.js';
import { openLocator } from '../src/datamover/handlers/target-locator.js';
import { SnapshotWriter } from '../src/target/snapshot-writer.js';

const run = promisify(execFile);
const VM1 = '11111111-2222-3333-4444-555555555551';
const VM2 = '11111111-2222-3333-4444-555555555552';

/** A datamover's work for one snapshot.vm task: one real qcow2 image + vm.json through SnapshotWriter. */
async function writeVmForTask(task: Task, scratchDir: string): Promise<void> {
  const p = snapshotVmPayload.parse(task.payload);
  const target = await openLocator(p.target);
  const writer = await SnapshotWriter.begin(target, delegatedLease(target, p.workloadId, p.leaseToken), {
    snapshotId: p.snapshotId,
    type: p.type,
    parentSnapshotId: p.parentSnapshotId,
  });
  const img = join(scratchDir, `${task.id}.qcow2`);
  const backing = writer.backingFor(p.vm.id, 'vda');
  // A full holds 0x11 in its first 64 KiB; an incremental is a real overlay adding 0x22 after it.
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
  const [pattern, offset] = backing === null ? [0x11, 0] : [0x22, 65536];
  await run('qemu-io', ['-f', 'qcow2', '-c', `write -q -P ${pattern} ${offset} 64k`, img]);
  // -u: the backing name is relative to where the image will live on the target, not here.
  if (backing !== null) await run('qemu-img', ['rebase', '-u', '-b', backing, '-F', 'qcow2', img]);
  const dw = await writer.createDiskWriter(p.vm.id, 'vda');
  await dw.write(await readFile(img));
  await dw.close();
  await writer.writeVm({
    id: p.vm.id,
    name: p.vm.name,
    uuid: p.vm.uuid,
    domainXml: `<domain type='qemu'><name>${p.vm.name}</name><uuid>${p.vm.uuid}</uuid></domain>`,
    memoryBytes: 64 << 20,
    vcpus: 1,
    nics: [{ mac: null, model: 'virtio', network: 'default' }],
    disks: [
      {
        name: 'vda',
        targetDev: 'vda',
        virtualSize: 1 << 20,
        allocatedBytes: 0,
        backing,
        mode: backing === null ? 'full' : 'incremental',
        checkpointName: `lifeboat-${p.snapshotId}`,
        checkpointXml: null,
        fallbackWarning: null,
      },
    ],
  });
  await target.backend.close();
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`controller services on ${dialect}`, () => {
    let cat: ScratchCatalog;
    let ctx: ControllerContext;
    let api: FastifyInstance;
    let dir: string;
    let targetDir: string;
    let hostId: string;
    let targetId: string;
    let projectA: string;
    let projectB: string;
    const tokens: Record<'admin' | 'alice' | 'bob', string> = { admin: '', alice: '', bob: '' };

    const call = async (who: keyof typeof tokens, method: string, url: string, payload?: unknown) => {
      const res = await api.inject({
        method: method as 'GET',
        url,
        headers: { authorization: `Bearer ${tokens[who]}` },
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
      return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
    };

    /** Claims and runs every queued snapshot task; `failVm` makes that VM's task fail instead. */
    const runSnapshotTasks = async (failVm?: string) => {
      for (;;) {
        const task = await claimNextTask(cat.db, hostId, 60_000, { owner: 'test-dm' });
        if (!task) return;
        const p = snapshotVmPayload.parse(task.payload);
        if (p.vm.uuid === failVm) {
          await finishTask(cat.db, task.id, 'test-dm', {
            status: 'failed',
            error: 'BACKUP_FAILED: disk read error',
          });
        } else {
          await writeVmForTask(task, dir);
          await finishTask(cat.db, task.id, 'test-dm', { status: 'succeeded', result: { vmId: p.vm.id } });
        }
        await settleSnapshotJob(ctx, task.job_id);
      }
    };

    before(async () => {
      cat = await openScratchCatalog(dialect);
      dir = await mkdtemp(join(tmpdir(), 'lifeboat-controller-'));
      targetDir = join(dir, 'target');
      const admin = await createUser(cat.db, { name: 'admin', role: 'admin' });
      const alice = await createUser(cat.db, { name: 'alice', role: 'member' });
      const bob = await createUser(cat.db, { name: 'bob', role: 'member' });
      projectA = (await createProject(cat.db, { name: 'pa' })).id;
      projectB = (await createProject(cat.db, { name: 'pb' })).id;
      await addProjectMember(cat.db, projectA, alice.id);
      await addProjectMember(cat.db, projectB, bob.id);
      tokens.admin = (await createToken(cat.db, { userId: admin.id, name: 't' })).secret;
      tokens.alice = (await createToken(cat.db, { userId: alice.id, name: 't' })).secret;
      tokens.bob = (await createToken(cat.db, { userId: bob.id, name: 't' })).secret;
      hostId = (await registerHost(cat.db, { name: 'host1', address: 'host1' })).id;
      targetId = (await createTarget(cat.db, { name: 'local', kind: 'fs', url: targetDir })).id;
      ctx = createDomainServices(cat.db, {
        installationId: 'test-install',
        defaultStorageDir: join(dir, 'restored'),
      });
      api = await buildApi({ catalog: cat.db, controller: ctx });
    });

    after(async () => {
      await api?.close();
      await ctx?.targets.close();
      await cat?.drop();
      await rm(dir, { recursive: true, force: true });
    });

    let workloadId = '';
    const snapshots: string[] = [];

    test('a workload is created with its VMs and described on the target', async () => {
      const res = await call('alice', 'POST', '/v1/workloads', {
        project_id: projectA,
        name: 'app',
        vms: [
          { host_id: hostId, uuid: VM1, name: 'web' },
          { host_id: hostId, uuid: VM2, name: 'db', excluded_disks: ['vdb'] },
        ],
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      workloadId = res.body.id;
      assert.equal(res.body.vms.length, 2);
      // Names beside the ids, for people (the CLI prints them).
      assert.equal(res.body.project_name, 'pa');
      assert.equal(res.body.owner_name, 'alice');
      assert.equal(typeof res.body.target_name, 'string');
      assert.deepEqual(
        res.body.vms.map((v: { host_name: string }) => v.host_name),
        ['host1', 'host1'],
      );
      const target = await ctx.targets.target(targetId);
      const doc = await target.readWorkload(workloadId);
      assert.equal(doc?.name, 'app');
      assert.equal(doc?.labels['project.name'], 'pa');
      assert.equal(doc?.labels['owner.name'], 'alice');
      assert.equal(doc?.labels[`vm.${VM1}.host`], 'host1');
      assert.deepEqual(doc?.vms.map((v) => v.name).sort(), ['db', 'web']);
    });

    test('a VM belongs to at most one workload', async () => {
      const res = await call('alice', 'POST', '/v1/workloads', {
        project_id: projectA,
        name: 'other',
        vms: [{ host_id: hostId, uuid: VM1 }],
      });
      assert.equal(res.status, 409);
      assert.match(res.body.message, /at most one/);
      const list = await call('alice', 'GET', '/v1/workloads');
      assert.deepEqual(
        list.body.items.map((w: { name: string }) => w.name),
        ['app'],
      );
    });

    test('other projects see nothing (404, not 403)', async () => {
      assert.equal((await call('bob', 'GET', `/v1/workloads/${workloadId}`)).status, 404);
      assert.equal((await call('bob', 'POST', `/v1/workloads/${workloadId}/snapshots`, {})).status, 404);
      assert.equal((await call('bob', 'GET', `/v1/snapshots?workload_id=${workloadId}`)).status, 404);
      assert.equal((await call('bob', 'DELETE', `/v1/workloads/${workloadId}`)).status, 404);
      assert.deepEqual((await call('bob', 'GET', '/v1/workloads')).body.items, []);
      assert.deepEqual((await call('bob', 'GET', '/v1/snapshots')).body.items, []);
      assert.equal((await call('alice', 'GET', '/v1/import')).status, 403);
    });

    test('a full snapshot: one task per VM on its host, the workload locked, committed at the end', async () => {
      const res = await call('alice', 'POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(res.body.snapshot.type, 'full');
      const tasks = await listTasks(cat.db, res.body.job.id);
      assert.equal(tasks.length, 2);
      assert.ok(tasks.every((t) => t.kind === 'snapshot.vm' && t.host_id === hostId));
      const busy = await call('alice', 'POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(busy.status, 409);
      assert.equal(busy.body.code, 'CATALOG_LOCKED');
      await runSnapshotTasks();
      const shown = await call('alice', 'GET', `/v1/snapshots/${res.body.snapshot.id}`);
      assert.equal(shown.body.status, 'available');
      assert.equal(shown.body.vms.length, 2);
      assert.ok(shown.body.vms.every((v: { disks: unknown[] }) => v.disks.length === 1));
      const target = await ctx.targets.target(targetId);
      assert.ok(await target.readSnapshot(workloadId, res.body.snapshot.id));
      const w = await call('alice', 'GET', `/v1/workloads/${workloadId}`);
      assert.equal(w.body.locked_by_job_id, null);
      snapshots.push(res.body.snapshot.id);
    });

    test('the next snapshot is incremental on the last one', async () => {
      const res = await call('alice', 'POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(res.body.snapshot.type, 'incremental');
      assert.equal(res.body.snapshot.parent_id, snapshots[0]);
      await runSnapshotTasks();
      assert.equal(
        (await call('alice', 'GET', `/v1/snapshots/${res.body.snapshot.id}`)).body.status,
        'available',
      );
      snapshots.push(res.body.snapshot.id);
    });

    test('a failed VM fails the snapshot with the reason, leaves nothing on the target, unlocks', async () => {
      const res = await call('alice', 'POST', `/v1/workloads/${workloadId}/snapshots`, { full: true });
      assert.equal(res.body.snapshot.type, 'full');
      await runSnapshotTasks(VM2);
      const shown = await call('alice', 'GET', `/v1/snapshots/${res.body.snapshot.id}`);
      assert.equal(shown.body.status, 'failed');
      assert.match(shown.body.error, /disk read error/);
      const target = await ctx.targets.target(targetId);
      assert.deepEqual(await target.listSnapshotFolders(workloadId), [...snapshots].sort());
      assert.equal((await call('alice', 'GET', `/v1/workloads/${workloadId}`)).body.locked_by_job_id, null);
    });

    test('a cancelled snapshot ends failed (cancelled) and unlocks', async () => {
      const res = await call('alice', 'POST', `/v1/workloads/${workloadId}/snapshots`, {});
      const cancel = await call('alice', 'POST', `/v1/snapshots/${res.body.snapshot.id}/cancel`);
      assert.equal(cancel.status, 202);
      assert.equal(cancel.body.status, 'cancelled');
      const shown = await call('alice', 'GET', `/v1/snapshots/${res.body.snapshot.id}`);
      assert.equal(shown.body.status, 'failed');
      assert.equal(shown.body.error, 'cancelled');
      assert.equal((await call('alice', 'GET', `/v1/workloads/${workloadId}`)).body.locked_by_job_id, null);
    });

    test('restore plans: generated complete, validated on submit; one-click and selective make tasks', async () => {
      const plan = await call('alice', 'GET', `/v1/snapshots/${snapshots[1]}/restore-plan`);
      assert.equal(plan.status, 200);
      assert.equal(plan.body.vms.length, 2);
      assert.ok(
        plan.body.vms.every(
          (v: { host_id: string; storage_dir: string }) => v.host_id === hostId && v.storage_dir,
        ),
      );
      assert.deepEqual(plan.body.vms[0].network_map, { default: { type: 'network', network: 'default' } });

      const bad = structuredClone(plan.body);
      bad.vms[0].disks = ['vdz'];
      bad.vms[1].vm_id = 'nope';
      const refused = await call('alice', 'POST', '/v1/restores', {
        snapshot_id: snapshots[1],
        kind: 'selective',
        plan: bad,
      });
      assert.equal(refused.status, 400);
      assert.equal(refused.body.code, 'CONTROLLER_PLAN_INVALID');
      assert.match(refused.body.message, /vdz/);
      assert.match(refused.body.message, /nope/);

      const sel = structuredClone(plan.body);
      sel.vms[0].name = 'web-copy';
      sel.vms[1].include = false;
      const ok = await call('alice', 'POST', '/v1/restores', {
        snapshot_id: snapshots[1],
        kind: 'selective',
        plan: sel,
      });
      assert.equal(ok.status, 202, JSON.stringify(ok.body));
      const tasks = await listTasks(cat.db, ok.body.job.id);
      assert.equal(tasks.length, 1);
      assert.equal(tasks[0].kind, 'restore.vm');
      assert.equal((tasks[0].payload as { name: string }).name, 'web-copy');
      // The restore holds the workload: no snapshot meanwhile.
      assert.equal((await call('alice', 'POST', `/v1/workloads/${workloadId}/snapshots`, {})).status, 409);
      const t = await claimNextTask(cat.db, hostId, 60_000, { owner: 'test-dm' });
      await finishTask(cat.db, t!.id, 'test-dm', { status: 'failed', error: 'RESTORE_DOMAIN_EXISTS: taken' });
      await settleRestoreJob(ctx, ok.body.job.id);
      const r = await call('alice', 'GET', `/v1/restores/${ok.body.restore.id}`);
      assert.equal(r.body.status, 'failed');
      assert.match(r.body.error, /RESTORE_DOMAIN_EXISTS/);
      assert.equal((await call('bob', 'GET', `/v1/restores/${ok.body.restore.id}`)).status, 404);

      const oneClick = await call('alice', 'POST', '/v1/restores', {
        snapshot_id: snapshots[0],
        kind: 'one_click',
      });
      assert.equal(oneClick.status, 202);
      assert.equal((await listTasks(cat.db, oneClick.body.job.id)).length, 2);
      for (;;) {
        const task = await claimNextTask(cat.db, hostId, 60_000, { owner: 'test-dm' });
        if (!task) break;
        await finishTask(cat.db, task.id, 'test-dm', {
          status: 'succeeded',
          result: { name: 'x', disks: [{}] },
        });
        await settleRestoreJob(ctx, task.job_id);
      }
      assert.equal(
        (await call('alice', 'GET', `/v1/restores/${oneClick.body.restore.id}`)).body.status,
        'succeeded',
      );
    });

    test('import: a fresh catalog finds the workload on the target, imports it into another project', async () => {
      const fresh = await openScratchCatalog(dialect);
      try {
        const admin = await createUser(fresh.db, { name: 'root', role: 'admin' });
        const carol = await createUser(fresh.db, { name: 'carol', role: 'member' });
        const proj = await createProject(fresh.db, { name: 'dr' });
        await registerHost(fresh.db, { name: 'host1', address: 'host1' });
        await createTarget(fresh.db, { name: 'same', kind: 'fs', url: targetDir });
        const ctx2 = createDomainServices(fresh.db, { installationId: 'dr-install' });
        const api2 = await buildApi({ catalog: fresh.db, controller: ctx2 });
        const tok = (await createToken(fresh.db, { userId: admin.id, name: 't' })).secret;
        const c2 = async (method: string, url: string, payload?: unknown) => {
          const res = await api2.inject({
            method: method as 'GET',
            url,
            headers: { authorization: `Bearer ${tok}` },
            ...(payload === undefined ? {} : { payload: payload as object }),
          });
          return { status: res.statusCode, body: JSON.parse(res.body) };
        };
        const list = await c2('GET', '/v1/import');
        assert.equal(list.status, 200, JSON.stringify(list.body));
        assert.equal(list.body.items.length, 1);
        assert.equal(list.body.items[0].name, 'app');
        assert.equal(list.body.items[0].owner, 'alice');
        assert.equal(list.body.items[0].snapshot_count, 2);
        assert.equal(list.body.items[0].vms.length, 2);
        const imp = await c2('POST', '/v1/import', { project_id: proj.id, owner: 'carol' });
        assert.equal(imp.status, 201, JSON.stringify(imp.body));
        assert.equal(imp.body.items[0].imported_snapshots, 2);
        assert.equal(imp.body.items[0].vms.length, 2);
        assert.equal((await c2('GET', '/v1/import')).body.items.length, 0);
        const snaps = await c2('GET', `/v1/snapshots?workload_id=${workloadId}`);
        assert.deepEqual(
          snaps.body.items.map((s: { id: string }) => s.id),
          snapshots,
        );
        assert.equal(snaps.body.items[1].parent_id, snapshots[0]);
        const plan = await c2('GET', `/v1/snapshots/${snapshots[1]}/restore-plan`);
        assert.equal(plan.body.vms.length, 2);
        const target = await ctx2.targets.target(
          (await fresh.db.selectFrom('targets').select('id').executeTakeFirstOrThrow()).id,
        );
        const doc = await target.readWorkload(workloadId);
        assert.equal(doc?.labels['owner.name'], 'carol');
        assert.equal(doc?.labels['project.name'], 'dr');
        // Reassign later: the new owner is written back to the target.
        const moved = await c2('PATCH', `/v1/workloads/${workloadId}`, { owner: 'root' });
        assert.equal(moved.status, 200, JSON.stringify(moved.body));
        assert.equal((await target.readWorkload(workloadId))?.labels['owner.name'], 'root');
        void carol;
        await api2.close();
        await ctx2.targets.close();
      } finally {
        await fresh.drop();
      }
    });

    test('deleting the full snapshot merges it into the incremental that needs it', async () => {
      const res = await call('alice', 'DELETE', `/v1/snapshots/${snapshots[0]}`);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      for (let i = 0; i < 100; i++) {
        const job = await getJob(cat.db, res.body.job.id);
        if (job.status === 'succeeded' || job.status === 'failed') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const job = await getJob(cat.db, res.body.job.id);
      assert.equal(job.status, 'succeeded', `${job.error}`);
      const next = await call('alice', 'GET', `/v1/snapshots/${snapshots[1]}`);
      assert.equal(next.body.type, 'full');
      assert.equal(next.body.parent_id, null);
      const target = await ctx.targets.target(targetId);
      const meta = await target.readSnapshot(workloadId, snapshots[1]);
      assert.equal(meta?.type, 'full');
      assert.deepEqual(await target.listSnapshotFolders(workloadId), [snapshots[1]]);
      const vm = await target.readVm(workloadId, snapshots[1], VM1);
      assert.equal(vm?.disks[0].backing, null);
      const img = join(
        targetDir,
        'workloads',
        workloadId,
        'snapshots',
        snapshots[1],
        'vms',
        VM1,
        'vda.qcow2',
      );
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', img])).stdout);
      assert.equal(info['backing-filename'], undefined);
      // Both snapshots' data are in the merged image.
      const read = await run('qemu-io', [
        '-f',
        'qcow2',
        '-c',
        'read -P 0x11 0 64k',
        '-c',
        'read -P 0x22 64k 64k',
        img,
      ]);
      assert.doesNotMatch(read.stdout, /Pattern verification failed/);
      // The commit journal went once vm.json recorded the merge: nothing but the format's files stays.
      assert.deepEqual(
        readdirSync(dirname(img)).filter((f) => f.includes('lifeboat-commit')),
        [],
      );
    });

    test('deleting a workload with its data removes its folder from the target', async () => {
      const res = await call('alice', 'DELETE', `/v1/workloads/${workloadId}?delete_data=true`);
      assert.equal(res.status, 204, JSON.stringify(res.body));
      const target = await ctx.targets.target(targetId);
      assert.deepEqual(await target.listWorkloadIds(), []);
      assert.equal((await call('alice', 'GET', `/v1/workloads/${workloadId}`)).status, 404);
    });
  });
}
