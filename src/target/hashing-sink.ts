import { createHash, type Hash } from 'node:crypto';
import type { ByteSink } from '../disk/io.js';
import { BlockHashPool, BlockSlots } from './block-hash-pool.js';
import { MANIFEST_BLOCK_SIZE } from './metadata/schemas.js';

/** What a manifest records about one image file. */
export interface ImageDigest {
  algorithm: 'sha256';
  blockSize: number;
  size: number;
  blocks: string[];
}

/** Below this block size hashing stays on this thread: handing a block over would cost more. */
const WORKER_MIN_BLOCK = 256 << 10;
/** Blocks being filled or hashed at once per stream (shared memory held: this x the block size). */
const BLOCK_SLOTS = 6;

export interface HashingOptions {
  /** Hash blocks on worker threads (default: when blocks are WORKER_MIN_BLOCK or larger). */
  workers?: boolean;
}

function useWorkers(blockSize: number, opts: HashingOptions): boolean {
  return opts.workers ?? blockSize >= WORKER_MIN_BLOCK;
}

/**
 * Passes a stream through to another sink while hashing it in fixed blocks, so the manifest of an
 * image costs no second read. Big blocks are copied into shared memory and hashed on worker threads
 * (block-hash-pool.ts) while this thread goes on moving data. digest() is valid once close() has
 * succeeded.
 */
export class HashingSink implements ByteSink {
  private hash: Hash = createHash('sha256');
  private inBlock = 0;
  private size = 0;
  private readonly blocks: Promise<string>[] = [];
  private digests: string[] | undefined;
  private readonly slots: BlockSlots | undefined;
  private current: { slot: number; buffer: Buffer } | undefined;
  /** Chunks being hashed in their own memory (passInPlace), oldest first. */
  private readonly inPlace: Promise<void>[] = [];
  /** Present when the inner sink lends buffers back (see ByteSink.writeBorrowed). */
  readonly writeBorrowed?: (chunk: Buffer, release: () => void) => Promise<void>;

  constructor(
    private readonly inner: ByteSink,
    private readonly blockSize: number = MANIFEST_BLOCK_SIZE,
    opts: HashingOptions = {},
  ) {
    if (useWorkers(blockSize, opts)) this.slots = new BlockSlots(blockSize, BLOCK_SLOTS);
    if (inner.writeBorrowed) {
      const lend = inner.writeBorrowed.bind(inner);
      this.writeBorrowed = (chunk, release) => {
        // The buffer goes back only when the inner write is over AND the hash has read it.
        let users = 2;
        const done = () => {
          if (--users === 0) release();
        };
        if (this.canHashInPlace(chunk)) {
          users++;
          return this.passInPlace(chunk, lend(chunk, done), done).finally(done);
        }
        return this.pass(chunk, lend(chunk, done)).finally(done);
      };
    }
  }

  /** A lent chunk in shared memory that starts a block is hashed by the workers where it is. */
  private canHashInPlace(chunk: Buffer): boolean {
    return (
      this.slots !== undefined &&
      this.inBlock === 0 &&
      chunk.length >= this.blockSize &&
      chunk.buffer instanceof SharedArrayBuffer
    );
  }

  /** Like pass, but whole blocks are hashed in the chunk's own memory; `hashed` runs once they are. */
  private async passInPlace(chunk: Buffer, written: Promise<void>, hashed: () => void): Promise<void> {
    written.catch(() => {}); // awaited below
    const whole = chunk.length - (chunk.length % this.blockSize);
    const digests: Promise<string>[] = [];
    try {
      const memory = chunk.buffer as SharedArrayBuffer;
      for (let off = 0; off < whole; off += this.blockSize) {
        const digest = BlockHashPool.get().hash(memory, chunk.byteOffset + off, this.blockSize);
        digest.catch(() => {}); // collected in close()
        this.blocks.push(digest);
        digests.push(digest);
      }
      const settled = Promise.allSettled(digests).then(hashed);
      // Bounds the blocks being hashed (each holds a lent buffer): the reader waits meanwhile.
      this.inPlace.push(settled);
      while (this.inPlace.length > BLOCK_SLOTS) await this.inPlace.shift();
      if (whole < chunk.length) await this.hashInWorkers(chunk.subarray(whole), this.slots!);
    } finally {
      if (digests.length === 0) hashed();
      await written;
    }
    this.size += chunk.length;
  }

  write(chunk: Buffer): Promise<void> {
    return this.pass(chunk, this.inner.write(chunk));
  }

  /** Hashes `chunk` while its inner write (file I/O on libuv's pool, or a network send) runs. */
  private async pass(chunk: Buffer, written: Promise<void>): Promise<void> {
    written.catch(() => {}); // awaited below; hashing may wait for a free slot meanwhile
    try {
      if (this.slots) await this.hashInWorkers(chunk, this.slots);
      else this.hashHere(chunk);
    } finally {
      await written;
    }
    this.size += chunk.length;
  }

  private hashHere(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, this.blockSize - this.inBlock);
      this.hash.update(chunk.subarray(off, off + n));
      this.inBlock += n;
      off += n;
      if (this.inBlock === this.blockSize) {
        this.blocks.push(Promise.resolve(this.hash.digest('hex')));
        this.hash = createHash('sha256');
        this.inBlock = 0;
      }
    }
  }

  private async hashInWorkers(chunk: Buffer, slots: BlockSlots): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      this.current ??= await slots.take();
      const n = Math.min(chunk.length - off, this.blockSize - this.inBlock);
      chunk.copy(this.current.buffer, this.inBlock, off, off + n);
      this.inBlock += n;
      off += n;
      if (this.inBlock === this.blockSize) this.submitBlock(slots);
    }
  }

  private submitBlock(slots: BlockSlots): void {
    if (!this.current) return;
    const digest = slots.submit(this.current.slot, this.inBlock);
    digest.catch(() => {}); // collected in close()
    this.blocks.push(digest);
    this.current = undefined;
    this.inBlock = 0;
  }

  async close(): Promise<void> {
    if (this.inBlock > 0) {
      if (this.slots) this.submitBlock(this.slots);
      else this.blocks.push(Promise.resolve(this.hash.digest('hex')));
    }
    this.inBlock = 0;
    // The last hashes finish while the inner sink makes the bytes durable.
    const [closed, digests] = await Promise.allSettled([this.inner.close(), Promise.all(this.blocks)]);
    if (closed.status === 'rejected') throw closed.reason;
    if (digests.status === 'rejected') throw digests.reason;
    this.digests = digests.value;
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  get bytesWritten(): number {
    return this.size;
  }

  digest(): ImageDigest {
    if (!this.digests) throw new Error('HashingSink.digest() before close()');
    return { algorithm: 'sha256', blockSize: this.blockSize, size: this.size, blocks: [...this.digests] };
  }
}

/** Reads kept in flight by digestFile: enough to hide S3 request latency, little memory. */
const DIGEST_READ_AHEAD = 3;

export interface DigestFileOptions extends HashingOptions {
  /**
   * Reads exactly `target.length` bytes at `offset` into `target` (zeros past the end): lets a
   * local file be read straight into the hashing memory instead of a fresh buffer per block.
   */
  readInto?: (target: Buffer, offset: number) => Promise<void>;
}

/** The same digest computed by reading a file (verify); later blocks are read while one is hashed. */
export async function digestFile(
  read: (offset: number, length: number) => Promise<Buffer>,
  size: number,
  blockSize: number,
  onBlock?: (index: number, digest: string) => void,
  opts: DigestFileOptions = {},
): Promise<string[]> {
  const count = Math.ceil(size / blockSize);
  const lengthOf = (i: number) => Math.min(blockSize, size - i * blockSize);
  const slots = useWorkers(blockSize, opts)
    ? new BlockSlots(blockSize, DIGEST_READ_AHEAD + BLOCK_SLOTS)
    : undefined;
  // Block i's digest: read (ahead, bounded), then hashed here or in a worker.
  const digestOf = async (i: number): Promise<string> => {
    if (!slots)
      return createHash('sha256')
        .update(await read(i * blockSize, lengthOf(i)))
        .digest('hex');
    const { slot, buffer } = await slots.take();
    const target = buffer.subarray(0, lengthOf(i));
    try {
      if (opts.readInto) await opts.readInto(target, i * blockSize);
      else (await read(i * blockSize, target.length)).copy(target);
    } catch (err) {
      slots.submit(slot, 0).catch(() => {}); // gives the slot back
      throw err;
    }
    return slots.submit(slot, target.length);
  };
  const blocks: string[] = [];
  const inFlight: Promise<string>[] = [];
  const depth = slots ? DIGEST_READ_AHEAD + BLOCK_SLOTS - 1 : DIGEST_READ_AHEAD;
  let issued = 0;
  const issue = () => {
    while (issued < count && inFlight.length < depth) {
      const p = digestOf(issued++);
      p.catch(() => {}); // awaited in order below; a failure is reported there
      inFlight.push(p);
    }
  };
  try {
    for (let i = 0; i < count; i++) {
      issue();
      const d = await inFlight.shift()!;
      blocks.push(d);
      onBlock?.(i, d);
    }
  } finally {
    await Promise.allSettled(inFlight);
    await slots?.settle();
  }
  return blocks;
}
