import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DiskError } from '../src/disk/errors.js';
import type { RandomAccessFile } from '../src/disk/io.js';
import { openDiskFile } from '../src/disk/open.js';
import { checkQcow2 } from '../src/disk/qcow2/check.js';
import { l1EntryL2Offset, parseQcow2Header, type Qcow2Header } from '../src/disk/qcow2/format.js';
import { qemuImg, qemuIo, tempDir } from './helpers/qemu-img.js';

/**
 * Hardening: real images made by qemu-img, with header fields and table entries mutated by a seeded
 * RNG. Every case must either work or fail with a typed DiskError, quickly and in bounded memory:
 * never a crash, a hang or a huge allocation.
 */

const CASES = 400;
const CASE_TIME_LIMIT_MS = 2000;
/** Data read per case at most (a mutated size can make the virtual disk large). */
const MAX_READ_PER_CASE = 64 * 1024 * 1024;
const MAX_ARRAY_BUFFERS = 768 * 1024 * 1024;

/** A file in memory: fuzz cases never touch the disk. */
class MemoryFile implements RandomAccessFile {
  constructor(
    readonly name: string,
    private readonly bytes: Buffer,
  ) {}
  get size(): number {
    return this.bytes.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    const start = Math.min(offset, this.bytes.length);
    return Buffer.from(this.bytes.subarray(start, Math.min(this.bytes.length, start + length)));
  }
  async close(): Promise<void> {}
}

/** mulberry32: small, seeded, good enough to pick mutations reproducibly. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Seed {
  name: string;
  bytes: Buffer;
  header: Qcow2Header;
  /** Offsets of L2 tables found through the L1 table. */
  l2Tables: number[];
}

let dir: string;
let cleanup: () => Promise<void>;
const seeds: Seed[] = [];
let backing: Buffer;

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-qcow2-fuzz-'));
  const p = (n: string) => join(dir, n);
  await qemuImg('create', '-q', '-f', 'qcow2', p('base.qcow2'), '4M');
  await qemuIo(p('base.qcow2'), ['write -P 0x5a 0 4M']);
  backing = await readFile(p('base.qcow2'));

  const make: [string, string[], string[]][] = [
    ['v3-64k', ['-o', 'cluster_size=65536'], ['write -P 1 0 200k', 'write -z 1M 128k', 'write -P 2 3M 64k']],
    ['v2-4k', ['-o', 'compat=0.10,cluster_size=4096'], ['write -P 3 4k 100k', 'write -P 4 2M 8k']],
    ['xl2-16k', ['-o', 'extended_l2=on,cluster_size=16384'], ['write -P 5 1k 9k', 'write -z 40k 2k']],
    ['rc1-512', ['-o', 'refcount_bits=1,cluster_size=512'], ['write -P 6 0 20k', 'write -z 64k 4k']],
    ['rc64-8k', ['-o', 'refcount_bits=64,cluster_size=8192'], ['write -P 7 8k 30k']],
    ['overlay', ['-b', 'base.qcow2', '-F', 'qcow2'], ['write -P 8 64k 64k', 'write -z 1M 64k']],
  ];
  for (const [name, opts, writes] of make) {
    await qemuImg('create', '-q', '-f', 'qcow2', ...opts, p(`${name}.qcow2`), '4M');
    await qemuIo(p(`${name}.qcow2`), writes);
  }
  await qemuImg(
    'convert',
    '-c',
    '-O',
    'qcow2',
    '-o',
    'cluster_size=4096',
    p('v3-64k.qcow2'),
    p('compressed.qcow2'),
  );
  await qemuImg('snapshot', '-c', 'snap', p('v2-4k.qcow2'));
  await qemuIo(p('v2-4k.qcow2'), ['write -P 9 0 16k']);

  for (const name of [...make.map((m) => m[0]), 'compressed']) {
    const bytes = await readFile(p(`${name}.qcow2`));
    const header = parseQcow2Header(bytes.subarray(0, 2 * 1024 * 1024), bytes.length, name);
    const l1 = bytes.subarray(header.l1TableOffset, header.l1TableOffset + header.l1Size * 8);
    const l2Tables: number[] = [];
    for (let i = 0; i < header.l1Size; i++)
      if (l1EntryL2Offset(l1, i) !== 0) l2Tables.push(l1EntryL2Offset(l1, i));
    seeds.push({ name, bytes, header, l2Tables });
  }
});

after(async () => {
  await cleanup();
});

/** Values that tend to break parsers: edges, powers of two, offsets of real structures. */
function interesting(r: () => number, s: Seed): bigint {
  const h = s.header;
  const pick = [
    0n,
    1n,
    7n,
    8n,
    9n,
    21n,
    22n,
    63n,
    64n,
    511n,
    512n,
    0xffffffffn,
    0x7fffffffn,
    0xffffffffffffffffn,
    1n << 56n,
    1n << 62n,
    1n << 63n,
    BigInt(s.bytes.length),
    BigInt(s.bytes.length - 1),
    BigInt(h.clusterSize),
    BigInt(h.l1TableOffset),
    BigInt(h.refcountTableOffset),
    BigInt(s.l2Tables[0] ?? 0),
    BigInt(Math.floor(r() * 2 ** 32)) * BigInt(Math.floor(r() * 2 ** 32)),
  ];
  return pick[Math.floor(r() * pick.length)];
}

const HEADER_FIELDS: [offset: number, width: 4 | 8][] = [
  [4, 4],
  [8, 8],
  [16, 4],
  [20, 4],
  [24, 8],
  [32, 4],
  [36, 4],
  [40, 8],
  [48, 8],
  [56, 4],
  [60, 4],
  [64, 8],
  [72, 8],
  [80, 8],
  [88, 8],
  [96, 4],
  [100, 4],
  [104, 4],
];

function put(buf: Buffer, offset: number, width: 1 | 4 | 8, v: bigint): void {
  if (offset + width > buf.length) return;
  if (width === 8) buf.writeBigUInt64BE(v & 0xffffffffffffffffn, offset);
  else if (width === 4) buf.writeUInt32BE(Number(v & 0xffffffffn), offset);
  else buf[offset] = Number(v & 0xffn);
}

/** Applies one to three mutations to a copy of the seed. Returns the bytes and a description. */
function mutate(s: Seed, r: () => number): { bytes: Buffer; what: string[] } {
  let bytes = Buffer.from(s.bytes);
  const h = s.header;
  const what: string[] = [];
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const kind = Math.floor(r() * 7);
    const v = interesting(r, s);
    if (kind === 0) {
      const [off, width] = HEADER_FIELDS[Math.floor(r() * HEADER_FIELDS.length)];
      put(bytes, off, width, v);
      what.push(`header@${off}=${v}`);
    } else if (kind === 1 && h.l1Size > 0) {
      const off = h.l1TableOffset + 8 * Math.floor(r() * h.l1Size);
      put(bytes, off, 8, r() < 0.5 ? v : v | (1n << 63n));
      what.push(`l1@${off}=${v}`);
    } else if (kind === 2 && s.l2Tables.length > 0) {
      const table = s.l2Tables[Math.floor(r() * s.l2Tables.length)];
      const off = table + h.l2EntrySize * Math.floor(r() * Math.min(h.l2Entries, 64));
      const flags = [0n, 1n, 1n << 62n, 1n << 63n][Math.floor(r() * 4)];
      put(bytes, off + (r() < 0.15 && h.extendedL2 ? 8 : 0), 8, v | flags);
      what.push(`l2@${off}=${v}|${flags}`);
    } else if (kind === 3) {
      const off = h.refcountTableOffset + 8 * Math.floor(r() * 4);
      put(bytes, off, 8, v);
      what.push(`reftable@${off}=${v}`);
    } else if (kind === 4) {
      // Header extension area: type/length words.
      const off = (h.version === 3 ? h.headerLength : 72) + 4 * Math.floor(r() * 16);
      put(bytes, off, 4, v);
      what.push(`ext@${off}=${v}`);
    } else if (kind === 5) {
      const off = Math.floor(r() * Math.min(bytes.length, 4 * h.clusterSize));
      put(bytes, off, 1, BigInt(Math.floor(r() * 256)));
      what.push(`byte@${off}`);
    } else {
      const len = Math.floor(r() * bytes.length);
      bytes = bytes.subarray(0, len);
      what.push(`truncate@${len}`);
    }
  }
  return { bytes, what };
}

/** Opens, maps, reads every data extent and checks; returns the outcome. */
async function exercise(name: string, bytes: Buffer): Promise<string> {
  const resolver = async (backingName: string) => {
    if (backingName === 'base.qcow2') return new MemoryFile('base.qcow2', backing);
    throw new DiskError('DISK_NOT_FOUND', `backing ${backingName} not found`);
  };
  const disk = await openDiskFile(new MemoryFile(name, bytes), { resolver });
  try {
    let budget = MAX_READ_PER_CASE;
    for (const e of await disk.extents()) {
      if (e.kind !== 'data') continue;
      for (let off = e.offset; off < e.offset + e.length && budget > 0; off += 1024 * 1024) {
        const len = Math.min(1024 * 1024, e.offset + e.length - off, budget);
        const buf = await disk.read(off, len);
        assert.equal(buf.length, len);
        budget -= len;
      }
    }
  } finally {
    await disk.close();
  }
  const r = await checkQcow2(new MemoryFile(name, bytes));
  return r.consistent ? 'ok' : 'ok-inconsistent';
}

test('seed images open, read and check clean', async () => {
  assert.ok(seeds.length >= 7);
  for (const s of seeds) assert.equal(await exercise(s.name, s.bytes), 'ok', s.name);
});

test(`${CASES} mutated images: each works or throws a DiskError, fast and in bounded memory`, async () => {
  const r = rng(0x5eed1e55);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < CASES; i++) {
    const s = seeds[i % seeds.length];
    const { bytes, what } = mutate(s, r);
    const label = `case ${i} (${s.name}: ${what.join(', ')})`;
    const t0 = performance.now();
    let outcome: string;
    try {
      outcome = await exercise(s.name, bytes);
    } catch (err) {
      if (!(err instanceof DiskError)) {
        assert.fail(`${label}: threw ${(err as Error)?.stack ?? String(err)} instead of a DiskError`);
      }
      outcome = err.code;
    }
    const ms = performance.now() - t0;
    assert.ok(ms < CASE_TIME_LIMIT_MS, `${label}: took ${ms.toFixed(0)} ms`);
    assert.ok(process.memoryUsage().arrayBuffers < MAX_ARRAY_BUFFERS, `${label}: memory grew unbounded`);
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  // The mutations must exercise both paths: images that still work and typed refusals.
  assert.ok(
    (outcomes.get('ok') ?? 0) + (outcomes.get('ok-inconsistent') ?? 0) > 20,
    JSON.stringify([...outcomes]),
  );
  assert.ok((outcomes.get('QCOW2_MALFORMED') ?? 0) > 20, JSON.stringify([...outcomes]));
  console.log('fuzz outcomes', JSON.stringify(Object.fromEntries(outcomes)));
});
