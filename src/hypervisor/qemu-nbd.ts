import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HypervisorError } from './errors.js';

export interface QemuNbdExportOptions {
  /** Image to export (the top of a chain: qemu-nbd opens the backing files itself). */
  image: string;
  /** `qcow2` or `raw`; always given, so a raw image is never probed (and misread) as another format. */
  format: string;
  /** Persistent qcow2 bitmaps to expose as `qemu:dirty-bitmap:NAME` contexts. */
  bitmaps?: readonly string[];
  /** NBD export name (default `disk`). */
  exportName?: string;
  /** Where the private socket directory is made (default: the OS temp dir). */
  socketParentDir?: string;
  /** Simultaneous clients (default 8: parallel readers each open their own connection). */
  maxClients?: number;
  /** How long to wait for the socket (default 10 s). */
  startTimeoutMs?: number;
  /**
   * Export read-write (default: read-only, so a backup can never write). For in-place restores:
   * QEMU's own driver then does the allocation, zero clusters and refcounts, `--discard=unmap`
   * lets WRITE_ZEROES free clusters instead of writing zero-filled ones, and `--cache=writeback`
   * leaves durability to the client's FLUSH.
   */
  writable?: boolean;
}

/**
 * A `qemu-nbd` export of a disk image on a UNIX socket: how shut-off domains are read (read-only,
 * the default), with the same NBD client (and block-status / dirty-bitmap contexts) as running
 * ones, and how an in-place restore writes into one (`writable`).
 *
 * qemu-nbd runs in the foreground as our child (not `--fork`), so its PID is known from the start
 * and `stop` kills exactly that process; `--persistent` keeps it alive across client disconnects
 * (without it, the first client to disconnect would end the export).
 */
export class QemuNbdExport {
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly stderr: string[] = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
    readonly exportName: string,
    private readonly dir: string,
    /** How long `stop` waits after SIGTERM before SIGKILL. */
    private readonly stopGraceMs: number,
  ) {
    child.stderr?.on('data', (b: Buffer) => {
      if (this.stderr.length < 50) this.stderr.push(b.toString('utf8'));
    });
    child.on('exit', (code, signal) => {
      this.exitInfo = { code, signal };
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** `nbd+unix:///EXPORT?socket=PATH`, as qemu-img, nbdinfo and nbdcopy take it. */
  get uri(): string {
    return `nbd+unix:///${this.exportName}?socket=${this.socketPath}`;
  }

  static async start(options: QemuNbdExportOptions): Promise<QemuNbdExport> {
    const dir = await mkdtemp(join(options.socketParentDir ?? tmpdir(), 'lifeboat-qemu-nbd-'));
    const socketPath = join(dir, 'nbd.sock');
    const exportName = options.exportName ?? 'disk';
    const args = [
      ...(options.writable ? ['--discard=unmap', '--cache=writeback'] : ['--read-only']),
      '--persistent',
      `--shared=${options.maxClients ?? 8}`,
      `--format=${options.format}`,
      `--socket=${socketPath}`,
      `--export-name=${exportName}`,
      ...(options.bitmaps ?? []).map((b) => `--bitmap=${b}`),
      options.image,
    ];
    const child = spawn('qemu-nbd', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    // A writable export may have cached writes to flush on SIGTERM: give it longer before SIGKILL.
    const exp = new QemuNbdExport(child, socketPath, exportName, dir, options.writable ? 10_000 : 5000);
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
    try {
      for (;;) {
        const err = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
        if (err) {
          const code =
            (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'COMMAND_NOT_FOUND' : 'QEMU_NBD_FAILED';
          throw new HypervisorError(code, `qemu-nbd: ${err.message}`, { cause: err });
        }
        if (!exp.running) {
          throw new HypervisorError(
            'QEMU_NBD_FAILED',
            `qemu-nbd ${options.image}: ${exp.stderr.join('').trim()}`,
            {
              details: { command: ['qemu-nbd', ...args], exit: exp.exitInfo },
            },
          );
        }
        if (await isSocket(socketPath)) return exp;
        if (Date.now() > deadline) {
          throw new HypervisorError('QEMU_NBD_FAILED', `qemu-nbd did not create ${socketPath} in time`, {
            details: { command: ['qemu-nbd', ...args] },
          });
        }
      }
    } catch (err) {
      await exp.stop();
      throw err;
    }
  }

  /**
   * Stops this qemu-nbd (SIGTERM, which makes it flush and close the image cleanly; SIGKILL after
   * 5 s, 10 s if writable) and removes its socket directory.
   */
  async stop(): Promise<void> {
    if (this.running && this.child.pid !== undefined) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(this.stopGraceMs).then(() => false)]);
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
