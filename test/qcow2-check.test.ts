import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { LocalFile } from '../src/disk/io.js';
import { type CheckResult, checkQcow2 } from '../src/disk/qcow2/check.js';
import {
  l1EntryL2Offset,
  parseQcow2Header,
  type Qcow2Header,
  readRefcount,
  refcountTableEntry,
  writeRefcount,
} from '../src/disk/qcow2/format.js';
import { qemuImg, qemuIo, tempDir } from './helpers/qemu-img.js';

/** Our check against `qemu-img check` on clean images and on images damaged on purpose. */

let dir: string;
let cleanup: () => Promise<void>;
let n = 0;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-qcow2-check-'));
});
after(async () => {
  await cleanup();
});

/** Exit code of `qemu-img check`: 0 clean, 2 corrupt, 3 leaks only. */
async function qemuCheckExit(image: string): Promise<number> {
  try {
    await promisify(execFile)('qemu-img', ['check', image]);
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

async function ours(image: string): Promise<CheckResult> {
  const f = await LocalFile.open(image);
  try {
    return await checkQcow2(f);
  } finally {
    await f.close();
  }
}

async function image(opts: string, writes: string[]): Promise<string> {
  const p = join(dir, `img${n++}.qcow2`);
  await qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, p, '4M');
  await qemuIo(p, writes);
  return p;
}

interface Parsed {
  bytes: Buffer;
  h: Qcow2Header;
  l2: number;
}

async function parse(p: string): Promise<Parsed> {
  const bytes = await readFile(p);
  const h = parseQcow2Header(bytes.subarray(0, 2 * 1024 * 1024), bytes.length, p);
  const l1 = bytes.subarray(h.l1TableOffset, h.l1TableOffset + h.l1Size * 8);
  return { bytes, h, l2: l1EntryL2Offset(l1, 0) };
}

/** The refcount block holding the refcount of host cluster `cluster`. */
function refcountBlock(p: Parsed, cluster: number): { block: Buffer; index: number } {
  const table = p.bytes.subarray(p.h.refcountTableOffset, p.h.refcountTableOffset + p.h.clusterSize);
  const blockOffset = refcountTableEntry(table, Math.floor(cluster / p.h.refcountBlockEntries));
  return {
    block: p.bytes.subarray(blockOffset, blockOffset + p.h.clusterSize),
    index: cluster % p.h.refcountBlockEntries,
  };
}

describe('qcow2 check', () => {
  test('clean images are consistent for us and for qemu-img', async () => {
    const images = [
      await image('cluster_size=65536', ['write -P 1 0 1M', 'write -z 2M 64k']),
      await image('compat=0.10,cluster_size=4096', ['write -P 1 0 100k']),
      await image('refcount_bits=1,cluster_size=512', ['write -P 1 0 10k']),
      await image('refcount_bits=64', ['write -P 1 0 10k']),
      await image('extended_l2=on', ['write -P 1 1k 7k', 'write -z 100k 4k']),
    ];
    const snap = await image('cluster_size=4096', ['write -P 1 0 1M']);
    await qemuImg('snapshot', '-c', 's1', snap);
    await qemuIo(snap, ['write -P 2 512k 1M']);
    await qemuImg('snapshot', '-c', 's2', snap);
    await qemuIo(snap, ['write -P 3 0 64k']);
    const bitmaps = await image('cluster_size=65536', ['write -P 1 0 1M']);
    await qemuImg('bitmap', '--add', bitmaps, 'b0');
    await qemuImg('bitmap', '--add', '-g', '65536', bitmaps, 'b1');
    const compressed = join(dir, 'compressed.qcow2');
    await qemuImg('convert', '-c', '-O', 'qcow2', snap, compressed);
    for (const p of [...images, snap, bitmaps, compressed]) {
      assert.equal(await qemuCheckExit(p), 0, `${p}: qemu-img check`);
      const r = await ours(p);
      assert.ok(r.consistent, `${p}: ${JSON.stringify(r.findings)}`);
      assert.ok(r.allocatedClusters > 0);
    }
  });

  test('a leaked cluster is a leak, not a corruption (qemu-img check exit 3)', async () => {
    const p = await image('cluster_size=4096', ['write -P 1 0 64k']);
    const parsed = await parse(p);
    // Append one cluster and give it a refcount nobody accounts for.
    const cluster = Math.ceil(parsed.bytes.length / 4096);
    const bytes = Buffer.concat([parsed.bytes, Buffer.alloc(cluster * 4096 + 4096 - parsed.bytes.length)]);
    const again = { ...parsed, bytes };
    const { block, index } = refcountBlock(again, cluster);
    writeRefcount(block, index, parsed.h.refcountOrder, 1);
    await writeFile(p, bytes);
    assert.equal(await qemuCheckExit(p), 3);
    const r = await ours(p);
    assert.equal(r.corruptions, 0, JSON.stringify(r.findings));
    assert.equal(r.leaks, 1);
    assert.equal(r.consistent, false);
  });

  test('a data cluster referenced twice is a corruption (qemu-img check exit 2)', async () => {
    const p = await image('cluster_size=4096', ['write -P 1 0 64k']);
    const parsed = await parse(p);
    const l2 = parsed.bytes.subarray(parsed.l2, parsed.l2 + 4096);
    l2.copy(l2, 8, 0, 8); // guest cluster 1 now points at guest cluster 0's host cluster
    await writeFile(p, parsed.bytes);
    assert.equal(await qemuCheckExit(p), 2);
    const r = await ours(p);
    assert.ok(r.corruptions >= 1);
    assert.ok(
      r.findings.some((f) => /referenced more than once/.test(f.message)),
      JSON.stringify(r.findings),
    );
  });

  test('a refcount of zero for a used cluster is a corruption', async () => {
    const p = await image('cluster_size=4096,refcount_bits=4', ['write -P 1 0 64k']);
    const parsed = await parse(p);
    const { block, index } = refcountBlock(parsed, parsed.l2 / 4096);
    assert.equal(readRefcount(block, index, 2), 1);
    writeRefcount(block, index, 2, 0);
    await writeFile(p, parsed.bytes);
    assert.equal(await qemuCheckExit(p), 2);
    const r = await ours(p);
    assert.ok(r.corruptions >= 1);
  });

  test('an L2 entry past the end of the file is a corruption', async () => {
    const p = await image('cluster_size=4096', ['write -P 1 0 64k']);
    const parsed = await parse(p);
    parsed.bytes.writeBigUInt64BE((1n << 63n) | BigInt(1024 * 1024 * 1024), parsed.l2 + 16);
    await writeFile(p, parsed.bytes);
    const r = await ours(p);
    assert.ok(r.findings.some((f) => f.severity === 'corruption' && /beyond the end/.test(f.message)));
  });
});
