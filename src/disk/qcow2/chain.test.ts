import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskError } from '../errors.js';
import { MemoryFile } from '../memory-file.js';
import { type BackingResolver, ChainReader } from './chain.js';
import { buildTestQcow2 } from './test-image.js';

const KiB64 = 65536;

/** Resolves backing names among in-memory files. */
function memoryResolver(files: Record<string, Buffer>): BackingResolver {
  return async (name) => {
    const bytes = files[name];
    if (!bytes) throw new DiskError('DISK_NOT_FOUND', `${name}: no such file`);
    return new MemoryFile(name, bytes);
  };
}

const isCode = (code: string) => (e: unknown) => e instanceof DiskError && e.code === code;

test('merged map and reads over a qcow2 -> qcow2 -> raw chain, smaller backings read zeros', async () => {
  const raw = Buffer.alloc(3 * KiB64, 0x33); // 192 KiB raw
  const mid = buildTestQcow2({
    size: 4 * KiB64,
    backing: 'raw.img',
    backingFormat: 'raw',
    data: { 1: 0x22 },
    zero: [2],
  });
  const top = buildTestQcow2({ size: 6 * KiB64, backing: 'mid.qcow2', data: { 0: 0x11 } });
  const chain = await ChainReader.open(new MemoryFile('top.qcow2', top), {
    resolver: memoryResolver({ 'mid.qcow2': mid, 'raw.img': raw }),
  });
  assert.deepEqual(
    chain.layers.map((l) => l.format),
    ['qcow2', 'qcow2', 'raw'],
  );
  assert.deepEqual(await chain.extents(), [
    { offset: 0, length: KiB64, kind: 'data', depth: 0 },
    { offset: KiB64, length: KiB64, kind: 'data', depth: 1 },
    { offset: 2 * KiB64, length: KiB64, kind: 'zero', depth: 1 },
    { offset: 3 * KiB64, length: KiB64, kind: 'unallocated', depth: 1 },
    { offset: 4 * KiB64, length: 2 * KiB64, kind: 'unallocated', depth: 0 },
  ]);
  const all = await chain.read(0, 6 * KiB64);
  const expect = Buffer.concat([
    Buffer.alloc(KiB64, 0x11),
    Buffer.alloc(KiB64, 0x22),
    Buffer.alloc(3 * KiB64 + KiB64, 0),
  ]);
  assert.ok(all.equals(expect));
  // A read straddling layers.
  assert.ok(
    (await chain.read(KiB64 - 10, 20)).equals(
      Buffer.concat([Buffer.alloc(10, 0x11), Buffer.alloc(10, 0x22)]),
    ),
  );
  await assert.rejects(chain.read(6 * KiB64 - 1, 2), isCode('DISK_RANGE'));
  await chain.close();
});

test('the raw bottom layer supplies data where no qcow2 layer has any', async () => {
  const raw = Buffer.alloc(2 * KiB64);
  raw.fill(0x44, KiB64 + 100, KiB64 + 200);
  const top = buildTestQcow2({ size: 2 * KiB64, backing: 'raw.img', backingFormat: 'raw' });
  const chain = await ChainReader.open(new MemoryFile('top', top), {
    resolver: memoryResolver({ 'raw.img': raw }),
  });
  assert.deepEqual(await chain.extents(), [
    { offset: 0, length: KiB64, kind: 'zero', depth: 1 },
    { offset: KiB64, length: KiB64, kind: 'data', depth: 1 },
  ]);
  assert.ok((await chain.read(0, 2 * KiB64)).equals(raw));
  await chain.close();
});

test('loops are refused with CHAIN_LOOP', async () => {
  const a = buildTestQcow2({ size: KiB64, backing: 'b' });
  const b = buildTestQcow2({ size: KiB64, backing: 'a' });
  await assert.rejects(
    ChainReader.open(new MemoryFile('a', a), { resolver: memoryResolver({ a, b }) }),
    isCode('CHAIN_LOOP'),
  );
  const self = buildTestQcow2({ size: KiB64, backing: 'self' });
  await assert.rejects(
    ChainReader.open(new MemoryFile('self', self), { resolver: memoryResolver({ self }) }),
    isCode('CHAIN_LOOP'),
  );
});

test('absurdly deep chains are refused with CHAIN_TOO_DEEP', async () => {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < 8; i++)
    files[`l${i}`] = buildTestQcow2({ size: KiB64, backing: i < 7 ? `l${i + 1}` : undefined });
  const open = (maxDepth: number) =>
    ChainReader.open(new MemoryFile('l0', files.l0), { resolver: memoryResolver(files), maxDepth });
  await assert.rejects(open(7), isCode('CHAIN_TOO_DEEP'));
  const ok = await open(8);
  assert.equal(ok.layers.length, 8);
  await ok.close();
});

test('missing backing files and unsupported backing formats fail with typed errors', async () => {
  const top = buildTestQcow2({ size: KiB64, backing: 'gone.qcow2' });
  await assert.rejects(
    ChainReader.open(new MemoryFile('top', top), { resolver: memoryResolver({}) }),
    isCode('DISK_NOT_FOUND'),
  );
  const vmdk = buildTestQcow2({ size: KiB64, backing: 'x.vmdk', backingFormat: 'vmdk' });
  await assert.rejects(
    ChainReader.open(new MemoryFile('top', vmdk), {
      resolver: memoryResolver({ 'x.vmdk': Buffer.alloc(512) }),
    }),
    isCode('QCOW2_UNSUPPORTED'),
  );
});
