import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ByteSink } from '../disk/io.js';
import { HashingSink } from './hashing-sink.js';

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

describe('HashingSink', () => {
  it('hashes fixed blocks whatever the chunking, and passes every byte through', async () => {
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const expected = [0, 4096, 8192].map((o) =>
      createHash('sha256')
        .update(data.subarray(o, o + 4096))
        .digest('hex'),
    );
    for (const chunk of [1, 1000, 4096, 5000, 10_000]) {
      const inner = new MemorySink();
      const sink = new HashingSink(inner, 4096);
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

  it('an empty image has no blocks', async () => {
    const sink = new HashingSink(new MemorySink(), 4096);
    await sink.close();
    assert.deepEqual(sink.digest().blocks, []);
  });
});
