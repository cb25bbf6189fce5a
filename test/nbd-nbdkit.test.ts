/**
 * NbdClient against real nbdkit: memory and data plugins, simple replies (--no-sr), non-fixed and
 * oldstyle handshakes, block size constraints (blocksize-policy filter), injected server errors
 * (error filter) and a server killed while reads are in flight (delay filter + SIGKILL).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NbdClient, NbdDisk, NbdError, readAllocationExtents } from '../src/nbd/index.js';
import {
  freePort,
  makeTempDir,
  nbdcopyToBuffer,
  type RunningServer,
  rejectsWith,
  removeDir,
  startNbdkit,
} from './nbd-servers.js';

const K = 1024;
const M = 1024 * K;

/** Sparse data with a few patterned regions, as the nbdkit data plugin describes it. */
const DATA_SPEC =
  'data=@1048576 ( "Lifeboat" 0x01 0x02 )*20000 @4194304 ( 0x55 0xaa )*32768 @8388000 0xff*608';
const DATA_SIZE = 8 * M + 1000; // not a multiple of 512 on purpose

describe('NbdClient against nbdkit', () => {
  let dir: string;
  const servers: RunningServer[] = [];
  let n = 0;
  const start = async (plugin: string, args: string[], listen?: { port: number }, exportName?: string) => {
    n++;
    const s = await startNbdkit({
      plugin,
      args,
      exportName,
      listen: listen ?? { socket: join(dir, `s${n}.sock`) },
      pidFile: join(dir, `s${n}.pid`),
    });
    servers.push(s);
    return s;
  };

  before(async () => {
    dir = await makeTempDir('lifeboat-nbdkit-');
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await removeDir(dir);
  });

  test('data plugin over TCP: reads match nbdcopy, odd export size, sparse extents', async () => {
    const s = await start('data', [DATA_SPEC, `size=${DATA_SIZE}`], { port: await freePort() });
    const expected = await nbdcopyToBuffer(s.uri, dir, 'data');
    assert.equal(expected.length, DATA_SIZE);
    const c = await NbdClient.connect(s.uri, { maxRequestSize: 512 * K });
    try {
      assert.equal(c.size, DATA_SIZE);
      assert.ok((await c.read(0, c.size)).equals(expected));
      assert.ok((await c.read(DATA_SIZE - 777, 777)).equals(expected.subarray(DATA_SIZE - 777)));
      const extents = await readAllocationExtents(c);
      assert.equal(
        extents.reduce((t, e) => t + e.length, 0),
        DATA_SIZE,
      );
      for (const e of extents.filter((x) => x.kind === 'zero')) {
        assert.ok(expected.subarray(e.offset, e.offset + e.length).every((x) => x === 0));
      }
    } finally {
      await c.close();
    }
  });

  test('memory plugin: write, zero, trim, flush, block status, concurrent writes and reads', async () => {
    const s = await start('memory', ['size=8M']);
    const c = await NbdClient.connect(s.uri, { maxInFlight: 8, maxRequestSize: 64 * K });
    const model = Buffer.alloc(8 * M);
    try {
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 64; i++) {
        const data = randomBytes(60 * K);
        const at = i * 128 * K + 4 * K;
        data.copy(model, at);
        writes.push(c.write(at, data));
      }
      await Promise.all(writes);
      await c.writeZeroes(1 * M, 256 * K);
      model.fill(0, 1 * M, 1 * M + 256 * K);
      await c.trim(2 * M, 1 * M);
      model.fill(0, 2 * M, 3 * M); // nbdkit memory reads trimmed ranges as zeros
      await c.flush();
      assert.ok((await c.read(0, 8 * M)).equals(model));
      const extents = await readAllocationExtents(c, 2 * M, 1 * M);
      assert.deepEqual(extents, [{ offset: 2 * M, length: 1 * M, kind: 'zero' }]);
    } finally {
      await c.close();
    }
  });

  test('simple replies (--no-sr): reads work, no block status, NbdDisk reports all data', async () => {
    const s = await start('data', ['--no-sr', DATA_SPEC, `size=${DATA_SIZE}`]);
    const expected = await nbdcopyToBuffer(s.uri, dir, 'nosr');
    const c = await NbdClient.connect(s.uri, { maxRequestSize: 128 * K });
    try {
      assert.equal(c.structuredReplies, false);
      assert.equal(c.metaContexts.size, 0);
      const reads = Array.from({ length: 300 }, (_, i) => {
        const length = 1 + ((i * 4099) % (300 * K));
        const offset = (i * 7727 * 31) % (DATA_SIZE - length);
        return c
          .read(offset, length)
          .then((b) => assert.ok(b.equals(expected.subarray(offset, offset + length))));
      });
      await Promise.all(reads);
      await rejectsWith(c.blockStatus(0, 4096), 'NBD_UNSUPPORTED');
    } finally {
      await c.close();
    }
    const disk = await NbdDisk.open(s.uri);
    try {
      assert.deepEqual(await disk.extents(), [{ offset: 0, length: DATA_SIZE, kind: 'data' }]);
    } finally {
      await disk.close();
    }
  });

  test('non-fixed newstyle (--mask-handshake=0) falls back to NBD_OPT_EXPORT_NAME', async () => {
    const s = await start('memory', ['--mask-handshake=0', 'size=1M']);
    const c = await NbdClient.connect(s.uri);
    try {
      assert.equal(c.size, 1 * M);
      assert.equal(c.structuredReplies, false);
      await c.write(0, Buffer.alloc(4096, 9));
      assert.ok((await c.read(0, 4096)).every((x) => x === 9));
    } finally {
      await c.close();
    }
  });

  test('oldstyle servers are refused with NBD_UNSUPPORTED', async () => {
    const s = await start('memory', ['-o', 'size=1M']);
    await rejectsWith(NbdClient.connect(s.uri), 'NBD_UNSUPPORTED');
  });

  test('block size constraints are honoured: unaligned reads widened, reads split at the maximum', async () => {
    const s = await start('memory', [
      '--filter=blocksize-policy',
      'size=4M',
      'blocksize-minimum=4096',
      'blocksize-preferred=65536',
      'blocksize-maximum=262144',
      'blocksize-error-policy=error',
    ]);
    const c = await NbdClient.connect(s.uri, { maxRequestSize: 4 * M });
    try {
      assert.deepEqual(c.blockSize, { minimum: 4096, preferred: 65536, maximum: 262144 });
      assert.equal(c.requestSize, 262144);
      const data = randomBytes(1 * M);
      await c.write(1 * M, data);
      assert.ok((await c.read(1 * M + 1000, 100_000)).equals(data.subarray(1000, 101_000)));
      const into = Buffer.alloc(100_000);
      await c.readInto(1 * M + 1000, into);
      assert.ok(into.equals(data.subarray(1000, 101_000)));
      await c.readInto(1 * M, into.subarray(0, 65536));
      assert.ok(into.subarray(0, 65536).equals(data.subarray(0, 65536)));
      assert.ok((await c.read(0, 4 * M)).subarray(1 * M, 2 * M).equals(data));
      await rejectsWith(c.write(1000, Buffer.alloc(4096)), 'NBD_RANGE');
    } finally {
      await c.close();
    }
  });

  test('server errors are typed per request and the connection stays usable', async () => {
    const s = await start('memory', [
      '--filter=error',
      'size=4M',
      'error-pread=EIO',
      'error-pread-rate=1',
      'error-pwrite=ENOSPC',
      'error-pwrite-rate=1',
    ]);
    const c = await NbdClient.connect(s.uri);
    try {
      const readErr = await rejectsWith(c.read(0, 64 * K), 'NBD_SERVER_ERROR');
      assert.equal(readErr.errnoName, 'EIO');
      const writeErr = await rejectsWith(c.write(0, Buffer.alloc(4096)), 'NBD_SERVER_ERROR');
      assert.equal(writeErr.errnoName, 'ENOSPC');
      // Many failing reads at once: each rejects, none hangs, nothing leaks.
      const many = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => c.read(i * 4096, 4096)));
      assert.ok(many.every((r) => r.status === 'rejected'));
      assert.equal(c.inFlight, 0);
      assert.deepEqual(await readAllocationExtents(c), [{ offset: 0, length: 4 * M, kind: 'zero' }]);
    } finally {
      await c.close();
    }
  });

  test('export names and NBD_OPT_LIST', async () => {
    const s = await start(
      'memory',
      [
        '--filter=exportname',
        'size=1M',
        'exportname=vol1',
        'exportname=vol2',
        'exportname-list=explicit',
        'exportname-strict=true',
      ],
      undefined,
      'vol1',
    );
    const exports = await NbdClient.listExports(s.uri);
    assert.deepEqual(
      exports.map((e) => e.name),
      ['vol1', 'vol2'],
    );
    await rejectsWith(NbdClient.connect(s.uri.replace('/vol1?', '/nope?')), 'NBD_EXPORT_NOT_FOUND');
    const c = await NbdClient.connect(s.uri);
    assert.equal(c.exportName, 'vol1');
    await c.close();
  });

  test('server killed while reads are in flight: every pending read rejects with NBD_DISCONNECTED', async () => {
    const s = await start('memory', ['--filter=delay', 'size=16M', 'rdelay=10']);
    const c = await NbdClient.connect(s.uri, { maxInFlight: 8 });
    const reads = Array.from({ length: 40 }, (_, i) => c.read(i * 64 * K, 64 * K));
    const settled = Promise.allSettled(reads);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.inFlight, 8);
    const t0 = Date.now();
    process.kill(s.pid, 'SIGKILL');
    const results = await settled;
    // Generous bound: the point is "no hang until the server's 10 s delay", not a latency figure.
    assert.ok(Date.now() - t0 < 5000, 'pending reads were not rejected promptly');
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      const err = (r as PromiseRejectedResult).reason;
      assert.ok(err instanceof NbdError && err.code === 'NBD_DISCONNECTED', String(err));
    }
    assert.equal(c.inFlight, 0);
    await rejectsWith(c.read(0, 512), 'NBD_DISCONNECTED');
    await c.close();
  });
});
