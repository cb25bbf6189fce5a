/**
 * Backup data path benchmark: Lifeboat against nbdcopy and qemu-img on the same libvirt pull-backup
 * NBD export, in the same run; then a changed-block incremental against the full.
 *
 *   npx tsx bench/backup.ts [--size 4G] [--data 2G] [--dirty 1] [--rounds 2] [--verify]
 *
 * Needs libvirt (qemu:///system, or $LIBVIRT_DEFAULT_URI) and a QEMU-reachable directory
 * ($LIFEBOAT_TEST_VMDIR, default /var/tmp/lifeboat-test-vms). A TCG domain gets one qcow2 disk of
 * --size with --data of incompressible data (written before it starts). One pull backup is begun and
 * its export read by:
 *   ours      copyDiskToTarget: block status, one-pass qcow2 writer, SHA-256 manifest, fs target (fsync)
 *   nbdcopy   nbd -> null:           (the NBD read ceiling)
 *   nbdcopy   nbd -> raw file        (sparse, no fsync)
 *   qemu-img  convert -O qcow2 from the export (-t writeback: flushed at the end)
 *   qemu-img  the same with -t none (O_DIRECT output, as ours uses for aligned chunks)
 * best of --rounds each, page cache warm. Then end to end (backupDomain, job setup included): a full,
 * --dirty percent of the disk rewritten by the guest, an incremental. Throughput = guest data bytes /
 * wall time; ratio = ours / theirs (>= 1.0: at least as fast).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

process.env.LIBVIRT_DEFAULT_URI ??= 'qemu:///system';
process.env.LIFEBOAT_TEST_VMDIR ??= '/var/tmp/lifeboat-test-vms';

const { backupDomain } = await import('../src/datamover/backup.js');
const { copyDiskToTarget } = await import('../src/datamover/backup-disk-copy.js');
const { nbdExportUri } = await import('../src/hypervisor/libvirt.js');
const { FsBackend } = await import('../src/target/fs-backend.js');
const { diskImageKey } = await import('../src/target/layout.js');
const { WorkloadLease } = await import('../src/target/lease.js');
const { SnapshotWriter } = await import('../src/target/snapshot-writer.js');
const { Target } = await import('../src/target/target.js');
const { createTestDomain, guestWrite } = await import('../test/helpers/libvirt.js');

const run = promisify(execFile);
const M = 1024 * 1024;

function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/i.exec(v);
  if (!m) throw new Error(`bad size ${v}`);
  const mult: Record<string, number> = { '': 1, K: 1024, M, G: 1024 * M, T: 1024 * 1024 * M };
  return Math.floor(Number(m[1]) * mult[m[2]!.toUpperCase()]!);
}
function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const SIZE = parseSize(arg('size', '4G'));
const DATA = parseSize(arg('data', '2G'));
const DIRTY_PERCENT = Number(arg('dirty', '1'));
const ROUNDS = Math.max(1, Number(arg('rounds', '2')));
const VERIFY = process.argv.includes('--verify');
/** Tuning of our reader (defaults: copyDiskToTarget's). */
const TUNING = {
  connections: process.argv.includes('--connections') ? Number(arg('connections', '2')) : undefined,
  maxInFlight: process.argv.includes('--inflight') ? Number(arg('inflight', '16')) : undefined,
  readAhead: process.argv.includes('--readahead') ? Number(arg('readahead', '8')) : undefined,
  chunkBytes: process.argv.includes('--chunk') ? parseSize(arg('chunk', '4M')) : undefined,
};
const VMDIR = process.env.LIFEBOAT_TEST_VMDIR!;
const CHUNK = 32 * M;

const mbps = (bytes: number, ms: number) => bytes / M / (ms / 1000);
const fmt = (n: number) => n.toFixed(1).padStart(8);

/** A raw file with DATA bytes of random content in CHUNK runs spread over SIZE (the rest holes). */
async function makeSourceRaw(path: string): Promise<number> {
  const pool = randomBytes(64 * M);
  const chunks = Math.ceil(DATA / CHUNK);
  const stride = Math.max(CHUNK, Math.floor(SIZE / chunks / CHUNK) * CHUNK);
  const fh = await open(path, 'w');
  let written = 0;
  try {
    await fh.truncate(SIZE);
    for (let i = 0; i < chunks && written < DATA; i++) {
      const off = i * stride;
      const len = Math.min(CHUNK, DATA - written, SIZE - off);
      if (len <= 0) break;
      const at = (i * 7919 * 4096) % (pool.length - len);
      await fh.write(pool, at, len, off);
      written += len;
    }
  } finally {
    await fh.close();
  }
  return written;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  await run('sync');
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(VMDIR, 'bench-backup-'));
  await chmod(work, 0o755); // QEMU (libvirt-qemu) reaches the job's socket and scratch file in it
  const dom = await createTestDomain({
    label: 'bench',
    disks: [{ format: 'qcow2', sizeMiB: Math.ceil(SIZE / M) }],
    memoryMiB: 128,
    start: false,
  });
  try {
    console.log(
      `backup bench: disk ${SIZE / M} MiB virtual, ${DATA / M} MiB data, ${ROUNDS} round(s), host ${hostname()}`,
    );
    const raw = join(work, 'source.raw');
    const dataBytes = await makeSourceRaw(raw);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, dom.disks[0]!.path]);
    await rm(raw);
    await dom.hv.domains.start(dom.name);

    // One pull backup, read by every tool in turn.
    const job = await dom.hv.backups.begin(dom.name, {
      disks: [{ target: 'vda', backup: true }],
      workDir: work,
    });
    const uri = nbdExportUri(job.server, 'vda');
    const targetDir = join(work, 'target');
    const target = await Target.init(await FsBackend.open(targetDir, { create: true }));
    const lease = await WorkloadLease.acquire(target.backend, 'bench', {
      installationId: 'bench',
      host: hostname(),
    });
    const best: Record<string, number> = {};
    const keep = (name: string, ms: number) => {
      best[name] = Math.min(best[name] ?? Number.POSITIVE_INFINITY, ms);
    };
    const nbdFile = join(work, 'nbdcopy.raw');
    const qemuOut = join(work, 'qemu-img.qcow2');
    const qemuDirectOut = join(work, 'qemu-img-direct.qcow2');
    let ourImage = '';
    await run('nbdcopy', [uri, 'null:']); // warm the page cache for everyone
    for (let round = 0; round < ROUNDS; round++) {
      const sid = `round-${round}`;
      const writer = await SnapshotWriter.begin(target, lease, {
        snapshotId: sid,
        type: 'full',
        parentSnapshotId: null,
      });
      keep(
        'ours',
        await timed(() => copyDiskToTarget({ uri, writer, vmId: 'bench', disk: 'vda', ...TUNING })),
      );
      ourImage = join(targetDir, diskImageKey('bench', sid, 'bench', 'vda'));
      if (round < ROUNDS - 1) await writer.abort();
      keep('nbdcopy-null', await timed(() => run('nbdcopy', [uri, 'null:'])));
      keep('nbdcopy-file', await timed(() => run('nbdcopy', [uri, nbdFile])));
      await rm(nbdFile, { force: true });
      keep(
        'qemu-img',
        await timed(() =>
          run('qemu-img', ['convert', '-t', 'writeback', '-f', 'raw', '-O', 'qcow2', uri, qemuOut]),
        ),
      );
      if (!(VERIFY && round === ROUNDS - 1)) await rm(qemuOut, { force: true });
      // The same with O_DIRECT output (-t none), as ours writes aligned data chunks.
      keep(
        'qemu-img-direct',
        await timed(() =>
          run('qemu-img', ['convert', '-t', 'none', '-f', 'raw', '-O', 'qcow2', uri, qemuDirectOut]),
        ),
      );
      await rm(qemuDirectOut, { force: true });
    }
    if (VERIFY) {
      await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', ourImage, qemuOut]);
      await run('qemu-img', ['check', ourImage]);
      console.log('verify: our image equals qemu-img convert output, qemu-img check clean');
    }
    await rm(qemuOut, { force: true });
    const ourSize = (await stat(ourImage)).size;
    await dom.hv.backups.end(job);
    await lease.release();
    await rm(targetDir, { recursive: true, force: true });

    console.log('\nfull read of one pull-backup export (MiB/s of guest data, best of rounds):');
    for (const [name, ms] of Object.entries(best)) {
      console.log(`  ${name.padEnd(14)} ${fmt(ms / 1000)} s ${fmt(mbps(dataBytes, ms))} MiB/s`);
    }
    console.log(`  our image: ${(ourSize / M).toFixed(1)} MiB for ${(dataBytes / M).toFixed(1)} MiB of data`);
    console.log(`  ratio ours / qemu-img convert: ${(best['qemu-img']! / best.ours!).toFixed(2)}`);
    console.log(`  ratio ours / qemu-img -t none: ${(best['qemu-img-direct']! / best.ours!).toFixed(2)}`);
    const qemuBest = Math.min(best['qemu-img']!, best['qemu-img-direct']!);
    console.log(`  ratio ours / qemu-img (faster of the two): ${(qemuBest / best.ours!).toFixed(2)}`);
    console.log(`  ratio ours / nbdcopy -> file:  ${(best['nbdcopy-file']! / best.ours!).toFixed(2)}`);
    console.log(`  ratio ours / nbdcopy -> null:  ${(best['nbdcopy-null']! / best.ours!).toFixed(2)}`);

    // End to end: full, then an incremental with DIRTY_PERCENT of the disk rewritten.
    const e2eDir = join(work, 'e2e');
    const e2e = await Target.init(await FsBackend.open(e2eDir, { create: true }));
    const scratchDir = join(work, 'scratch');
    let full: Awaited<ReturnType<typeof backupDomain>> | undefined;
    const fullMs = await timed(async () => {
      full = await backupDomain({ hypervisor: dom.hv, domain: dom.name, target: e2e, scratchDir });
    });
    const f = full!.vm.disks[0]!;
    console.log('\nend to end (backupDomain: job, checkpoint, copy, manifest, commit):');
    console.log(
      `  full              ${fmt(fullMs / 1000)} s ${fmt(mbps(f.copiedBytes, fullMs))} MiB/s  copied ${(f.copiedBytes / M).toFixed(1)} MiB`,
    );
    // Incrementals with DIRTY_PERCENT and 5x that rewritten: time grows with the dirty data only.
    let pattern = 0x40;
    const incs: { percent: number; ms: number; copied: number }[] = [];
    for (const percent of [DIRTY_PERCENT, DIRTY_PERCENT * 5]) {
      const pieces = Math.max(1, Math.floor((SIZE * percent) / 100 / M));
      for (let i = 0; i < pieces; i++) {
        const slot = Math.floor(((i + 0.5) * SIZE) / pieces / M) * M;
        await guestWrite(dom, 'vda', pattern++ % 256, Math.min(slot, SIZE - M), M);
      }
      let inc: Awaited<ReturnType<typeof backupDomain>> | undefined;
      const ms = await timed(async () => {
        inc = await backupDomain({ hypervisor: dom.hv, domain: dom.name, target: e2e, scratchDir });
      });
      const d = inc!.vm.disks[0]!;
      incs.push({ percent, ms, copied: d.copiedBytes });
      console.log(
        `  incremental ${String(percent).padStart(3)}% ${fmt(ms / 1000)} s ${fmt(mbps(d.copiedBytes, ms))} MiB/s  copied ${(d.copiedBytes / M).toFixed(1)} MiB (${d.mode}); time / full ${(ms / fullMs).toFixed(3)}, data / full ${(d.copiedBytes / f.copiedBytes).toFixed(3)}`,
      );
    }
    const [a, b] = incs as [(typeof incs)[0], (typeof incs)[0]];
    const perMiB = (b.ms - a.ms) / ((b.copied - a.copied) / M);
    console.log(
      `  incremental cost: ${(a.ms - perMiB * (a.copied / M)).toFixed(0)} ms fixed (virsh, job, commit) + ${perMiB.toFixed(2)} ms per dirty MiB`,
    );
  } finally {
    await dom.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
