/**
 * NbdClient, extents and NbdDisk against real qemu-nbd: unix socket and TCP, sparse qcow2 images,
 * persistent dirty bitmaps, writes. qemu-img (convert, map) and nbdcopy are the oracles.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { coalesceExtents, type Extent } from '../src/disk/extent.js';
import {
  BASE_ALLOCATION,
  dirtyBitmapContext,
  NbdClient,
  NbdDisk,
  readAllocationExtents,
  readDirtyExtents,
  readIncrementalExtents,
} from '../src/nbd/index.js';
import {
  freePort,
  makeTempDir,
  nbdcopyToBuffer,
  qemuImgToRaw,
  type RunningServer,
  rejectsWith,
  removeDir,
  run,
  startQemuNbd,
} from './nbd-servers.js';

const K = 1024;
const M = 1024 * K;
const SIZE = 24 * M;

/** qemu-img map over the same NBD export, as extents: zero:true -> 'zero', else 'data'. */
async function qemuImgMapExtents(uri: string): Promise<Extent[]> {
  const json = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri]);
  const entries = JSON.parse(json) as { start: number; length: number; zero: boolean }[];
  return coalesceExtents(
    entries.map((e) => ({
      offset: e.start,
      length: e.length,
      kind: e.zero ? ('zero' as const) : ('data' as const),
    })),
  );
}

describe('NbdClient against qemu-nbd', () => {
  let dir: string;
  let image: string;
  let expected: Buffer;
  let unixServer: RunningServer;
  let tcpServer: RunningServer;

  before(async () => {
    dir = await makeTempDir('lifeboat-nbd-');
    // A sparse raw source with random data in a few places, converted to qcow2 (zeros stay holes),
    // then an explicit zero-write so the image also has zero clusters.
    const raw = Buffer.alloc(SIZE);
    randomBytes(3 * M).copy(raw, 1 * M);
    randomBytes(64 * K).copy(raw, 8 * M + 4 * K);
    randomBytes(1 * M + 123).copy(raw, 12 * M);
    randomBytes(512).copy(raw, SIZE - 512);
    await writeFile(join(dir, 'src.raw'), raw);
    image = join(dir, 'disk.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'src.raw'), image]);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -z 2M 1M', image]);
    expected = await qemuImgToRaw(image, 'qcow2', dir, 'disk');
    unixServer = await startQemuNbd({
      image,
      format: 'qcow2',
      listen: { socket: join(dir, 'nbd.sock') },
      readOnly: true,
      pidFile: join(dir, 'unix.pid'),
    });
    tcpServer = await startQemuNbd({
      image,
      format: 'qcow2',
      listen: { port: await freePort() },
      readOnly: true,
      pidFile: join(dir, 'tcp.pid'),
    });
  });

  after(async () => {
    await unixServer?.stop();
    await tcpServer?.stop();
    await removeDir(dir);
  });

  test('handshake over a unix socket: size, flags, structured replies, base:allocation, block sizes', async () => {
    const c = await NbdClient.connect(unixServer.uri);
    try {
      assert.equal(c.size, SIZE);
      assert.equal(c.exportName, 'disk');
      assert.equal(c.readOnly, true);
      assert.equal(c.structuredReplies, true);
      assert.ok(c.hasMetaContext(BASE_ALLOCATION));
      assert.ok(c.blockSize.maximum >= c.requestSize && c.requestSize % c.blockSize.minimum === 0);
    } finally {
      await c.close();
    }
  });

  test('whole-export reads match qemu-img convert and nbdcopy (unix and TCP)', async () => {
    assert.ok(
      (await nbdcopyToBuffer(unixServer.uri, dir, 'unix')).equals(expected),
      'nbdcopy oracle disagrees',
    );
    for (const uri of [unixServer.uri, tcpServer.uri]) {
      const c = await NbdClient.connect(uri);
      try {
        const all = await c.read(0, c.size);
        assert.ok(all.equals(expected), `full read via ${uri}`);
        const odd = await c.read(12 * M + 7, 1 * M + 99);
        assert.ok(odd.equals(expected.subarray(12 * M + 7, 13 * M + 106)));
        assert.equal((await c.read(SIZE, 0)).length, 0);
      } finally {
        await c.close();
      }
    }
  });

  test('1000 concurrent reads are all correct', async () => {
    const c = await NbdClient.connect(unixServer.uri, { maxInFlight: 32, maxRequestSize: 256 * K });
    try {
      const jobs = Array.from({ length: 1000 }, (_, i) => {
        const length = 1 + ((i * 7919) % (600 * K));
        const offset = (i * 104729 * 13) % (SIZE - length);
        return c.read(offset, length).then((b) => ({ offset, length, b }));
      });
      for (const { offset, length, b } of await Promise.all(jobs)) {
        assert.equal(b.length, length);
        assert.ok(b.equals(expected.subarray(offset, offset + length)), `read ${offset}+${length}`);
      }
      assert.equal(c.inFlight, 0);
    } finally {
      await c.close();
    }
  });

  test('base:allocation extents agree with qemu-img map over the same export', async () => {
    const c = await NbdClient.connect(unixServer.uri);
    try {
      const ours = await readAllocationExtents(c);
      assert.deepEqual(ours, await qemuImgMapExtents(unixServer.uri));
      assert.equal(ours[0].offset, 0);
      const last = ours[ours.length - 1];
      assert.equal(last.offset + last.length, SIZE);
      // The zero-written range and untouched ranges read as zero; random data never does.
      const at = (o: number) => ours.find((e) => e.offset <= o && o < e.offset + e.length)?.kind;
      assert.equal(at(2 * M + 100), 'zero');
      assert.equal(at(1 * M + 100), 'data');
      assert.equal(at(20 * M), 'zero');
      // A sub-range is clipped to the range.
      const sub = await readAllocationExtents(c, 1 * M + 1, 2 * M);
      assert.equal(sub[0].offset, 1 * M + 1);
      assert.equal(
        sub.reduce((n, e) => n + e.length, 0),
        2 * M,
      );
    } finally {
      await c.close();
    }
  });

  test('NbdDisk: extents and reads through the Disk interface', async () => {
    const disk = await NbdDisk.open(tcpServer.uri);
    try {
      assert.equal(disk.virtualSize, SIZE);
      const extents = await disk.extents();
      for (const e of extents) {
        const data = await disk.read(e.offset, e.length);
        assert.ok(data.equals(expected.subarray(e.offset, e.offset + e.length)));
        if (e.kind === 'zero') assert.ok(data.every((x) => x === 0));
      }
      await assert.rejects(
        disk.read(SIZE - 1, 2),
        (err: Error & { code?: string }) => err.code === 'DISK_RANGE',
      );
    } finally {
      await disk.close();
    }
  });

  test('unknown export and unknown bitmap are typed errors', async () => {
    await rejectsWith(NbdClient.connect(unixServer.uri.replace('/disk?', '/nope?')), 'NBD_EXPORT_NOT_FOUND');
    const c = await NbdClient.connect(unixServer.uri, {
      metaContexts: [BASE_ALLOCATION, dirtyBitmapContext('nope')],
    });
    try {
      assert.equal(c.hasMetaContext(dirtyBitmapContext('nope')), false);
      await rejectsWith(readDirtyExtents(c, 'nope'), 'NBD_META_CONTEXT_NOT_FOUND');
      await rejectsWith(c.read(SIZE - 10, 11), 'NBD_RANGE');
      await rejectsWith(c.write(0, Buffer.alloc(512)), 'NBD_UNSUPPORTED');
      // The connection is still fine after refused requests.
      assert.ok((await c.read(0, 4096)).equals(expected.subarray(0, 4096)));
    } finally {
      await c.close();
    }
    await rejectsWith(c.read(0, 1), 'NBD_CLOSED');
  });

  test('NBD_OPT_LIST lists the export', async () => {
    const exports = await NbdClient.listExports(unixServer.uri);
    assert.deepEqual(
      exports.map((e) => e.name),
      ['disk'],
    );
  });
});

describe('dirty bitmaps through qemu-nbd -B', () => {
  let dir: string;
  let server: RunningServer;
  let image: string;

  before(async () => {
    dir = await makeTempDir('lifeboat-nbd-bitmap-');
    image = join(dir, 'vm.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', image, String(16 * M)]);
    // The "full backup" state: data everywhere in the first 8 MiB.
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 8M', image]);
    // The checkpoint: a persistent bitmap records every write from now on.
    await run('qemu-img', ['bitmap', '--add', '--granularity', '64K', image, 'cp1']);
    await run('qemu-io', [
      '-f',
      'qcow2',
      '-c',
      'write -P 0x22 1M 128K', // changed data
      '-c',
      'write -z 3M 64K', // changed to zeros (data must be shadowed by zeros)
      '-c',
      'discard 5M 64K', // changed to a hole
      '-c',
      'write -P 0x33 12M 64K', // new data where there was none
      image,
    ]);
    server = await startQemuNbd({
      image,
      format: 'qcow2',
      listen: { socket: join(dir, 'nbd.sock') },
      readOnly: true,
      bitmap: 'cp1',
      pidFile: join(dir, 'qemu-nbd.pid'),
    });
  });

  after(async () => {
    await server?.stop();
    await removeDir(dir);
  });

  test('qemu:dirty-bitmap:cp1 gives exactly the written ranges; ∩ allocation turns holes into zero', async () => {
    const c = await NbdClient.connect(server.uri, {
      metaContexts: [BASE_ALLOCATION, dirtyBitmapContext('cp1')],
    });
    try {
      assert.ok(c.hasMetaContext(dirtyBitmapContext('cp1')));
      const dirty = await readDirtyExtents(c, 'cp1');
      assert.deepEqual(
        dirty.filter((e) => e.kind === 'data'),
        [
          { offset: 1 * M, length: 128 * K, kind: 'data' },
          { offset: 3 * M, length: 64 * K, kind: 'data' },
          { offset: 5 * M, length: 64 * K, kind: 'data' },
          { offset: 12 * M, length: 64 * K, kind: 'data' },
        ],
      );
      assert.equal(
        dirty.reduce((n, e) => n + e.length, 0),
        16 * M,
      );
      const incremental = await readIncrementalExtents(c, 'cp1');
      assert.deepEqual(
        incremental.filter((e) => e.kind !== 'unallocated'),
        [
          { offset: 1 * M, length: 128 * K, kind: 'data' },
          { offset: 3 * M, length: 64 * K, kind: 'zero' },
          { offset: 5 * M, length: 64 * K, kind: 'zero' },
          { offset: 12 * M, length: 64 * K, kind: 'data' },
        ],
      );
      const changed = await c.read(1 * M, 128 * K);
      assert.ok(changed.every((x) => x === 0x22));
      assert.ok((await c.read(5 * M, 64 * K)).every((x) => x === 0));
    } finally {
      await c.close();
    }
  });
});

describe('writes through qemu-nbd', () => {
  let dir: string;
  let server: RunningServer;
  let image: string;

  before(async () => {
    dir = await makeTempDir('lifeboat-nbd-write-');
    image = join(dir, 'w.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', image, String(8 * M)]);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x44 0 8M', image]);
    await copyFile(image, join(dir, 'w.orig.qcow2'));
    server = await startQemuNbd({
      image,
      format: 'qcow2',
      listen: { port: await freePort() },
      pidFile: join(dir, 'qemu-nbd.pid'),
    });
  });

  after(async () => {
    await server?.stop();
    await removeDir(dir);
  });

  test('write, write zeroes, trim, flush; the image holds exactly that afterwards', async () => {
    const c = await NbdClient.connect(server.uri, { maxRequestSize: 1 * M });
    const model = Buffer.alloc(8 * M, 0x44);
    try {
      assert.equal(c.readOnly, false);
      assert.ok(c.canFlush && c.canTrim && c.canWriteZeroes);
      const data = randomBytes(3 * M + 512);
      await c.write(512 * K, data, { fua: c.canFua });
      data.copy(model, 512 * K);
      await c.writeZeroes(4 * M, 1 * M);
      model.fill(0, 4 * M, 5 * M);
      await c.writeZeroes(6 * M, 64 * K, { noHole: true, fastZero: c.canFastZero });
      model.fill(0, 6 * M, 6 * M + 64 * K);
      await c.trim(7 * M, 1 * M);
      await c.flush();
      const back = await c.read(0, 7 * M);
      assert.ok(back.equals(model.subarray(0, 7 * M)));
      const extents = await readAllocationExtents(c, 4 * M, 1 * M);
      assert.deepEqual(extents, [{ offset: 4 * M, length: 1 * M, kind: 'zero' }]);
    } finally {
      await c.close();
    }
    await server.stop();
    const onDisk = await qemuImgToRaw(image, 'qcow2', dir, 'w');
    // Trimmed bytes are unspecified by the protocol; everything else must be exact.
    assert.ok(onDisk.subarray(0, 7 * M).equals(model.subarray(0, 7 * M)));
  });
});
