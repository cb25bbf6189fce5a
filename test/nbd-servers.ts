/**
 * Real NBD servers for the NBD tests: qemu-nbd and nbdkit on unix sockets in a temp dir or on
 * 127.0.0.1, started here and stopped by PID. Both fork into the background once they listen and
 * write a pid file, so "started" means "ready". Also the assertion the NBD tests share.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdError } from '../src/nbd/index.js';

export const exec = promisify(execFile);

export async function run(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await exec(cmd, args, { maxBuffer: 64 << 20 });
  return stdout;
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningServer {
  pid: number;
  /** nbd+unix:// or nbd:// URI of the export. */
  uri: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopPid(pid: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, signal);
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

async function readPid(pidFile: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    if (pid > 0) return pid;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no pid in ${pidFile}`);
}

export type Listen = { socket: string } | { port: number };

function uriFor(listen: Listen, exportName: string): string {
  const name = encodeURIComponent(exportName);
  return 'socket' in listen
    ? `nbd+unix:///${name}?socket=${listen.socket}`
    : `nbd://127.0.0.1:${listen.port}/${name}`;
}

export interface QemuNbdOptions {
  image: string;
  format: 'raw' | 'qcow2';
  listen: Listen;
  exportName?: string;
  readOnly?: boolean;
  /** Export this persistent dirty bitmap as qemu:dirty-bitmap:NAME. */
  bitmap?: string;
  pidFile: string;
}

export async function startQemuNbd(o: QemuNbdOptions): Promise<RunningServer> {
  const exportName = o.exportName ?? 'disk';
  const args = [
    '--fork',
    '--persistent',
    '--shared=16',
    `--pid-file=${o.pidFile}`,
    '-f',
    o.format,
    '-x',
    exportName,
  ];
  args.push(
    ...('socket' in o.listen ? ['-k', o.listen.socket] : ['-b', '127.0.0.1', '-p', String(o.listen.port)]),
  );
  if (o.readOnly) args.push('--read-only');
  if (o.bitmap) args.push('-B', o.bitmap);
  args.push(o.image);
  await run('qemu-nbd', args);
  const pid = await readPid(o.pidFile);
  return { pid, uri: uriFor(o.listen, exportName), stop: (signal) => stopPid(pid, signal) };
}

export interface NbdkitOptions {
  listen: Listen;
  pidFile: string;
  plugin: string;
  /** Plugin and filter parameters (key=value) and options such as --filter=..., --no-sr. */
  args?: string[];
  exportName?: string;
}

export async function startNbdkit(o: NbdkitOptions): Promise<RunningServer> {
  const exportName = o.exportName ?? '';
  const listenArgs =
    'socket' in o.listen ? ['-U', o.listen.socket] : ['-i', '127.0.0.1', '-p', String(o.listen.port)];
  const options = (o.args ?? []).filter((a) => a.startsWith('-'));
  const params = (o.args ?? []).filter((a) => !a.startsWith('-'));
  await run('nbdkit', ['--pidfile', o.pidFile, ...listenArgs, ...options, o.plugin, ...params]);
  const pid = await readPid(o.pidFile);
  return { pid, uri: uriFor(o.listen, exportName), stop: (signal) => stopPid(pid, signal) };
}

/** The whole export as raw bytes, read by nbdcopy (the reference client). */
export async function nbdcopyToBuffer(uri: string, dir: string, name: string): Promise<Buffer> {
  const out = join(dir, `${name}.nbdcopy.raw`);
  await run('nbdcopy', [uri, out]);
  const data = await readFile(out);
  await rm(out);
  return data;
}

/** The whole image as raw bytes, converted by qemu-img. */
export async function qemuImgToRaw(
  image: string,
  format: string,
  dir: string,
  name: string,
): Promise<Buffer> {
  const out = join(dir, `${name}.qemu-img.raw`);
  await run('qemu-img', ['convert', '-f', format, '-O', 'raw', image, out]);
  const data = await readFile(out);
  await rm(out);
  return data;
}

/** Awaits `p`, which must fail with an NbdError of this code; returns that error. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<NbdError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof NbdError, `expected NbdError ${code}, got ${err}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}
