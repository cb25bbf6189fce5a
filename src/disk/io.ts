import { type FileHandle, open } from 'node:fs/promises';
import { DiskError } from './errors.js';

/**
 * Random-access bytes: a local file, a range-readable S3 object, anything. The qcow2 reader only
 * uses this, so the same code opens images on a filesystem target and on S3.
 */
export interface RandomAccessFile {
  /** Size in bytes of the file (not the virtual disk). */
  readonly size: number;
  /** A human name for messages (path or URL). */
  readonly name: string;
  /** Reads up to `length` bytes at `offset`; returns fewer only at end of file. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Optional: fills `target` from `offset` into memory the caller owns; zeros past the end. */
  readInto?(target: Buffer, offset: number): Promise<void>;
  close(): Promise<void>;
}

/** A sequential byte stream: what the one-pass qcow2 writer emits into (file, S3 multipart upload). */
export interface ByteSink {
  /**
   * Appends `chunk`. The sink may still read it after the promise resolves (writes in flight), so
   * the caller must not modify it; to recycle buffers, use `writeBorrowed` where a sink has it.
   */
  write(chunk: Buffer): Promise<void>;
  /**
   * Optional: like `write`, and calls `release` exactly once when the sink no longer holds `chunk`
   * (written, copied or failed), so the caller can recycle the buffer. A sink without it may keep a
   * chunk after `write` resolves, so its callers give it a fresh buffer each time.
   */
  writeBorrowed?(chunk: Buffer, release: () => void): Promise<void>;
  /** Flushes and makes the bytes durable; the sink is unusable afterwards. */
  close(): Promise<void>;
  /** Throws away what was written (deletes a temp file, aborts a multipart upload). */
  abort(): Promise<void>;
}

export class LocalFile implements RandomAccessFile {
  private constructor(
    private readonly fh: FileHandle,
    readonly name: string,
    public size: number,
  ) {}

  static async open(path: string, mode: 'r' | 'r+' = 'r'): Promise<LocalFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new DiskError('DISK_NOT_FOUND', `${path}: no such file`, { cause: err });
      throw new DiskError('DISK_IO', `${path}: cannot open (${code ?? String(err)})`, { cause: err });
    }
    const st = await fh.stat();
    return new LocalFile(fh, path, st.size);
  }

  get handle(): FileHandle {
    return this.fh;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const want = Math.max(0, Math.min(length, this.size - offset));
    const buf = Buffer.allocUnsafe(want);
    let done = 0;
    while (done < want) {
      const { bytesRead } = await this.fh.read(buf, done, want - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === want ? buf : buf.subarray(0, done);
  }

  /** Fills `target` from `offset` without allocating; zeros past the end of the file. */
  async readInto(target: Buffer, offset: number): Promise<void> {
    let done = 0;
    while (done < target.length) {
      const { bytesRead } = await this.fh.read(target, done, target.length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    target.fill(0, done);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
