import { allocAlignedBuffers } from './aligned-memory.js';

/**
 * Reusable buffers of one size. Reading multi-gigabyte disks into a fresh buffer per chunk costs
 * more in page faults and garbage collection than the copy itself (measured: 3x the system time),
 * so copies that own their buffers recycle them here. The `keep` buffers are cut from one
 * page-aligned region (aligned-memory.ts), so file sinks can write them with O_DIRECT.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    /** Buffers kept when released (more are allocated on demand but dropped on release). */
    private readonly keep: number,
    /**
     * Allocate in shared memory: a sink that hashes on worker threads (target/hashing-sink.ts) then
     * hands the buffer itself to the workers instead of copying it into its own shared memory.
     */
    private readonly shared = false,
  ) {}

  private slabAllocated = false;

  acquire(): Buffer {
    if (this.free.length === 0 && !this.slabAllocated && this.keep > 0) {
      this.slabAllocated = true;
      this.free.push(...allocAlignedBuffers(this.size, this.keep, this.shared));
    }
    const buf = this.free.pop();
    if (buf) return buf;
    return this.shared ? Buffer.from(new SharedArrayBuffer(this.size)) : Buffer.allocUnsafe(this.size);
  }

  release(buf: Buffer): void {
    if (buf.length === this.size && this.free.length < this.keep) this.free.push(buf);
  }
}
