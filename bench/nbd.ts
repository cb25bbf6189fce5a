/**
 * Reads a qemu-nbd export end to end with NbdClient and with nbdcopy (to null:), same data, same
 * run, and prints MB/s and the ratio. The export is a raw file of random bytes (all data, no holes),
 * so both tools move every byte over the unix socket.
 *
 *   node --import tsx bench/nbd.ts [SIZE_MIB=1024] [ROUNDS=3]
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdClient } from '../src/nbd/index.js';
import { makeTempDir, removeDir, startQemuNbd } from '../test/nbd-servers.js';

const exec = promisify(execFile);
const MiB = 1 << 20;

async function makeImage(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const block = 16 * MiB;
    for (let at = 0; at < size; at += block)
      await fh.write(randomBytes(Math.min(block, size - at)), 0, undefined, at);
  } finally {
    await fh.close();
  }
}

async function readAllWithClient(uri: string, maxInFlight: number, requestSize: number): Promise<number> {
  const c = await NbdClient.connect(uri, { maxInFlight, maxRequestSize: requestSize, metaContexts: [] });
  try {
    // Several multi-request reads outstanding keep the pipeline full while results are dropped.
    // Each worker reuses one buffer, as a datamover streaming into a writer would.
    const window = 16 * MiB;
    let next = 0;
    let bytes = 0;
    const worker = async () => {
      const buf = Buffer.allocUnsafe(window);
      while (next < c.size) {
        const at = next;
        next += window;
        const n = Math.min(window, c.size - at);
        await c.readInto(at, buf.subarray(0, n));
        bytes += n;
      }
    };
    await Promise.all([worker(), worker()]);
    return bytes;
  } finally {
    await c.close();
  }
}

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e9, r];
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 1024);
  const rounds = Number(process.argv[3] ?? 3);
  const size = sizeMiB * MiB;
  const dir = await makeTempDir('lifeboat-bench-nbd-');
  const image = join(dir, 'bench.raw');
  console.log(`creating ${sizeMiB} MiB of random data...`);
  await makeImage(image, size);
  const server = await startQemuNbd({
    image,
    format: 'raw',
    listen: { socket: join(dir, 'nbd.sock') },
    readOnly: true,
    pidFile: join(dir, 'qemu-nbd.pid'),
  });
  try {
    const mbps = (seconds: number) => (size / 1e6 / seconds).toFixed(0);
    const runs: Record<string, () => Promise<unknown>> = {
      NbdClient: async () => {
        const bytes = await readAllWithClient(server.uri, 16, 2 * MiB);
        if (bytes !== size) throw new Error(`read ${bytes} bytes, expected ${size}`);
      },
      nbdcopy: () => exec('nbdcopy', [server.uri, 'null:']),
      // nbdcopy on one connection and one thread: the same shape as one NbdClient.
      'nbdcopy -C1 -T1': () => exec('nbdcopy', ['--connections=1', '--threads=1', server.uri, 'null:']),
    };
    const best: Record<string, number> = {};
    for (let r = 1; r <= rounds; r++) {
      const line: string[] = [];
      for (const [name, fn] of Object.entries(runs)) {
        const [t] = await time(fn);
        best[name] = Math.min(best[name] ?? Number.POSITIVE_INFINITY, t);
        line.push(`${name} ${mbps(t)} MB/s`);
      }
      console.log(`round ${r}: ${line.join(', ')}`);
    }
    console.log(
      `best of ${rounds}: ${Object.entries(best)
        .map(([name, t]) => `${name} ${mbps(t)} MB/s`)
        .join(', ')}`,
    );
    console.log(
      `ratio NbdClient/nbdcopy ${(best.nbdcopy / best.NbdClient).toFixed(2)}, ` +
        `NbdClient/(nbdcopy -C1 -T1) ${(best['nbdcopy -C1 -T1'] / best.NbdClient).toFixed(2)}`,
    );
  } finally {
    await server.stop();
    await removeDir(dir);
  }
}

await main();
