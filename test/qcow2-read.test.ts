import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Extent } from '../src/disk/extent.js';
import { openDiskImage } from '../src/disk/open.js';
import { ChainReader } from '../src/disk/qcow2/chain.js';
import { qemuImg, qemuImgMap, qemuIo, qemuRawSha256, tempDir } from './helpers/qemu-img.js';

/**
 * Oracle tests: images made by qemu-img/qemu-io in many configurations must read byte-identically
 * to `qemu-img convert -O raw` and map the same data ranges as `qemu-img map`.
 */

const MiB = 1024 * 1024;
let dir: string;
let cleanup: () => Promise<void>;
let seq = 0;

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-qcow2-read-'));
});
after(async () => {
  await cleanup();
});

function path(name: string): string {
  return join(dir, `${seq++}-${name}`);
}

/** A raw file of `size` bytes: random data with all-zero stretches, so convert leaves holes. */
async function patternedRaw(size: number, seed: number): Promise<string> {
  const buf = Buffer.alloc(size);
  const block = 48 * 1024; // not a power of two: data straddles cluster edges
  for (let off = 0, i = seed; off < size; off += block, i++) {
    if (i % 3 !== 0) randomBytes(Math.min(block, size - off)).copy(buf, off);
  }
  const p = path('src.raw');
  await writeFile(p, buf);
  return p;
}

/** Byte ranges qemu-img map reports as data, coalesced. */
function ranges(list: { start: number; end: number }[]): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  for (const r of list) {
    const last = out[out.length - 1];
    if (last && last.end === r.start) last.end = r.end;
    else if (r.end > r.start) out.push({ ...r });
  }
  return out;
}

const ourData = (ext: Extent[]) =>
  ranges(ext.filter((e) => e.kind === 'data').map((e) => ({ start: e.offset, end: e.offset + e.length })));

/** Reads `image` with our code and compares content and data map with qemu-img. */
async function assertMatchesQemu(image: string, opts: { rawBacking?: boolean } = {}): Promise<void> {
  const disk = await openDiskImage(image);
  try {
    const hash = createHash('sha256');
    for (let off = 0; off < disk.virtualSize; off += 4 * MiB) {
      hash.update(await disk.read(off, Math.min(4 * MiB, disk.virtualSize - off)));
    }
    assert.equal(
      hash.digest('hex'),
      await qemuRawSha256(image, dir),
      `${image}: content differs from qemu-img`,
    );

    const ours = ourData(await disk.extents());
    const theirs = ranges(
      (await qemuImgMap(image))
        .filter((e) => e.data)
        .map((e) => ({ start: e.start, end: e.start + e.length })),
    );
    if (opts.rawBacking) {
      // qemu reports every non-hole byte of a raw file as data; we report only chunks that are not zeros.
      for (const r of ours) {
        assert.ok(
          theirs.some((t) => t.start <= r.start && r.end <= t.end),
          `${image}: our data range ${r.start}-${r.end} is not data for qemu`,
        );
      }
    } else {
      assert.deepEqual(ours, theirs, `${image}: data map differs from qemu-img map`);
    }
  } finally {
    await disk.close();
  }
}

/** Writes done on most images: unaligned data, a zero write, data at the end. */
function standardWrites(size: number): string[] {
  return [
    'write -P 0x11 4096 70000',
    `write -P 0x22 ${size / 2 - 1000} 3000`,
    `write -z ${size / 4} 131072`,
    `write -P 0x33 ${size - 65536} 65536`,
  ];
}

describe('qcow2 read: cluster sizes', () => {
  for (let bits = 9; bits <= 21; bits++) {
    const cs = 2 ** bits;
    test(`cluster_size ${cs}`, async () => {
      const size = bits >= 20 ? 32 * MiB : 8 * MiB;
      const src = await patternedRaw(2 * MiB, bits);
      const img = path(`cs${cs}.qcow2`);
      await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${cs}`, src, img);
      await qemuImg('resize', img, String(size));
      await qemuIo(img, standardWrites(size));
      await assertMatchesQemu(img);
    });
  }
});

describe('qcow2 read: compat and refcount widths', () => {
  for (const compat of ['0.10', '1.1']) {
    test(`compat=${compat}`, async () => {
      const img = path(`compat${compat}.qcow2`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, img, '4M');
      await qemuIo(img, [...standardWrites(4 * MiB), 'write -z -u 0 65536']);
      await assertMatchesQemu(img);
    });
  }
  for (const bits of [1, 2, 4, 8, 16, 32, 64]) {
    test(`refcount_bits=${bits}`, async () => {
      const img = path(`rc${bits}.qcow2`);
      await qemuImg(
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        `refcount_bits=${bits},cluster_size=4096`,
        img,
        '4M',
      );
      await qemuIo(img, standardWrites(4 * MiB));
      await assertMatchesQemu(img);
    });
  }
});

describe('qcow2 read: compressed clusters', () => {
  for (const cs of [4096, 65536, 2 * MiB]) {
    test(`qemu-img convert -c, cluster_size ${cs}`, async () => {
      const src = await patternedRaw(5 * MiB + 12345, cs);
      const plain = path('plain.qcow2');
      await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', src, plain);
      await qemuIo(plain, ['write -P 0x44 0 1M']); // compressible clusters too
      const img = path(`c${cs}.qcow2`);
      await qemuImg('convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, plain, img);
      await assertMatchesQemu(img);
    });
  }
});

describe('qcow2 read: zero clusters', () => {
  for (const [name, cmds] of [
    ['write -z (keeps allocation)', ['write -P 0x55 0 1M', 'write -z 128k 256k']],
    ['write -z -u (unmaps)', ['write -P 0x55 0 1M', 'write -z -u 128k 256k']],
    ['discard', ['write -P 0x55 0 1M', 'discard 512k 128k']],
  ] as const) {
    test(name, async () => {
      const base = path('zbase.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', base, '2M');
      await qemuIo(base, ['write -P 0x66 0 2M']);
      const img = path('z.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', img, '2M');
      await qemuIo(img, [...cmds]);
      await assertMatchesQemu(img);
    });
  }
});

describe('qcow2 read: extended L2 (subclusters)', () => {
  for (const cs of [16384, 65536, 2 * MiB]) {
    test(`extended_l2=on, cluster_size ${cs}`, async () => {
      const base = path('xbase.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', base, '8M');
      await qemuIo(base, ['write -P 0x77 0 8M']);
      const img = path(`x${cs}.qcow2`);
      await qemuImg(
        'create',
        '-q',
        '-f',
        'qcow2',
        '-b',
        base,
        '-F',
        'qcow2',
        '-o',
        `extended_l2=on,cluster_size=${cs}`,
        img,
      );
      const sc = cs / 32;
      await qemuIo(img, [
        `write -P 0x12 ${sc} ${sc * 3}`,
        `write -z ${sc * 7} ${sc * 2}`,
        `write -z -u ${cs + sc * 5} ${sc}`,
        `write -P 0x13 ${2 * cs + 100} 1000`,
        `write -P 0x14 ${4 * MiB} ${cs}`,
      ]);
      await assertMatchesQemu(img);
    });
  }
});

describe('qcow2 read: backing chains', () => {
  test('chains of 1 to 20 layers with relative and absolute names', async () => {
    const sub = join(dir, 'chain');
    await mkdir(join(sub, 'deeper'), { recursive: true });
    const names: string[] = [];
    for (let i = 0; i < 20; i++) {
      // Alternate directories and name styles: relative, absolute, relative across directories.
      const p = join(i % 2 ? join(sub, 'deeper') : sub, `layer${i}.qcow2`);
      const args = ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${i % 3 === 0 ? 65536 : 4096}`];
      if (i > 0) {
        const prev = names[i - 1];
        args.push('-b', i % 4 === 1 ? prev : relative(dirname(p), prev), '-F', 'qcow2');
      }
      // Sizes grow along the chain: upper layers read zeros past a smaller backing's end.
      args.push(p, String((4 + Math.floor(i / 5)) * MiB));
      await qemuImg(...args);
      await qemuIo(p, [
        `write -P ${i + 1} ${i * 200000} 150000`,
        `write -z ${(i * 300000) % (3 * MiB)} 65536`,
      ]);
      names.push(p);
    }
    for (const depth of [1, 2, 5, 13, 20]) {
      await assertMatchesQemu(names[depth - 1]);
    }
    const chain = await openDiskImage(names[19]);
    assert.ok(chain instanceof ChainReader);
    assert.equal(chain.layers.length, 20);
    assert.ok(
      chain.layers.some((l) => l.nameInChild?.startsWith('../')),
      'relative names across directories',
    );
    assert.ok(
      chain.layers.some((l) => l.nameInChild?.startsWith('/')),
      'absolute names',
    );
    const depths = new Set((await chain.extents()).map((e) => e.depth));
    assert.ok(depths.size > 5, 'data comes from many layers');
    await chain.close();
  });

  test('raw backing file (smaller than the overlay)', async () => {
    const raw = await patternedRaw(3 * MiB, 7);
    const img = path('over-raw.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', raw, '-F', 'raw', img, '6M');
    await qemuIo(img, ['write -P 0x99 1M 100k', 'write -z 2M 64k', 'write -P 0x98 5M 64k']);
    await assertMatchesQemu(img, { rawBacking: true });
  });

  test('raw image on its own', async () => {
    const raw = await patternedRaw(3 * MiB + 512, 9);
    await assertMatchesQemu(raw, { rawBacking: true });
  });
});

describe('qcow2 read: states a reader must tolerate', () => {
  test('internal snapshots: only the active L1 table is read', async () => {
    const img = path('snap.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', img, '4M');
    await qemuIo(img, ['write -P 0x21 0 1M']);
    await qemuImg('snapshot', '-c', 'before', img);
    await qemuIo(img, ['write -P 0x22 512k 1M', 'write -z 0 64k']);
    await assertMatchesQemu(img);
  });

  test('dirty bit and lazy refcounts', async () => {
    const img = path('lazy.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', img, '4M');
    await qemuIo(img, standardWrites(4 * MiB));
    const expected = await qemuRawSha256(img, dir);
    const bytes = await readFile(img);
    bytes[79] |= 1; // incompatible feature bit 0: dirty
    await writeFile(img, bytes);
    const disk = await openDiskImage(img);
    assert.ok(disk instanceof ChainReader && disk.top.header.dirty && disk.top.header.lazyRefcounts);
    const hash = createHash('sha256').update(await disk.read(0, disk.virtualSize));
    await disk.close();
    assert.equal(hash.digest('hex'), expected);
  });

  test('a backing file without a format extension is probed', async () => {
    const base = path('probe-base.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, '2M');
    await qemuIo(base, ['write -P 0x31 0 1M']);
    const img = path('probe-top.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', img);
    await qemuIo(img, ['write -P 0x32 64k 64k']);
    const bytes = await readFile(img);
    const at = bytes.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
    bytes.writeUInt32BE(0x0badf00d, at); // the backing-format extension becomes an unknown one
    await writeFile(img, bytes);
    await assertMatchesQemu(img);
  });
});
