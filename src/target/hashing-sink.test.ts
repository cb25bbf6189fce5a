import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ByteSink } from '../disk/io.js';
import { digestFile, HashingSink } from './hashing-sink.js';

class MemorySink implements ByteSink {
  chunks: Buffer[] = [];
  async write(c: Buffer) {
    this.chunks.push(Buffer.from(c));
  }
  async close() {}
  async abort() {
    this.chunks = [];
  }
}

/** SHA-256 of every 4096-byte block of `data` (the last one short), as the manifest lists them. */
function blockDigests(data: Buffer): string[] {
  const out: string[] = [];
  for (let o = 0; o < data.length; o += 4096) {
    out.push(
      createHash('sha256')
        .update(data.subarray(o, o + 4096))
        .digest('hex'),
    );
  }
  return out;
}

describe('HashingSink', () => {
  it('hashes fixed blocks whatever the chunking, and passes every byte through', async () => {
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const expected = blockDigests(data);
    for (const [chunk, workers] of [
      [1, false],
      [1000, false],
      [4096, false],
      [5000, false],
      [10_000, false],
      [1000, true],
      [5000, true],
      [10_000, true],
    ] as const) {
      const inner = new MemorySink();
      const sink = new HashingSink(inner, 4096, { workers });
      for (let o = 0; o < data.length; o += chunk) await sink.write(data.subarray(o, o + chunk));
      await sink.close();
      assert.deepEqual(sink.digest(), {
        algorithm: 'sha256',
        blockSize: 4096,
        size: 10_000,
        blocks: expected,
      });
      assert.deepEqual(Buffer.concat(inner.chunks), data);
    }
  });

  it('hashes lent chunks in shared memory in place, and gives each buffer back once hashed and written', async () => {
    const data = Buffer.alloc(30_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 11) % 247;
    const expected = blockDigests(data);
    // A lending sink: gives the buffer back after a tick, like a write in flight.
    const chunks: Buffer[] = [];
    const inner: ByteSink = {
      write: async (c) => {
        chunks.push(Buffer.from(c));
      },
      writeBorrowed: async (c, release) => {
        chunks.push(Buffer.from(c));
        setImmediate(release);
      },
      close: async () => {},
      abort: async () => {},
    };
    const sink = new HashingSink(inner, 4096, { workers: true });
    let released = 0;
    // A plain first write leaves the stream mid-block; then shared chunks of 2.5 blocks each.
    await sink.write(data.subarray(0, 2048));
    for (let o = 2048; o < data.length; o += 10_240) {
      const part = data.subarray(o, o + 10_240);
      const shared = Buffer.from(new SharedArrayBuffer(part.length));
      part.copy(shared);
      await sink.writeBorrowed!(shared, () => {
        released++;
        shared.fill(0); // reused at once: must not change what was hashed
      });
    }
    await sink.close();
    assert.deepEqual(sink.digest().blocks, expected);
    assert.deepEqual(Buffer.concat(chunks), data);
    // The fake inner sink gives buffers back on the next turn of the event loop (setImmediate),
    // which close() need not wait for when the workers answered first: let that turn happen.
    await new Promise((r) => setImmediate(r));
    assert.equal(released, Math.ceil((data.length - 2048) / 10_240));
  });

  it('digestFile gives the same blocks from reads or reads into its memory, here or in workers', async () => {
    const data = Buffer.alloc(50_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) % 253;
    const expected = blockDigests(data);
    const read = async (o: number, l: number) => Buffer.from(data.subarray(o, o + l));
    const readInto = async (t: Buffer, o: number) => {
      data.copy(t, 0, o, o + t.length);
    };
    for (const opts of [{ workers: false }, { workers: true }, { workers: true, readInto }]) {
      const seen: number[] = [];
      const blocks = await digestFile(read, data.length, 4096, (i) => seen.push(i), opts);
      assert.deepEqual(blocks, expected);
      assert.deepEqual(
        seen,
        expected.map((_, i) => i),
      );
    }
    await assert.rejects(
      digestFile(async () => Promise.reject(new Error('read broke')), data.length, 4096, undefined, {
        workers: true,
      }),
      /read broke/,
    );
  });

  it('an empty image has no blocks', async () => {
    const sink = new HashingSink(new MemorySink(), 4096);
    await sink.close();
    assert.deepEqual(sink.digest().blocks, []);
  });
});
