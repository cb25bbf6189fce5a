import { createHash, type Hash } from 'node:crypto';
import type { ByteSink } from '../disk/io.js';
import { MANIFEST_BLOCK_SIZE } from './metadata/schemas.js';

/** What a manifest records about one image file. */
export interface ImageDigest {
  algorithm: 'sha256';
  blockSize: number;
  size: number;
  blocks: string[];
}

/**
 * Passes a stream through to another sink while hashing it in fixed blocks, so the manifest of an
 * image costs no second read. digest() is valid once close() has succeeded.
 */
export class HashingSink implements ByteSink {
  private hash: Hash = createHash('sha256');
  private inBlock = 0;
  private size = 0;
  private readonly blocks: string[] = [];
  private closed = false;

  constructor(
    private readonly inner: ByteSink,
    private readonly blockSize: number = MANIFEST_BLOCK_SIZE,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    // The inner write (file I/O on libuv's pool, or a network send) runs while we hash on this
    // thread: hashing only reads the buffer, so the caller's contract is unchanged.
    const written = this.inner.write(chunk);
    try {
      this.hashChunk(chunk);
    } finally {
      await written;
    }
    this.size += chunk.length;
  }

  private hashChunk(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, this.blockSize - this.inBlock);
      this.hash.update(chunk.subarray(off, off + n));
      this.inBlock += n;
      off += n;
      if (this.inBlock === this.blockSize) {
        this.blocks.push(this.hash.digest('hex'));
        this.hash = createHash('sha256');
        this.inBlock = 0;
      }
    }
  }

  async close(): Promise<void> {
    await this.inner.close();
    if (this.inBlock > 0) this.blocks.push(this.hash.digest('hex'));
    this.inBlock = 0;
    this.closed = true;
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  get bytesWritten(): number {
    return this.size;
  }

  digest(): ImageDigest {
    if (!this.closed) throw new Error('HashingSink.digest() before close()');
    return { algorithm: 'sha256', blockSize: this.blockSize, size: this.size, blocks: [...this.blocks] };
  }
}

/** Reads kept in flight by digestFile: enough to hide S3 request latency, little memory. */
const DIGEST_READ_AHEAD = 3;

/** The same digest computed by reading a file (verify); later blocks are read while one is hashed. */
export async function digestFile(
  read: (offset: number, length: number) => Promise<Buffer>,
  size: number,
  blockSize: number,
  onBlock?: (index: number, digest: string) => void,
): Promise<string[]> {
  const blocks: string[] = [];
  const count = Math.ceil(size / blockSize);
  const inFlight: Promise<Buffer>[] = [];
  let issued = 0;
  const issue = () => {
    while (issued < count && inFlight.length < DIGEST_READ_AHEAD) {
      const p = read(issued * blockSize, Math.min(blockSize, size - issued * blockSize));
      p.catch(() => {}); // awaited in order below; a failure is reported there
      inFlight.push(p);
      issued++;
    }
  };
  for (let i = 0; i < count; i++) {
    issue();
    const buf = await inFlight.shift()!;
    issue();
    const d = createHash('sha256').update(buf).digest('hex');
    blocks.push(d);
    onBlock?.(i, d);
  }
  return blocks;
}
