import type { FileHandle } from 'node:fs/promises';

export interface PositionalWriterOptions {
  /** Writes running at once (default 4): the kernel copies into the page cache on several threads. */
  maxInFlight?: number;
  /**
   * Start a background fdatasync after this many bytes (default 256 MiB; 0 = never), so the disk
   * writes while we keep copying instead of flushing everything at the end.
   */
  flushBehindBytes?: number;
}

/**
 * Positional writes to one file with a bounded number in flight and flush-behind. `write` returns as
 * soon as the write is started (it waits only for a free slot); errors surface on a later call or
 * in `finish`. Buffers must not be modified once passed.
 */
export class PositionalWriter {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly maxInFlight: number;
  private readonly flushBehindBytes: number;
  private sinceFlush = 0;
  private flushing?: Promise<void>;
  private failed: unknown;

  constructor(
    private readonly fh: FileHandle,
    opts: PositionalWriterOptions = {},
  ) {
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 4);
    this.flushBehindBytes = opts.flushBehindBytes ?? 256 << 20;
  }

  /** `onWritten` runs once the buffers are no longer needed (written or failed): recycle them there. */
  async write(buffers: Buffer | Buffer[], position: number, onWritten?: () => void): Promise<void> {
    while (this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight);
    if (this.failed) {
      onWritten?.();
      throw this.failed;
    }
    const list = Array.isArray(buffers) ? buffers : [buffers];
    const p: Promise<void> = this.writeAll(list, position)
      .catch((err) => {
        this.failed ??= err;
      })
      .finally(() => {
        this.inFlight.delete(p);
        onWritten?.();
      });
    this.inFlight.add(p);
  }

  private async writeAll(list: Buffer[], position: number): Promise<void> {
    let bytes = 0;
    for (const b of list) bytes += b.length;
    let { bytesWritten } = await this.fh.writev(list, position);
    // Short writes are rare (a signal, a full disk about to fail): finish piece by piece.
    if (bytesWritten < bytes) {
      const rest = Buffer.concat(list).subarray(bytesWritten);
      let done = 0;
      while (done < rest.length) {
        const r = await this.fh.write(rest, done, rest.length - done, position + bytesWritten + done);
        done += r.bytesWritten;
      }
      bytesWritten = bytes;
    }
    this.sinceFlush += bytes;
    if (this.flushBehindBytes > 0 && this.sinceFlush >= this.flushBehindBytes && !this.flushing) {
      this.sinceFlush = 0;
      this.flushing = this.fh
        .datasync()
        .catch((err) => {
          this.failed ??= err;
        })
        .finally(() => {
          this.flushing = undefined;
        });
    }
  }

  /** Waits for every write started so far; throws the first write error. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    if (this.failed) throw this.failed;
  }

  /** Drains, then makes everything durable (fsync). */
  async finish(): Promise<void> {
    await this.drain();
    await this.flushing;
    if (this.failed) throw this.failed;
    await this.fh.sync();
  }

  /** Waits for what is in flight and ignores its errors (before deleting the file). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inFlight, this.flushing]);
  }
}
