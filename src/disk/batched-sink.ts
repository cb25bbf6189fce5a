import type { ByteSink } from './io.js';

/**
 * Gathers small buffers into large sequential writes (a metadata table or a 64 KiB cluster alone
 * would make one syscall or one multipart part each). Big buffers pass straight through after
 * whatever is pending.
 */
export class BatchedSink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;

  constructor(
    private readonly sink: ByteSink,
    private readonly batchBytes: number,
    private readonly onWritten?: (bytesWritten: number) => void,
  ) {}

  get bytesWritten(): number {
    return this.written + this.pendingBytes;
  }

  async push(buf: Buffer): Promise<void> {
    if (buf.length === 0) return;
    if (buf.length >= this.batchBytes) {
      await this.flush();
      await this.emit(buf);
      return;
    }
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= this.batchBytes) await this.flush();
  }

  /** Whether {@link lend} can hand buffers to the sink and get them back when it is done with them. */
  get lends(): boolean {
    return typeof this.sink.writeBorrowed === 'function';
  }

  /**
   * Writes a buffer the caller will recycle: `release` runs once the sink is done with it. Only when
   * {@link lends}; the buffer is never batched (pending bytes go out first).
   */
  async lend(buf: Buffer, release: () => void): Promise<void> {
    if (!this.sink.writeBorrowed) {
      release();
      throw new Error('BatchedSink.lend: the sink cannot lend buffers');
    }
    try {
      await this.flush();
    } catch (err) {
      release();
      throw err;
    }
    await this.sink.writeBorrowed(buf, release);
    this.written += buf.length;
    this.onWritten?.(this.written);
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.emit(buf);
  }

  private async emit(buf: Buffer): Promise<void> {
    await this.sink.write(buf);
    this.written += buf.length;
    this.onWritten?.(this.written);
  }
}
