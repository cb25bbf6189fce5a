/**
 * End to end, on SQLite and PostgreSQL, with real libvirt + QEMU (TCG): `lifeboat serve` (in this
 * process) and a `lifeboat datamover` process, driven through the REST API.
 * A workload of two tiny VMs: full -> guest writes -> incremental -> one-click restore after the
 * originals are deleted, and a selective restore under new names: every restored disk is
 * byte-identical to its source at that snapshot. Then the database is thrown away, a fresh
 * controller on the same target imports the workload, it is reassigned to another project, and a
 * restore is again identical. A datamover killed in the middle of a snapshot: the snapshot ends in
 * error with a reason, the workload is unlocked, nothing half-written is visible, and the next
 * snapshot succeeds.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { findHostByName } from '../src/catalog/hosts.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';
import { createToken } from '../src/catalog/tokens.js';
import { ensureDatamoverUser } from '../src/controller/bootstrap.js';
import { type RunningController, startController } from '../src/controller/server.js';
import {
  createTestDomain,
  destroyTestDomain,
  guestWrite,
  libvirtTestEnv,
  removeStaleTestDomains,
  type TestDomain,
} from './helpers/libvirt.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'src/cli/main.ts');
const LEASE_MS = 3000;
const MiB = 1024 * 1024;

function spawnDatamover(
  url: string,
  token: string,
  name: string,
): { child: ChildProcess; stop(): Promise<void> } {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      CLI,
      'datamover',
      '--controller',
      url,
      '--token',
      token,
      '--name',
      name,
      '--libvirt-uri',
      libvirtTestEnv().uri,
    ],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.on('data', (b: Buffer) => {
    if (process.env.LIFEBOAT_E2E_DEBUG) process.stderr.write(b);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false && v !== null) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Raw copy of a disk as it is now (the VM may be running: -U reads without the image lock). */
async function saveDisk(path: string, format: string, to: string): Promise<string> {
  await run('qemu-img', ['convert', '-U', '-f', format, '-O', 'raw', path, to]);
  return to;
}

async function identical(saved: string, restored: string): Promise<void> {
  await run('qemu-img', ['compare', '-U', '-f', 'raw', saved, restored]);
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`end to end on ${dialect}`, () => {
    let dir: string;
    let scratch: ScratchCatalog;
    let controller: RunningController;
    let mover: ReturnType<typeof spawnDatamover>;
    let adminToken = '';
    const hostName = `e2e-${process.pid}-${dialect}`;
    let hostId = '';
    const domains: TestDomain[] = [];
    const restoredNames: string[] = [];
    const storage = '/var/lib/libvirt/images/lifeboat';

    const api = async (method: string, path: string, body?: unknown, token = adminToken) => {
      const res = await fetch(`${controller.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    };

    const start = async () => {
      controller = await startController({
        db: scratch.url,
        target: join(dir, 'target'),
        listen: '127.0.0.1:0',
        localDatamover: false,
        leaseMs: LEASE_MS,
        sweepIntervalMs: 300,
        claimWaitMs: 2000,
      });
      if (controller.firstAdmin) adminToken = controller.firstAdmin.token;
      const user = await ensureDatamoverUser(controller.db);
      const token = (await createToken(controller.db, { userId: user.id, name: `dm-${Date.now()}` })).secret;
      mover = spawnDatamover(controller.url, token, hostName);
      hostId = (await until('the datamover to register', () => findHostByName(controller.db, hostName))).id;
    };

    const waitSnapshot = (id: string) =>
      until(`snapshot ${id}`, async () => {
        const s = await api('GET', `/v1/snapshots/${id}`);
        return s.body.status === 'creating' ? undefined : s.body;
      });
    const waitRestore = (id: string) =>
      until(`restore ${id}`, async () => {
        const r = await api('GET', `/v1/restores/${id}`);
        return ['queued', 'running'].includes(r.body.status) ? undefined : r.body;
      });

    before(async () => {
      await removeStaleTestDomains();
      dir = mkdtempSync(join(tmpdir(), `lifeboat-e2e-${dialect}-`));
      scratch = await openScratchCatalog(dialect);
      await start();
    });

    after(async () => {
      await mover?.stop();
      await controller?.close();
      await scratch?.drop();
      for (const d of domains) await d.cleanup().catch(() => undefined);
      const hv = domains[0]?.hv;
      for (const name of restoredNames) {
        if (hv) await destroyTestDomain(hv, name, join(dir, 'nothing')).catch(() => undefined);
        for (const dev of ['vda', 'vdb']) await rm(join(storage, `${name}-${dev}.qcow2`), { force: true });
      }
      rmSync(dir, { recursive: true, force: true });
    });

    let workloadId = '';
    let projectId = '';
    const snaps: string[] = [];
    /** Raw copies of every source disk at each snapshot: saved[snapshotIndex][vmIndex][diskIndex]. */
    const saved: string[][][] = [];

    const saveAll = async (i: number) => {
      saved[i] = [];
      for (const [v, d] of domains.entries()) {
        saved[i][v] = [];
        for (const disk of d.disks)
          saved[i][v].push(
            await saveDisk(disk.path, disk.format, join(dir, `s${i}-${v}-${disk.target}.raw`)),
          );
      }
    };

    test('full snapshot, guest writes, incremental snapshot of a two-VM workload', async () => {
      domains.push(
        await createTestDomain({
          label: `e2e-${dialect}-web`,
          disks: [{ format: 'qcow2', sizeMiB: 16, fill: [{ pattern: 0x61, offset: 0, length: 2 * MiB }] }],
        }),
        await createTestDomain({
          label: `e2e-${dialect}-db`,
          disks: [
            { format: 'qcow2', sizeMiB: 8, fill: [{ pattern: 0x62, offset: MiB, length: MiB }] },
            { format: 'raw', sizeMiB: 8, fill: [{ pattern: 0x63, offset: 0, length: 512 * 1024 }] },
          ],
        }),
      );
      const project = await api('POST', '/v1/projects', { name: `e2e-${dialect}` });
      projectId = project.body.id;
      const uuids = await Promise.all(domains.map((d) => d.hv.domains.uuid(d.name)));
      const w = await api('POST', '/v1/workloads', {
        project_id: projectId,
        name: 'app',
        vms: uuids.map((uuid) => ({ host_id: hostId, uuid })),
      });
      assert.equal(w.status, 201, JSON.stringify(w.body));
      workloadId = w.body.id;

      const first = await api('POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(first.status, 202, JSON.stringify(first.body));
      assert.equal(first.body.snapshot.type, 'full');
      const s1 = await waitSnapshot(first.body.snapshot.id);
      assert.equal(s1.status, 'available', s1.error);
      snaps.push(s1.id);
      await saveAll(0);

      await guestWrite(domains[0], 'vda', 0x71, 4 * MiB, MiB);
      await guestWrite(domains[1], 'vda', 0x72, 0, 256 * 1024);
      await guestWrite(domains[1], 'vdb', 0x73, 2 * MiB, 64 * 1024);
      const second = await api('POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(second.body.snapshot.type, 'incremental');
      const s2 = await waitSnapshot(second.body.snapshot.id);
      assert.equal(s2.status, 'available', s2.error);
      assert.equal(s2.vms.length, 2);
      snaps.push(s2.id);
      await saveAll(1);
    });

    test('one-click restore is refused while the originals exist, then restores them identically', async () => {
      const refused = await api('POST', '/v1/restores', { snapshot_id: snaps[1], kind: 'one_click' });
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'CONTROLLER_VMS_EXIST');
      for (const d of domains) {
        await d.hv.domains.destroy(d.name);
        if (await d.hv.domains.exists(d.name)) await d.hv.domains.undefine(d.name);
      }
      const r = await api('POST', '/v1/restores', { snapshot_id: snaps[1], kind: 'one_click' });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      for (const d of domains) restoredNames.push(d.name);
      const done = await waitRestore(r.body.restore.id);
      assert.equal(done.status, 'succeeded', done.error);
      for (const [v, d] of domains.entries()) {
        for (const [i, disk] of d.disks.entries()) {
          await identical(saved[1][v][i], join(storage, `${d.name}-${disk.target}.qcow2`));
        }
      }
    });

    test('selective restore under new names from the full snapshot is identical', async () => {
      const plan = (await api('GET', `/v1/snapshots/${snaps[0]}/restore-plan`)).body;
      for (const vm of plan.vms) {
        vm.name = `${vm.source_name}-sel`;
        vm.storage_dir = storage;
        restoredNames.push(vm.name);
      }
      const r = await api('POST', '/v1/restores', { snapshot_id: snaps[0], kind: 'selective', plan });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const done = await waitRestore(r.body.restore.id);
      assert.equal(done.status, 'succeeded', done.error);
      for (const [v, d] of domains.entries()) {
        for (const [i, disk] of d.disks.entries()) {
          await identical(saved[0][v][i], join(storage, `${d.name}-sel-${disk.target}.qcow2`));
        }
      }
    });

    test('a fresh controller on the same target imports, reassigns and restores identically', async () => {
      await mover.stop();
      await controller.close();
      await scratch.drop();
      scratch = await openScratchCatalog(dialect);
      await start();
      const list = await api('GET', '/v1/import');
      assert.equal(list.status, 200, JSON.stringify(list.body));
      assert.equal(list.body.items.length, 1);
      assert.equal(list.body.items[0].snapshot_count, 2);
      const p1 = (await api('POST', '/v1/projects', { name: 'dr-first' })).body.id;
      const p2 = (await api('POST', '/v1/projects', { name: 'dr-second' })).body.id;
      const imp = await api('POST', '/v1/import', { project_id: p1 });
      assert.equal(imp.status, 201, JSON.stringify(imp.body));
      assert.equal(imp.body.items[0].imported_snapshots, 2);
      const moved = await api('PATCH', `/v1/workloads/${workloadId}`, { project_id: p2 });
      assert.equal(moved.body.project_id, p2);
      const plan = (await api('GET', `/v1/snapshots/${snaps[1]}/restore-plan`)).body;
      for (const vm of plan.vms) {
        vm.name = `${vm.source_name}-dr`;
        vm.storage_dir = storage;
        vm.host_id = hostId;
        restoredNames.push(vm.name);
      }
      const r = await api('POST', '/v1/restores', { snapshot_id: snaps[1], kind: 'selective', plan });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const done = await waitRestore(r.body.restore.id);
      assert.equal(done.status, 'succeeded', done.error);
      for (const [v, d] of domains.entries()) {
        for (const [i, disk] of d.disks.entries()) {
          await identical(saved[1][v][i], join(storage, `${d.name}-dr-${disk.target}.qcow2`));
        }
      }
      // Project isolation over the API: a member of another project sees none of it.
      const outsider = await api('POST', '/v1/users', { name: `outsider-${dialect}`, role: 'member' });
      const tok = await api('POST', '/v1/tokens', { name: 't', user_id: outsider.body.id });
      assert.equal(tok.status, 201, JSON.stringify(tok.body));
      assert.equal((await api('GET', `/v1/workloads/${workloadId}`, undefined, tok.body.token)).status, 404);
      assert.equal((await api('GET', `/v1/snapshots/${snaps[1]}`, undefined, tok.body.token)).status, 404);
      assert.equal(
        (await api('GET', `/v1/restores/${r.body.restore.id}`, undefined, tok.body.token)).status,
        404,
      );
    });

    test('a datamover killed mid-snapshot: error with a reason, unlocked, nothing left, next one succeeds', async () => {
      // The originals were restored by the one-click restore: put them back in the workload.
      // (A restored domain is a new domain: new UUID, same name.)
      const w = (await api('GET', `/v1/workloads/${workloadId}`)).body;
      const uuids = await Promise.all(domains.map((d) => d.hv.domains.uuid(d.name)));
      const changed = await api('PATCH', `/v1/workloads/${workloadId}`, {
        remove_vms: w.vms.map((v: { id: string }) => v.id),
        add_vms: uuids.map((uuid) => ({ host_id: hostId, uuid })),
      });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      for (const d of domains)
        if ((await d.hv.domains.state(d.name)) !== 'running') await d.hv.domains.start(d.name);
      const s = await api('POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(s.status, 202, JSON.stringify(s.body));
      await until('a snapshot task to run', async () => {
        const job = await api('GET', `/v1/jobs/${s.body.job.id}`);
        return job.body.tasks.some((t: { status: string }) => t.status === 'running');
      });
      mover.child.kill('SIGKILL');
      const failed = await waitSnapshot(s.body.snapshot.id);
      assert.equal(failed.status, 'failed');
      assert.match(failed.error, /lease expired|stopped reporting/);
      const after = (await api('GET', `/v1/workloads/${workloadId}`)).body;
      assert.equal(after.locked_by_job_id, null);
      const folders = await controller.db.selectFrom('targets').select('url').executeTakeFirstOrThrow();
      const { Target } = await import('../src/target/target.js');
      const { FsBackend } = await import('../src/target/fs-backend.js');
      const target = await Target.open(await FsBackend.open(folders.url));
      assert.ok(!(await target.listSnapshotFolders(workloadId)).includes(s.body.snapshot.id));

      const user = await ensureDatamoverUser(controller.db);
      const token = (await createToken(controller.db, { userId: user.id, name: `dm-again-${Date.now()}` }))
        .secret;
      mover = spawnDatamover(controller.url, token, hostName);
      const next = await api('POST', `/v1/workloads/${workloadId}/snapshots`, {});
      assert.equal(next.status, 202, JSON.stringify(next.body));
      const ok = await waitSnapshot(next.body.snapshot.id);
      assert.equal(ok.status, 'available', ok.error);
    });
  });
}
