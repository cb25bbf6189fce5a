import type { RandomAccessFile } from './io.js';

/** Bytes in memory as a RandomAccessFile: small metadata, unit tests, fuzzing without disk I/O. */
export class MemoryFile implements RandomAccessFile {
  constructor(
    readonly name: string,
    readonly bytes: Buffer,
  ) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const start = Math.min(Math.max(0, offset), this.bytes.length);
    // A copy, like a real read: callers may keep or modify what they get.
    return Buffer.from(this.bytes.subarray(start, Math.min(this.bytes.length, start + length)));
  }

  async close(): Promise<void> {}
}
