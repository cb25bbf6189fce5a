import assert from 'node:assert/strict';
import { type FileHandle, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { allocAlignedBuffers, isDirectIoAligned, openDirectWriter } from './aligned-memory.js';
import { PositionalWriter } from './positional-writer.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lifeboat-positional-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** Aligned and unaligned chunks back to back, as the qcow2 writer produces them. */
function mixedChunks(): Buffer[] {
  const aligned = allocAlignedBuffers(64 << 10, 3, true);
  aligned.forEach((b, i) => {
    b.fill(0x40 + i);
  });
  return [
    Buffer.alloc(4096, 1), // plain memory: never direct
    aligned[0]!,
    Buffer.alloc(1000, 2), // leaves the next position unaligned
    aligned[1]!,
    Buffer.alloc(3096, 3), // back on a 4 KiB boundary
    aligned[2]!,
  ];
}

async function writeAll(writer: PositionalWriter, chunks: Buffer[]): Promise<void> {
  let at = 0;
  for (const c of chunks) {
    await writer.write(c, at);
    at += c.length;
  }
  await writer.finish();
}

describe('aligned memory', () => {
  it('cuts page-aligned buffers of the asked size, shared when asked', () => {
    const [a, b] = allocAlignedBuffers(5000, 2, true);
    assert.equal(a!.length, 5000);
    assert.ok(a!.buffer instanceof SharedArrayBuffer);
    assert.equal(b!.byteOffset % 4096, 0);
    assert.ok(isDirectIoAligned(a!.subarray(0, 4096), 8192));
    assert.ok(!isDirectIoAligned(a!, 0), 'length 5000 is not a multiple of 4096');
    assert.ok(!isDirectIoAligned(a!.subarray(0, 4096), 512), 'position not aligned');
    assert.ok(!isDirectIoAligned(Buffer.alloc(4096), 0), 'malloc memory is never trusted');
    assert.ok(!(allocAlignedBuffers(4096, 1, false)[0]!.buffer instanceof SharedArrayBuffer));
  });
});

describe('PositionalWriter with an O_DIRECT handle', () => {
  it('writes aligned chunks directly and the rest buffered; the file holds every byte', async (t) => {
    const path = join(dir, 'mixed.bin');
    const fh = await open(path, 'wx');
    const direct = await openDirectWriter(path);
    if (!direct) t.diagnostic(`no O_DIRECT on ${tmpdir()}: buffered only`);
    const writer = new PositionalWriter(fh, { direct });
    const chunks = mixedChunks();
    await writeAll(writer, chunks);
    await fh.close();
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    // Chunks 1 and 5 sit at 4 KiB-aligned positions; chunk 3 (at 70632) does not.
    if (direct) assert.equal(writer.directBytes, 2 * (64 << 10));
  });

  it('falls back to buffered writes for good when the direct handle refuses (EINVAL)', async () => {
    const path = join(dir, 'fallback.bin');
    const fh = await open(path, 'wx');
    let attempts = 0;
    let closed = false;
    // A handle that refuses like a filesystem without direct I/O support does.
    const refusing = {
      write: async () => {
        attempts++;
        throw Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' });
      },
      close: async () => {
        closed = true;
      },
    } as unknown as FileHandle;
    const writer = new PositionalWriter(fh, { direct: refusing });
    const chunks = mixedChunks();
    await writeAll(writer, chunks);
    await fh.close();
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    assert.equal(attempts, 1, 'direct I/O is not retried after EINVAL');
    assert.ok(closed);
    assert.equal(writer.directBytes, 0);
  });

  it('surfaces other direct write errors', async () => {
    const path = join(dir, 'eio.bin');
    const fh = await open(path, 'wx');
    const failing = {
      write: async () => {
        throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
      },
      close: async () => {},
    } as unknown as FileHandle;
    const writer = new PositionalWriter(fh, { direct: failing });
    await assert.rejects(writeAll(writer, mixedChunks()), { code: 'EIO' });
    await writer.settle();
    await fh.close();
  });
});
