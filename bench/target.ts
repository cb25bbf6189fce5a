/**
 * Backup target benchmark: moving one disk image to and from a target through Lifeboat's backends,
 * against the plain tools on the same bytes in the same run.
 *
 *   npx tsx bench/target.ts [--size 256M] [--rounds 3] [--dir /var/tmp]
 *   (S3 cases need LIFEBOAT_TEST_S3_* from scripts/services/rgw.sh's rgw.env; skipped without them)
 *
 * Cases (the source image is in the page cache for both sides; best of --rounds, alternating who
 * goes first; `sync` before every timed run):
 *   fs write   ours: FsBackend.createWriter + HashingSink (temp file, manifest, fsync, rename), fed
 *              4 MiB chunks in recycled buffers, as the qcow2 writer feeds it
 *              theirs: dd bs=4M conv=fsync (bytes pass through user space and are fsynced, as ours)
 *              and, for reference, cp + sync (cp uses copy_file_range: an in-kernel copy that never
 *              touches user space, which a writer fed from NBD cannot do)
 *   fs read    ours: FsBackend.openRead, 4 MiB reads into recycled buffers, 3 in flight
 *              theirs: cat > /dev/null
 *   fs verify  ours: SHA-256 per 4 MiB block as verify does it          theirs: openssl dgst -sha256
 *              (one stream, one core, SHA extensions: coreutils sha256sum is 3-4x slower here)
 *   S3 write   ours: S3Backend.createWriter + HashingSink (multipart, 8 MiB parts, 3 in flight)
 *              theirs: one plain PutObject of the whole buffer
 *   S3 read    ours: S3Backend.openRead, 4 MiB ranged GETs (3 in flight) into recycled buffers
 *              theirs: one plain GetObject, streamed
 *   S3 verify  ours: ranged GETs + SHA-256 per block (verify)          theirs: GetObject + SHA-256
 * Throughput = image bytes / wall time; ratio = ours / theirs (>= 1.0: at least as fast).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { BufferPool } from '../src/disk/buffer-pool.js';
import { LocalFile, type RandomAccessFile } from '../src/disk/io.js';
import type { TargetBackend } from '../src/target/backend.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { digestFile, HashingSink } from '../src/target/hashing-sink.js';
import { S3Backend } from '../src/target/s3-backend.js';

const run = promisify(execFile);
const M = 1024 * 1024;
const CHUNK = 4 * M;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
function parseSize(v: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(v);
  if (!m) throw new Error(`bad size ${v}`);
  return Number(m[1]) * ({ '': 1, K: 1024, M, G: 1024 * M } as Record<string, number>)[m[2].toUpperCase()];
}

const SIZE = parseSize(arg('size', '256M'));
const DIR = arg('dir', '/var/tmp');
const ROUNDS = Math.max(1, Number(arg('rounds', '3')));

async function time(fn: () => Promise<void>): Promise<number> {
  await run('sync');
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const rows: Array<[string, string, number, number]> = [];

/** Best of ROUNDS for each side, alternating who goes first; `after` cleans up between runs. */
async function compare(
  name: string,
  tool: string,
  ours: () => Promise<void>,
  theirs: () => Promise<void>,
  after: () => Promise<void> = async () => {},
): Promise<void> {
  let a = Number.POSITIVE_INFINITY;
  let b = Number.POSITIVE_INFINITY;
  for (let r = 0; r < ROUNDS; r++) {
    const mine = async () => {
      a = Math.min(a, await time(ours));
      await after();
    };
    const other = async () => {
      b = Math.min(b, await time(theirs));
      await after();
    };
    if (r % 2 === 0) {
      await mine();
      await other();
    } else {
      await other();
      await mine();
    }
  }
  rows.push([name, tool, SIZE / M / a, SIZE / M / b]);
}

async function upload(backend: TargetBackend, src: string, key: string): Promise<void> {
  const file = await LocalFile.open(src);
  const sink = new HashingSink(await backend.createWriter(key));
  // Reads ahead of the sink into recycled buffers, as the qcow2 writer does.
  const pool = new BufferPool(CHUNK, 12);
  const read = async (off: number) => {
    const buf = pool.acquire();
    await file.readInto(buf.subarray(0, Math.min(CHUNK, file.size - off)), off);
    return buf;
  };
  let next = read(0);
  for (let off = 0; off < file.size; off += CHUNK) {
    const buf = await next;
    if (off + CHUNK < file.size) next = read(off + CHUNK);
    const chunk = buf.subarray(0, Math.min(CHUNK, file.size - off));
    if (sink.writeBorrowed) await sink.writeBorrowed(chunk, () => pool.release(buf));
    else await sink.write(Buffer.from(chunk));
  }
  await sink.close();
  await file.close();
}

/** 4 MiB reads, 3 in flight, into recycled buffers where the file can (as restores read). */
async function plainRead(f: RandomAccessFile): Promise<void> {
  const pool = new BufferPool(CHUNK, 4);
  const readChunk = async (off: number, length: number) => {
    if (!f.readInto) return f.read(off, length);
    const buf = pool.acquire();
    await f.readInto(buf.subarray(0, length), off);
    return buf;
  };
  const inFlight: Promise<Buffer>[] = [];
  for (let off = 0; off < f.size || inFlight.length > 0; ) {
    while (off < f.size && inFlight.length < 3) {
      inFlight.push(readChunk(off, Math.min(CHUNK, f.size - off)));
      off += CHUNK;
    }
    pool.release(await inFlight.shift()!);
  }
}

async function verifyRead(backend: TargetBackend, key: string): Promise<void> {
  const f = await backend.openRead(key);
  await digestFile((o, l) => f.read(o, l), f.size, CHUNK, undefined, {
    readInto: f.readInto?.bind(f),
  });
  await f.close();
}

const dir = await mkdtemp(join(DIR, 'lifeboat-bench-target-'));
try {
  const src = join(dir, 'disk.img');
  await writeFile(src, randomBytes(SIZE)); // incompressible, like a real image's data clusters
  await run('cat', [src]).catch(() => {}); // warm the page cache for both sides

  const fs = await FsBackend.open(join(dir, 'target'), { create: true });
  const copy = join(dir, 'copy.img');
  const dropCopies = async () => {
    await rm(copy, { force: true });
    await fs.deletePrefix('w/');
  };
  await compare(
    'fs write (+manifest, fsync)',
    'dd bs=4M conv=fsync',
    () => upload(fs, src, 'w/disk.qcow2'),
    () => run('dd', [`if=${src}`, `of=${copy}`, 'bs=4M', 'conv=fsync', 'status=none']).then(() => {}),
    dropCopies,
  );
  await compare(
    'fs write (+manifest, fsync)',
    'cp + sync',
    () => upload(fs, src, 'w/disk.qcow2'),
    async () => {
      await run('cp', [src, copy]);
      await run('sync', [copy]);
    },
    dropCopies,
  );
  await upload(fs, src, 'w/disk.qcow2');
  await compare(
    'fs read',
    'cat > /dev/null',
    async () => {
      const f = await fs.openRead('w/disk.qcow2');
      await plainRead(f);
      await f.close();
    },
    () => run('sh', ['-c', `cat '${src}' > /dev/null`]).then(() => {}),
  );
  await compare(
    'fs verify (SHA-256 per block)',
    'openssl dgst -sha256',
    () => verifyRead(fs, 'w/disk.qcow2'),
    () => run('openssl', ['dgst', '-sha256', src]).then(() => {}),
  );

  const endpoint = process.env.LIFEBOAT_TEST_S3_ENDPOINT;
  if (endpoint) {
    const creds = {
      accessKeyId: process.env.LIFEBOAT_TEST_S3_ACCESS_KEY!,
      secretAccessKey: process.env.LIFEBOAT_TEST_S3_SECRET_KEY!,
    };
    const region = process.env.LIFEBOAT_TEST_S3_REGION ?? 'default';
    // The same checksum settings as S3Backend's client: no CRC32 computed on PUT nor checked on GET.
    const client = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: creds,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const bucket = `lb-bench-${randomBytes(4).toString('hex')}`;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const s3 = await S3Backend.open({ bucket, prefix: 't', endpoint, region, ...creds });
    const srcFile = await LocalFile.open(src);
    const bytes = await srcFile.read(0, SIZE);
    await srcFile.close();
    const put = () =>
      client
        .send(new PutObjectCommand({ Bucket: bucket, Key: 'plain.img', Body: bytes, ContentLength: SIZE }))
        .then(() => {});
    // Deleted between rounds: RGW's memstore (rgw.sh) holds every byte in RAM until its GC runs.
    await compare(
      'S3 write (+manifest)',
      'PutObject',
      () => upload(s3, src, 'w/disk.qcow2'),
      put,
      async () => {
        await s3.deletePrefix('w/');
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'plain.img' }));
      },
    );
    await upload(s3, src, 'w/disk.qcow2');
    await put();
    const get = async (hash: boolean) => {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'plain.img' }));
      const h = createHash('sha256');
      for await (const piece of r.Body as AsyncIterable<Buffer>) if (hash) h.update(piece);
      h.digest();
    };
    await compare(
      'S3 read',
      'GetObject',
      async () => {
        const f = await s3.openRead('w/disk.qcow2');
        await plainRead(f);
        await f.close();
      },
      () => get(false),
    );
    await compare(
      'S3 verify (SHA-256 per block)',
      'GetObject + SHA-256',
      () => verifyRead(s3, 'w/disk.qcow2'),
      () => get(true),
    );
    await s3.deletePrefix('w/');
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'plain.img' }));
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
    await s3.close();
    client.destroy();
  } else {
    process.stdout.write('S3 cases skipped: LIFEBOAT_TEST_S3_ENDPOINT not set\n');
  }
  await fs.close();

  process.stdout.write(`image ${SIZE / M} MiB, best of ${ROUNDS}\n`);
  process.stdout.write(
    `${'case'.padEnd(30)} ${'theirs'.padEnd(22)} ${'ours MB/s'.padStart(10)} ${'theirs MB/s'.padStart(12)} ${'ratio'.padStart(6)}\n`,
  );
  for (const [name, tool, ours, theirs] of rows) {
    process.stdout.write(
      `${name.padEnd(30)} ${tool.padEnd(22)} ${ours.toFixed(0).padStart(10)} ${theirs.toFixed(0).padStart(12)} ${(ours / theirs).toFixed(2).padStart(6)}\n`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
