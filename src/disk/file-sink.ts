import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { openDirectWriter } from './aligned-memory.js';
import { DiskError } from './errors.js';
import type { ByteSink } from './io.js';
import { PositionalWriter, type PositionalWriterOptions } from './positional-writer.js';

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

export function ioError(path: string, what: string, err: unknown): DiskError {
  if (err instanceof DiskError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT')
    return new DiskError('DISK_NOT_FOUND', `${path}: ${what}: no such file or directory`);
  return new DiskError('DISK_IO', `${path}: ${what} failed (${code ?? String(err)})`, { cause: err });
}

/**
 * A ByteSink on a local file. Bytes go to a temp file beside the destination; `close` fsyncs it and
 * renames it into place (then fsyncs the directory), so the destination either does not exist or
 * holds the complete file. `abort` deletes the temp file. Every chunk's position is known when it
 * arrives, so several positional writes run at once, with flush-behind (positional-writer.ts).
 * Chunks must not be modified after being passed to `write`.
 */
export class FileSink implements ByteSink {
  private offset = 0;
  private finished = false;
  private readonly writer: PositionalWriter;

  private constructor(
    readonly path: string,
    readonly tempPath: string,
    private readonly fh: FileHandle,
    opts: PositionalWriterOptions,
  ) {
    this.writer = new PositionalWriter(fh, opts);
  }

  static async create(path: string, opts: PositionalWriterOptions = {}): Promise<FileSink> {
    const tempPath = tempPathBeside(path);
    let fh: FileHandle;
    try {
      fh = await open(tempPath, 'wx', 0o644);
    } catch (err) {
      throw ioError(path, 'create', err);
    }
    return new FileSink(path, tempPath, fh, { direct: await openDirectWriter(tempPath), ...opts });
  }

  get bytesWritten(): number {
    return this.offset;
  }

  write(chunk: Buffer): Promise<void> {
    return this.writeBorrowed(chunk);
  }

  /** `release` runs once the positional write of `chunk` has finished (or failed). */
  async writeBorrowed(chunk: Buffer, release?: () => void): Promise<void> {
    if (this.finished) {
      release?.();
      throw new DiskError('DISK_IO', `${this.path}: write after close`);
    }
    const at = this.offset;
    this.offset += chunk.length;
    try {
      await this.writer.write(chunk, at, release);
    } catch (err) {
      throw ioError(this.path, 'write', err);
    }
  }

  async close(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    try {
      await this.writer.finish();
      await this.fh.close();
      await rename(this.tempPath, this.path);
      await fsyncDirectory(dirname(this.path));
    } catch (err) {
      await this.writer.settle();
      await this.fh.close().catch(() => {});
      await rm(this.tempPath, { force: true });
      throw err instanceof DiskError ? err : ioError(this.path, 'close', err);
    }
  }

  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.writer.settle();
    await this.fh.close().catch(() => {});
    await rm(this.tempPath, { force: true });
  }
}
