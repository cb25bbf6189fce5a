import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DiskError } from './errors.js';
import type { ByteSink } from './io.js';

/** Opens the directory and fsyncs it, so a rename or unlink inside it survives a crash. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A temp name beside `path`, hidden, unique, recognisable as ours. */
export function tempPathBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.lifeboat-tmp-${randomBytes(4).toString('hex')}`);
}

function ioError(path: string, what: string, err: unknown): DiskError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT')
    return new DiskError('DISK_NOT_FOUND', `${path}: ${what}: no such file or directory`);
  return new DiskError('DISK_IO', `${path}: ${what} failed (${code ?? String(err)})`, { cause: err });
}

/**
 * A ByteSink on a local file. Bytes go to a temp file beside the destination; `close` fsyncs it and
 * renames it into place (then fsyncs the directory), so the destination either does not exist or
 * holds the complete file. `abort` deletes the temp file. One write is kept in flight, so the
 * caller prepares the next chunk while the previous one reaches the kernel.
 */
export class FileSink implements ByteSink {
  private offset = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private failed: unknown;
  private finished = false;

  private constructor(
    readonly path: string,
    readonly tempPath: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<FileSink> {
    const tempPath = tempPathBeside(path);
    let fh: FileHandle;
    try {
      fh = await open(tempPath, 'wx', 0o644);
    } catch (err) {
      throw ioError(path, 'create', err);
    }
    return new FileSink(path, tempPath, fh);
  }

  get bytesWritten(): number {
    return this.offset;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.finished) throw new DiskError('DISK_IO', `${this.path}: write after close`);
    await this.inFlight;
    if (this.failed) throw this.failed;
    const at = this.offset;
    this.offset += chunk.length;
    this.inFlight = this.writeAll(chunk, at).catch((err) => {
      this.failed = ioError(this.path, 'write', err);
    });
  }

  private async writeAll(chunk: Buffer, at: number): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.fh.write(chunk, done, chunk.length - done, at + done);
      done += bytesWritten;
    }
  }

  async close(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    try {
      await this.inFlight;
      if (this.failed) throw this.failed;
      await this.fh.sync();
      await this.fh.close();
      await rename(this.tempPath, this.path);
      await fsyncDirectory(dirname(this.path));
    } catch (err) {
      await this.fh.close().catch(() => {});
      await rm(this.tempPath, { force: true });
      throw err instanceof DiskError ? err : ioError(this.path, 'close', err);
    }
  }

  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.inFlight;
    await this.fh.close().catch(() => {});
    await rm(this.tempPath, { force: true });
  }
}
