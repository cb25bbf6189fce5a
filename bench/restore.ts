/**
 * Restore benchmark: Lifeboat's restore of a snapshot chain (full + 3 incrementals on a filesystem
 * target, read through one merged map) against `qemu-img convert` of the same chain, same run.
 *
 *   npx tsx bench/restore.ts [--data 1G] [--rounds 2] [--dir /var/tmp] [--read-ahead 8]
 *                            [--qemu-cache none|writeback]
 *
 * The full holds --data bytes of random data spread over a disk twice that size; each incremental
 * rewrites 64 MiB. Both tools write a sparse output file and make it durable (we fsync; qemu-img
 * runs with -t none, or --qemu-cache writeback, which flushes at the end); `sync` before each timed
 * run; best of --rounds runs, alternating who goes first. Throughput = guest data bytes restored / wall time; ratio =
 * ours / qemu-img (>= 1.0: at least as fast).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { findSnapshot, findVm, openBackupDisk } from '../src/datamover/restore-source.js';
import { restoreDiskToFile } from '../src/datamover/restore-to-file.js';
import { FsBackend } from '../src/target/fs-backend.js';
import { vmFileKey } from '../src/target/layout.js';
import { buildLocalChain, writeFixtureSnapshots } from '../test/datamover-restore-fixture.js';

const run = promisify(execFile);
const M = 1024 * 1024;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/**
 * qemu-img's output cache mode (--qemu-cache): `none` (O_DIRECT, the faster here, as ours writes
 * aligned chunks directly) or `writeback` (page cache, flushed at the end; qemu-img's default).
 */
const QEMU_CACHE = arg('qemu-cache', 'none');

function parseSize(v: string): number {
  const m = /^(\d+)([MG])$/i.exec(v);
  if (!m) throw new Error(`bad size ${v} (use e.g. 512M, 1G)`);
  return Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1024 * M : M);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  await run('sync');
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const data = parseSize(arg('data', '1G'));
  const rounds = Number(arg('rounds', '2'));
  const work = await mkdtemp(join(arg('dir', '/var/tmp'), 'lifeboat-bench-restore-'));
  try {
    const size = 2 * data;
    // A raw disk with `data` bytes of random 4 MiB chunks on every other 4 MiB slot.
    const raw = join(work, 'seed.raw');
    const fh = await open(raw, 'w');
    await fh.truncate(size);
    for (let off = 0; off < size; off += 8 * M) await fh.write(randomBytes(4 * M), 0, 4 * M, off);
    await fh.close();
    const sizeMiB = size / M;
    // State 0 comes from the seed; states 1..3 overwrite 64 MiB each (in 4 MiB pieces).
    const inc = (k: number) =>
      Array.from(
        { length: 16 },
        (_, i) => `write -P 0x${(0x10 * k + i).toString(16)} ${(k * 97 + i * 61) % (sizeMiB - 4)}M 4M`,
      );
    const chain = await buildLocalChain(work, 'disk', sizeMiB, [[], inc(1), inc(2), inc(3)]);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, chain.images[0]!]);
    await rm(raw);
    const backend = await FsBackend.open(join(work, 'target'), { create: true });
    const target = await writeFixtureSnapshots(
      backend,
      'bench',
      [
        {
          id: 'vm',
          name: 'vm',
          uuid: 'bench',
          domainXml: '<domain><name>vm</name><memory>65536</memory><vcpu>1</vcpu><devices/></domain>',
          disks: [{ name: 'vda', targetDev: 'vda', chain }],
        },
      ],
      ['s0', 's1', 's2', 's3'],
    );
    for (const img of chain.images) await rm(img);
    const vm = await findVm(target, await findSnapshot(target, 'bench', 's3'));
    const top = join(work, 'target', vmFileKey('bench', 's3', 'vm', 'vda.qcow2'));
    const probe = await openBackupDisk(backend, vm, vm.disks[0]!);
    const dataBytes = (await probe.extents()).reduce((n, e) => n + (e.kind === 'data' ? e.length : 0), 0);
    await probe.close();
    console.log(
      `chain: full + 3 incrementals, ${(size / M).toFixed(0)} MiB virtual, ${(dataBytes / M).toFixed(0)} MiB data`,
    );

    for (const format of ['raw', 'qcow2'] as const) {
      let ours = Number.POSITIVE_INFINITY;
      let theirs = Number.POSITIVE_INFINITY;
      for (let r = 0; r < rounds; r++) {
        const out = join(work, `out.${format}`);
        const mine = async () => {
          ours = Math.min(
            ours,
            await timed(async () => {
              const disk = await openBackupDisk(backend, vm, vm.disks[0]!);
              try {
                await restoreDiskToFile(disk, out, { format, readAhead: Number(arg('read-ahead', '8')) });
              } finally {
                await disk.close();
              }
            }),
          );
          await rm(out);
        };
        const qemu = async () => {
          theirs = Math.min(
            theirs,
            await timed(() => run('qemu-img', ['convert', '-t', QEMU_CACHE, '-O', format, top, out])),
          );
          await rm(out);
        };
        if (r % 2 === 0) {
          await mine();
          await qemu();
        } else {
          await qemu();
          await mine();
        }
      }
      const mbs = (s: number) => (dataBytes / M / s).toFixed(0);
      console.log(
        `restore -> ${format.padEnd(5)} lifeboat ${mbs(ours).padStart(5)} MB/s (${ours.toFixed(2)} s)   qemu-img convert ${mbs(theirs).padStart(5)} MB/s (${theirs.toFixed(2)} s)   ratio ${(theirs / ours).toFixed(2)}`,
      );
    }
    await backend.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
