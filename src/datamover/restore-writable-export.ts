import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HypervisorError } from '../hypervisor/errors.js';

/**
 * A READ-WRITE `qemu-nbd` export of one disk image on a private UNIX socket: how an in-place
 * restore writes into a shut-off domain's qcow2 disk, so QEMU's own qcow2 driver does the
 * allocation, zero clusters and refcounts (and the image keeps its cluster size, its own backing
 * file and its compat level). The hypervisor layer's QemuNbdExport is read-only by design (backups
 * must never write); this is its writable sibling, used only here.
 *
 * `--discard=unmap` lets WRITE_ZEROES free clusters instead of writing zero-filled ones. qemu-nbd
 * runs in the foreground as our child so `stop` ends exactly that PID; SIGTERM makes it flush and
 * close the image cleanly.
 */
export class WritableQemuNbdExport {
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly stderr: string[] = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
    readonly exportName: string,
    private readonly dir: string,
  ) {
    child.stderr?.on('data', (b: Buffer) => {
      if (this.stderr.length < 50) this.stderr.push(b.toString('utf8'));
    });
    child.on('exit', (code, signal) => {
      this.exitInfo = { code, signal };
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  get uri(): string {
    return `nbd+unix:///${this.exportName}?socket=${this.socketPath}`;
  }

  static async start(image: string, format: 'qcow2' | 'raw'): Promise<WritableQemuNbdExport> {
    const dir = await mkdtemp(join(tmpdir(), 'lifeboat-restore-nbd-'));
    const socketPath = join(dir, 'nbd.sock');
    const args = [
      '--persistent',
      '--shared=4',
      `--format=${format}`,
      '--discard=unmap',
      '--cache=writeback',
      `--socket=${socketPath}`,
      '--export-name=disk',
      image,
    ];
    const child = spawn('qemu-nbd', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const exp = new WritableQemuNbdExport(child, socketPath, 'disk', dir);
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + 10_000;
    try {
      for (;;) {
        const err = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
        if (err) {
          const code =
            (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'COMMAND_NOT_FOUND' : 'QEMU_NBD_FAILED';
          throw new HypervisorError(code, `qemu-nbd: ${err.message}`, { cause: err });
        }
        if (!exp.running) {
          throw new HypervisorError('QEMU_NBD_FAILED', `qemu-nbd ${image}: ${exp.stderr.join('').trim()}`, {
            details: { command: ['qemu-nbd', ...args], exit: exp.exitInfo },
          });
        }
        if (await isSocket(socketPath)) return exp;
        if (Date.now() > deadline) {
          throw new HypervisorError('QEMU_NBD_FAILED', `qemu-nbd did not create ${socketPath} in time`);
        }
      }
    } catch (err) {
      await exp.stop();
      throw err;
    }
  }

  /** Stops this qemu-nbd (SIGTERM, SIGKILL after 10 s) and removes its socket directory. */
  async stop(): Promise<void> {
    if (this.running && this.child.pid !== undefined) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        this.child.kill('SIGKILL');
        await exited;
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function isSocket(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isSocket();
  } catch {
    return false;
  }
}
