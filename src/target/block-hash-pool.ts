import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * SHA-256 of image blocks on worker threads. Hashing on the main thread costs as much CPU as moving
 * the bytes (about 1 GB/s a core), and the main thread is also what drives the NBD reads, the qcow2
 * writer and the target writes; manifests are per block, so blocks hash in parallel, off that
 * thread. Blocks are handed over in shared memory (BlockSlots): one copy in, no copy back.
 */

// Plain CommonJS, evaluated by the worker: no loader, so it runs the same under tsx and compiled.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', (m) => {
  try {
    const bytes = new Uint8Array(m.memory, m.offset, m.length);
    parentPort.postMessage({ id: m.id, digest: createHash('sha256').update(bytes).digest('hex') });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.message || err) });
  }
});
`;

interface Job {
  resolve: (digest: string) => void;
  reject: (err: Error) => void;
}

class HashWorker {
  private readonly worker: Worker;
  private readonly jobs = new Map<number, Job>();
  private nextId = 0;
  dead = false;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    // An idle pool must not keep the process alive; a busy one must (its promises are pending).
    this.worker.unref();
    this.worker.on('message', (m: { id: number; digest?: string; error?: string }) => {
      const job = this.jobs.get(m.id);
      if (!job) return;
      this.jobs.delete(m.id);
      if (this.jobs.size === 0) this.worker.unref();
      if (m.digest !== undefined) job.resolve(m.digest);
      else job.reject(new Error(`hash worker: ${m.error}`));
    });
    const fail = (err: Error) => {
      this.dead = true;
      for (const job of this.jobs.values()) job.reject(err);
      this.jobs.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`hash worker exited (code ${code})`)));
  }

  get load(): number {
    return this.jobs.size;
  }

  hash(memory: SharedArrayBuffer, offset: number, length: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.jobs.set(id, { resolve, reject });
      if (this.jobs.size === 1) this.worker.ref();
      this.worker.postMessage({ id, memory, offset, length });
    });
  }
}

/** The process's hash workers: as many as there are cores (up to 4), started on first use. */
export class BlockHashPool {
  private static shared: BlockHashPool | undefined;
  private readonly workers: HashWorker[] = [];

  private constructor(private readonly size: number) {}

  static get(): BlockHashPool {
    BlockHashPool.shared ??= new BlockHashPool(Math.max(1, Math.min(4, availableParallelism())));
    return BlockHashPool.shared;
  }

  /** SHA-256 (hex) of memory[offset, offset+length); the memory must not change until it resolves. */
  hash(memory: SharedArrayBuffer, offset: number, length: number): Promise<string> {
    for (let i = this.workers.length - 1; i >= 0; i--) if (this.workers[i]!.dead) this.workers.splice(i, 1);
    let worker = this.workers.find((w) => w.load === 0);
    if (!worker && this.workers.length < this.size) {
      worker = new HashWorker();
      this.workers.push(worker);
    }
    worker ??= this.workers.reduce((a, b) => (b.load < a.load ? b : a));
    return worker.hash(memory, offset, length);
  }
}

/**
 * A few block-sized buffers in shared memory, hashed in order by the pool: fill one (`take`), hand
 * it over (`submit`), and it comes back once hashed. Digests come out in submission order.
 */
export class BlockSlots {
  private readonly memory: SharedArrayBuffer;
  private readonly free: number[] = [];
  private readonly busy: { slot: number; digest: Promise<string> }[] = [];

  constructor(
    readonly blockSize: number,
    count: number,
    private readonly pool: BlockHashPool = BlockHashPool.get(),
  ) {
    this.memory = new SharedArrayBuffer(blockSize * count);
    for (let i = count - 1; i >= 0; i--) this.free.push(i);
  }

  /** A free slot as a Buffer (waits for the oldest hash when all are busy). */
  async take(): Promise<{ slot: number; buffer: Buffer }> {
    while (this.free.length === 0) {
      const oldest = this.busy[0];
      if (!oldest) throw new Error('BlockSlots: every slot is taken and none submitted');
      await oldest.digest.catch(() => {});
    }
    const slot = this.free.pop()!;
    return { slot, buffer: Buffer.from(this.memory, slot * this.blockSize, this.blockSize) };
  }

  /** Hashes the first `length` bytes of a slot; the slot is free again once the digest is known. */
  submit(slot: number, length: number): Promise<string> {
    const digest = this.pool.hash(this.memory, slot * this.blockSize, length);
    const entry = { slot, digest };
    this.busy.push(entry);
    const done = () => {
      this.busy.splice(this.busy.indexOf(entry), 1);
      this.free.push(slot);
    };
    digest.then(done, done);
    return digest;
  }

  /** Waits for every hash in flight (before the memory is dropped). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.busy.map((b) => b.digest));
  }
}
