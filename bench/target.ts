/**
 * Backup target benchmark: moving one disk image to and from a target through Lifeboat's backends,
 * against the plain tools on the same bytes in the same run.
 *
 *   npx tsx bench/target.ts [--size 256M] [--dir /var/tmp]
 *   (S3 cases need LIFEBOAT_TEST_S3_* from scripts/services/rgw.sh's rgw.env; skipped without them)
 *
 * Cases:
 *   fs write   ours: FsBackend.createWriter + HashingSink (temp file, manifest, fsync, rename)
 *              theirs: cp + sync of the copy
 *   fs read    ours: FsBackend.openRead + SHA-256 per 4 MiB block (what verify does)
 *              theirs: cat > /dev/null
 *   S3 write   ours: S3Backend.createWriter + HashingSink (multipart, 8 MiB parts, 3 in flight)
 *              theirs: one plain PutObject of the whole buffer
 *   S3 read    ours: S3Backend.openRead, 4 MiB ranged GETs (3 in flight) + SHA-256 (what verify does)
 *              theirs: one plain GetObject, streamed
 * Throughput = image bytes / wall time; ratio = ours / theirs (>= 1.0: at least as fast).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
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
import { LocalFile } from '../src/disk/io.js';
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

async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const rows: Array<[string, number, number]> = [];
function report(name: string, ours: number, theirs: number): void {
  rows.push([name, SIZE / M / ours, SIZE / M / theirs]);
}

async function upload(backend: TargetBackend, src: string, key: string): Promise<void> {
  const file = await LocalFile.open(src);
  const sink = new HashingSink(await backend.createWriter(key));
  // One read ahead, as the qcow2 writer reads ahead of its sink.
  let next = file.read(0, CHUNK);
  for (let off = 0; off < file.size; off += CHUNK) {
    const buf = await next;
    if (off + CHUNK < file.size) next = file.read(off + CHUNK, CHUNK);
    await sink.write(buf);
  }
  await sink.close();
  await file.close();
}

async function download(backend: TargetBackend, key: string): Promise<void> {
  // Reads as verify issues them: a few 4 MiB ranges in flight.
  const f = await backend.openRead(key);
  await digestFile((o, l) => f.read(o, l), f.size, CHUNK);
  await f.close();
}

const dir = await mkdtemp(join(DIR, 'lifeboat-bench-target-'));
try {
  const src = join(dir, 'disk.img');
  await writeFile(src, randomBytes(SIZE)); // incompressible, like a real image's data clusters
  await run('cat', [src]).catch(() => {}); // warm the page cache for both sides

  const fs = await FsBackend.open(join(dir, 'target'), { create: true });
  const fsWrite = await time(() => upload(fs, src, 'w/disk.qcow2'));
  const cpWrite = await time(async () => {
    await run('cp', [src, join(dir, 'cp-copy.img')]);
    await run('sync', [join(dir, 'cp-copy.img')]);
  });
  report('fs write (+manifest, fsync)', fsWrite, cpWrite);
  const fsRead = await time(() => download(fs, 'w/disk.qcow2'));
  const catRead = await time(() =>
    run('sh', ['-c', `cat '${join(dir, 'cp-copy.img')}' > /dev/null`]).then(() => {}),
  );
  report('fs read', fsRead, catRead);

  const endpoint = process.env.LIFEBOAT_TEST_S3_ENDPOINT;
  if (endpoint) {
    const creds = {
      accessKeyId: process.env.LIFEBOAT_TEST_S3_ACCESS_KEY!,
      secretAccessKey: process.env.LIFEBOAT_TEST_S3_SECRET_KEY!,
    };
    const region = process.env.LIFEBOAT_TEST_S3_REGION ?? 'default';
    const client = new S3Client({ endpoint, region, forcePathStyle: true, credentials: creds });
    const bucket = `lb-bench-${randomBytes(4).toString('hex')}`;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const s3 = await S3Backend.open({ bucket, prefix: 't', endpoint, region, ...creds });
    const s3Write = await time(() => upload(s3, src, 'w/disk.qcow2'));
    const srcFile = await LocalFile.open(src);
    const bytes = await srcFile.read(0, SIZE);
    await srcFile.close();
    const putWrite = await time(async () => {
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: 'plain.img', Body: bytes, ContentLength: SIZE }),
      );
    });
    report('S3 write (+manifest)', s3Write, putWrite);
    const s3Read = await time(() => download(s3, 'w/disk.qcow2'));
    const getRead = await time(async () => {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'plain.img' }));
      for await (const _ of r.Body as AsyncIterable<Buffer>) {
        // drain
      }
    });
    report('S3 read', s3Read, getRead);
    await s3.deletePrefix('w/');
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'plain.img' }));
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
    await s3.close();
    client.destroy();
  } else {
    process.stdout.write('S3 cases skipped: LIFEBOAT_TEST_S3_ENDPOINT not set\n');
  }
  await fs.close();

  process.stdout.write(`image ${SIZE / M} MiB\n`);
  process.stdout.write(
    `${'case'.padEnd(30)} ${'ours MB/s'.padStart(10)} ${'theirs MB/s'.padStart(12)} ${'ratio'.padStart(6)}\n`,
  );
  for (const [name, ours, theirs] of rows) {
    process.stdout.write(
      `${name.padEnd(30)} ${ours.toFixed(0).padStart(10)} ${theirs.toFixed(0).padStart(12)} ${(ours / theirs).toFixed(2).padStart(6)}\n`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
