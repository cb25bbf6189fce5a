import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { findHostByName, getJob, listTasks } from '../src/catalog/index.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';
import { createToken } from '../src/catalog/tokens.js';
import { createUser } from '../src/catalog/users.js';
import { ensureDatamoverUser } from '../src/controller/bootstrap.js';
import { type RunningController, startController } from '../src/controller/server.js';
import type { HostInventory } from '../src/datamover/host-inventory.js';
import { LibvirtHypervisor } from '../src/hypervisor/libvirt.js';
import { libvirtTestEnv } from './helpers/libvirt.js';

/**
 * The datamover protocol end to end: a controller in this process (short leases, a fast sweeper, so
 * lease expiry takes seconds) and `lifeboat datamover` as real separate processes that register,
 * claim, report, get killed and get cancelled.
 */

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'bin', 'lifeboat.js');
const TEST_HANDLERS = join(ROOT, 'test', 'helpers', 'datamover-with-test-handlers.ts');
const LEASE_MS = 1500;

interface Datamover {
  child: ChildProcess;
  name: string;
  stderr: () => string;
  stop(): Promise<void>;
}

function spawnDatamover(
  controllerUrl: string,
  token: string,
  name: string,
  options: { testHandlers?: boolean } = {},
): Datamover {
  const args = [
    'datamover',
    '--controller',
    controllerUrl,
    '--token',
    token,
    '--name',
    name,
    '--libvirt-uri',
    libvirtTestEnv().uri,
  ];
  const argv = options.testHandlers ? ['--import', 'tsx', TEST_HANDLERS, ...args] : [CLI, ...args];
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  child.stdout?.resume();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    name,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('datamover service', () => {
  let scratch: ScratchCatalog;
  let controller: RunningController;
  let token: string;
  let dir: string;
  const movers: Datamover[] = [];
  const hookCalls: Array<{ hook: string; kind: string; reason?: string; leaseExpired?: boolean }> = [];

  const hostName = (label: string) => `dmtest-${process.pid}-${label}`;

  async function start(port = 0): Promise<RunningController> {
    const c = await startController({
      db: scratch.url,
      target: join(dir, 'target'),
      listen: `127.0.0.1:${port}`,
      localDatamover: false,
      leaseMs: LEASE_MS,
      sweepIntervalMs: 200,
      claimWaitMs: 2000,
    });
    for (const kind of ['host.inventory', 'test.sleep']) {
      c.dispatcher.hooks.onTask(kind, {
        onTaskSucceeded: ({ task }) => void hookCalls.push({ hook: 'succeeded', kind: task.kind }),
        onTaskFailed: ({ task, reason, leaseExpired }) =>
          void hookCalls.push({ hook: 'failed', kind: task.kind, reason, leaseExpired }),
        onTaskCancelled: ({ task }) => void hookCalls.push({ hook: 'cancelled', kind: task.kind }),
      });
    }
    return c;
  }

  async function registeredHost(name: string) {
    return until(`host ${name} to register`, () => findHostByName(controller.db, name));
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lifeboat-dm-'));
    scratch = await openScratchCatalog('sqlite');
    controller = await start();
    const user = await ensureDatamoverUser(controller.db);
    token = (await createToken(controller.db, { userId: user.id, name: 'test-datamover' })).secret;
  });

  after(async () => {
    for (const m of movers) await m.stop();
    await controller?.close();
    await scratch?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a remote datamover registers, claims a host.inventory task and completes it', async () => {
    const dm = spawnDatamover(controller.url, token, hostName('inventory'));
    movers.push(dm);
    const host = await registeredHost(dm.name);
    assert.equal(host.status, 'online');
    assert.equal(host.capabilities.libvirt_uri, libvirtTestEnv().uri);
    assert.ok((host.capabilities.task_kinds as string[]).includes('host.inventory'));

    const inventory = (await controller.dispatcher.runTask(
      host.id,
      'host.inventory',
      {},
      { timeoutMs: 60_000 },
    )) as HostInventory;
    const expected = await new LibvirtHypervisor({ uri: libvirtTestEnv().uri }).domains.list();
    const seen = new Set(inventory.vms.map((v) => v.uuid));
    // Test files running beside this one create and remove domains: compare what both saw.
    const stable = expected.filter((d) => !d.name.startsWith('lbtest-'));
    for (const d of stable) assert.ok(seen.has(d.uuid), `inventory lacks ${d.name}`);
    assert.ok(Array.isArray(inventory.networks));
    assert.ok(Array.isArray(inventory.storage.directories));
    assert.ok(hookCalls.some((h) => h.hook === 'succeeded' && h.kind === 'host.inventory'));

    // The same through the API and the cloud driver (remote host: a task, not a direct call).
    const admin = await createUser(controller.db, { name: `admin-${process.pid}`, role: 'admin' });
    const adminToken = (await createToken(controller.db, { userId: admin.id, name: 't' })).secret;
    const res = await fetch(`${controller.url}/v1/hosts/${host.id}/vms?refresh=true`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { items: Array<{ uuid: string }> };
    for (const d of stable) assert.ok(body.items.some((v) => v.uuid === d.uuid));
  });

  test('only datamover and admin tokens speak the protocol', async () => {
    const member = await createUser(controller.db, { name: `member-${process.pid}`, role: 'member' });
    const memberToken = (await createToken(controller.db, { userId: member.id, name: 't' })).secret;
    const register = (t: string) =>
      fetch(`${controller.url}/v1/datamover/hosts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: hostName('auth'), address: 'here' }),
      });
    assert.equal((await register(memberToken)).status, 403);
    assert.equal((await register('lb_nonsense')).status, 401);
    const ok = await register(token);
    assert.equal(ok.status, 200);
    const again = (await (await register(token)).json()) as { host_id: string };
    assert.equal(
      again.host_id,
      ((await ok.json()) as { host_id: string }).host_id,
      'registration is idempotent',
    );
    const beat = await fetch(`${controller.url}/v1/datamover/hosts/${again.host_id}/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(beat.status, 200);
    assert.deepEqual(await beat.json(), { host_id: again.host_id, status: 'online' });
  });

  test('a datamover killed mid-task: the task and its job fail after the lease expires, and the hook runs', async () => {
    const dm = spawnDatamover(controller.url, token, hostName('killed'), { testHandlers: true });
    movers.push(dm);
    const host = await registeredHost(dm.name);
    const { job, tasks } = await controller.dispatcher.submitJob({ kind: 'test.sleep' }, [
      { kind: 'test.sleep', hostId: host.id, payload: { durationMs: 600_000, stepMs: 100 }, maxAttempts: 1 },
    ]);
    // Progress reaches the job before the kill: the datamover was really working.
    await until('job progress', async () => (await getJob(controller.db, job.id)).progress_done > 0);
    const running = await getJob(controller.db, job.id);
    assert.equal(running.status, 'running');
    assert.equal(running.progress_total, 600_000);

    dm.child.kill('SIGKILL');
    const finished = await controller.dispatcher.waitForJob(job.id, { timeoutMs: 30_000 });
    assert.equal(finished.status, 'failed');
    assert.match(finished.error ?? '', /lease expired/);
    const [task] = await listTasks(controller.db, job.id);
    assert.equal(task.id, tasks[0].id);
    assert.equal(task.status, 'failed');
    assert.match(task.error ?? '', /lease expired/);
    const hook = hookCalls.find((h) => h.hook === 'failed' && h.kind === 'test.sleep');
    assert.ok(hook, 'onTaskFailed ran');
    assert.equal(hook.leaseExpired, true);
    assert.match(hook.reason ?? '', /lease expired/);
  });

  test('a job cancel reaches the running handler through its AbortSignal', async () => {
    const dm = spawnDatamover(controller.url, token, hostName('cancel'), { testHandlers: true });
    movers.push(dm);
    const host = await registeredHost(dm.name);
    const markerFile = join(dir, 'abort-reason');
    const { job } = await controller.dispatcher.submitJob({ kind: 'test.sleep' }, [
      { kind: 'test.sleep', hostId: host.id, payload: { durationMs: 600_000, markerFile } },
    ]);
    await until('job progress', async () => (await getJob(controller.db, job.id)).progress_done > 0);

    const admin = await createUser(controller.db, { name: `canceller-${process.pid}`, role: 'admin' });
    const adminToken = (await createToken(controller.db, { userId: admin.id, name: 't' })).secret;
    const res = await fetch(`${controller.url}/v1/jobs/${job.id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}` },
    });
    assert.equal(res.status, 202);
    assert.equal(((await res.json()) as { status: string }).status, 'cancelling');

    const finished = await controller.dispatcher.waitForJob(job.id, { timeoutMs: 30_000 });
    assert.equal(finished.status, 'cancelled');
    assert.ok(existsSync(markerFile), 'the handler saw the abort');
    assert.equal(readFileSync(markerFile, 'utf8'), 'DATAMOVER_TASK_CANCELLED');
    const [task] = await listTasks(controller.db, job.id);
    assert.equal(task.status, 'cancelled');
    assert.ok(hookCalls.some((h) => h.hook === 'cancelled' && h.kind === 'test.sleep'));
  });

  test('a datamover rides out a controller restart and its task completes', async () => {
    const dm = spawnDatamover(controller.url, token, hostName('restart'), { testHandlers: true });
    movers.push(dm);
    const host = await registeredHost(dm.name);
    const port = Number(new URL(controller.url).port);

    // The controller goes away with a task running and comes back on the same port and catalog; the
    // task either kept its lease or was queued again and re-run: either way it completes.
    const { job } = await controller.dispatcher.submitJob({ kind: 'test.sleep' }, [
      { kind: 'test.sleep', hostId: host.id, payload: { durationMs: 4000, stepMs: 100 }, maxAttempts: 3 },
    ]);
    await until('job progress', async () => (await getJob(controller.db, job.id)).progress_done > 0);
    await controller.close();
    await sleep(1000);
    controller = await start(port);

    const finished = await controller.dispatcher.waitForJob(job.id, { timeoutMs: 60_000 });
    assert.equal(finished.status, 'succeeded', `${finished.error}\n${dm.stderr()}`);
    const [task] = await listTasks(controller.db, job.id);
    assert.deepEqual(task.result, { slept: 4000 });
    assert.equal(finished.progress_done, 4000);
  });
});
