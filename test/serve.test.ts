import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';
import { lifeboatVersion } from '../src/cli/version.js';
import { createDemoVm, type DemoVm, deleteDemoVm } from '../src/cloud/libvirt/demo-vm.js';
import { libvirtTestEnv, testDomainName, testHypervisor } from './helpers/libvirt.js';

/** `lifeboat serve` as a real process, on SQLite and on PostgreSQL, driven with the real CLI. */

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'bin', 'lifeboat.js');

interface Serve {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  url: string;
  /** Undefined on a restart: the token is printed on the first start only. */
  token?: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startServe(db: string, targetDir: string, hostName: string): Promise<Serve> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--db',
      db,
      '--target',
      targetDir,
      '--listen',
      '127.0.0.1:0',
      '--host-name',
      hostName,
      '--libvirt-uri',
      libvirtTestEnv().uri,
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LIFEBOAT_DB: '', LIFEBOAT_TOKEN: '' },
    },
  );
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const deadline = Date.now() + 60_000;
  while (!/is running at http/.test(out) || !/(LIFEBOAT_TOKEN=lb_\S+|Use your admin token)/.test(out)) {
    if (child.exitCode !== null) throw new Error(`lifeboat serve exited ${child.exitCode}:\n${err}`);
    if (Date.now() > deadline) throw new Error(`lifeboat serve did not start:\n${out}\n${err}`);
    await sleep(100);
  }
  const url = /is running at (http:\/\/\S+)/.exec(out)?.[1] as string;
  const token = /LIFEBOAT_TOKEN=(lb_\S+)/.exec(out)?.[1];
  return { child, stdout: () => out, stderr: () => err, url, token, exited };
}

async function stopServe(s: Serve): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
  return s.exited;
}

async function cli(url: string, token: string, ...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, LIFEBOAT_URL: url, LIFEBOAT_TOKEN: token },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

interface HostRow {
  id: string;
  name: string;
  status: string;
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`lifeboat serve on ${dialect}`, () => {
    let scratch: ScratchCatalog;
    let dir: string;
    let serve: Serve | undefined;
    const hostName = `servetest-${process.pid}-${dialect}`;

    before(async () => {
      scratch = await openScratchCatalog(dialect);
      dir = mkdtempSync(join(tmpdir(), 'lifeboat-serve-'));
    });
    after(async () => {
      if (serve) await stopServe(serve);
      await scratch?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('first start prints a working admin token; health; the local host is listed; clean shutdown', async () => {
      serve = await startServe(scratch.url, join(dir, 'target'), hostName);
      assert.ok(serve.token, `no token printed:\n${serve.stdout()}`);
      const s = serve;

      const health = await fetch(`${s.url}/v1/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok', version: lifeboatVersion(), catalog: dialect });

      const whoami = await fetch(`${s.url}/v1/whoami`, { headers: { authorization: `Bearer ${s.token}` } });
      assert.equal(whoami.status, 200);
      assert.equal(((await whoami.json()) as { user: { role: string } }).user.role, 'admin');

      // ...and works in a `default` project, so a workload can be created right away.
      const projects = await fetch(`${s.url}/v1/projects`, {
        headers: { authorization: `Bearer ${s.token}` },
      });
      const names = ((await projects.json()) as { items: { name: string }[] }).items.map((p) => p.name);
      assert.deepEqual(names, ['default']);

      // The target was initialised and registered.
      const root = JSON.parse(readFileSync(join(dir, 'target', 'lifeboat-target.json'), 'utf8'));
      assert.ok(root, 'target root document written');

      // The local datamover registers within moments of the start.
      let hosts: HostRow[] = [];
      for (let i = 0; i < 100 && !hosts.some((h) => h.name === hostName); i++) {
        const r = await cli(s.url, s.token as string, 'host', 'list', '--json');
        assert.equal(r.code, 0, r.stderr);
        hosts = JSON.parse(r.stdout);
        if (!hosts.some((h) => h.name === hostName)) await sleep(200);
      }
      const local = hosts.find((h) => h.name === hostName);
      assert.ok(local, `host ${hostName} not listed`);
      assert.equal(local.status, 'online');
      const table = await cli(s.url, s.token as string, 'host', 'list');
      assert.match(table.stdout, new RegExp(`^${hostName}\\s+online`, 'm'));

      // The local host's VMs come straight from libvirt.
      const vms = await cli(s.url, s.token as string, 'host', 'vms', hostName, '--json');
      assert.equal(vms.code, 0, vms.stderr);
      assert.ok(Array.isArray(JSON.parse(vms.stdout)));

      // Errors are one line with a code.
      const bad = await cli(s.url, 'lb_wrong', 'host', 'list');
      assert.equal(bad.code, 1);
      assert.equal(bad.stderr.trim(), 'lifeboat: UNAUTHORIZED: invalid, revoked or expired token');

      const exit = await stopServe(s);
      assert.equal(exit.code, 0, s.stderr());
      serve = undefined;
    });

    test('a restart prints no new token and the first one still works', async () => {
      serve = await startServe(scratch.url, join(dir, 'target'), hostName);
      assert.equal(serve.token, undefined, 'no second admin token');
      assert.match(serve.stdout(), /Use your admin token/);
      const exit = await stopServe(serve);
      assert.equal(exit.code, 0);
      serve = undefined;
    });
  });
}

describe('demo VM', () => {
  let vm: DemoVm | undefined;
  after(async () => {
    if (vm) await deleteDemoVm(testHypervisor(), vm.name, vm.dir);
  });

  test('demo-vm creates a running TCG domain with two small disks holding data', async () => {
    const hv = testHypervisor();
    const name = testDomainName('demo');
    vm = await createDemoVm(hv, { name, dir: join(libvirtTestEnv().vmDir, name) });
    assert.equal(await hv.domains.state(name), 'running');
    const desc = await hv.domains.describe(name);
    assert.deepEqual(
      desc.disks.map((d) => [d.target, d.format, d.sizeBytes]),
      [
        ['vda', 'qcow2', 64 * 1024 * 1024],
        ['vdb', 'raw', 32 * 1024 * 1024],
      ],
    );
    // The data is there: qemu-img map shows allocated extents (shared lock: the VM holds the image).
    const { stdout } = await run('qemu-img', ['map', '-U', '--output=json', '-f', 'qcow2', vm.disks[0].path]);
    const data = (JSON.parse(stdout) as Array<{ data: boolean; length: number }>).filter((e) => e.data);
    assert.equal(
      data.reduce((n, e) => n + e.length, 0),
      6 * 1024 * 1024,
    );
    await assert.rejects(createDemoVm(hv, { name, dir: vm.dir }), { code: 'CLOUD_DEMO_VM_FAILED' });
  });
});
