import assert from 'node:assert/strict';
import { copyFile, mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Extent } from '../src/disk/extent.js';
import { FileSink } from '../src/disk/file-sink.js';
import { LocalFile } from '../src/disk/io.js';
import { bufferReaderFor } from '../src/disk/qcow2/chain-buffer-reader.js';
import { writeQcow2ByScanning } from '../src/disk/qcow2/scan-writer.js';
import { writeQcow2 } from '../src/disk/qcow2/writer.js';
import { RawDisk } from '../src/disk/raw.js';
import { writeRawSparse } from '../src/disk/raw-writer.js';
import { qemuImg, qemuImgInfo, qemuImgMap, qemuIo, tempDir } from './helpers/qemu-img.js';
import { assertCheckClean, assertSameContent, makeSparseRaw } from './helpers/sparse-fixtures.js';

const K = 1024;
const M = 1024 * K;

/** Unaligned data ranges (edges inside clusters for every cluster size we test). */
const RANGES: [number, number][] = [
  [1000, 70000],
  [300 * K + 7, 3 * K],
  [3 * M - 100, 5 * M + 333],
  [13 * M + 512, 512],
  [20 * M - 4000, 4000], // ends exactly at the (unaligned) virtual size
];
const SIZE = 20 * M;

let dir: string;
let cleanup: () => Promise<void>;
let srcPath: string;
let extents: Extent[];

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-qcow2-write-'));
  srcPath = join(dir, 'src.raw');
  extents = await makeSparseRaw(srcPath, SIZE, RANGES);
});
after(() => cleanup());

async function writeImage(
  out: string,
  input: Omit<Parameters<typeof writeQcow2>[0], 'source'>,
  src = srcPath,
) {
  const source = await LocalFile.open(src);
  const sink = await FileSink.create(out);
  try {
    const progress: number[] = [];
    const r = await writeQcow2({ ...input, source }, sink, {
      onProgress: (d) => progress.push(d),
      chunkBytes: M,
    });
    await sink.close();
    assert.equal(progress[progress.length - 1], r.layout.fileSize);
    assert.equal((await stat(out)).size, r.layout.fileSize);
    return r;
  } catch (err) {
    await sink.abort();
    throw err;
  } finally {
    await source.close();
  }
}

describe('Qcow2Writer (qemu-img as the oracle)', () => {
  for (const clusterSize of [512, 4096, 65536, 2 * M]) {
    it(`writes a standalone image qemu-img reads identically (cluster ${clusterSize})`, async () => {
      const out = join(dir, `standalone-${clusterSize}.qcow2`);
      await writeImage(out, { virtualSize: SIZE, extents, clusterSize });
      await assertCheckClean(out);
      await assertSameContent(srcPath, out, 'raw', 'qcow2');
      const info = await qemuImgInfo(out);
      assert.equal(info['virtual-size'], SIZE);
      assert.equal(info['cluster-size'], clusterSize);
    });
  }

  it('writes an empty image and an image of a virtual size that is not a cluster multiple', async () => {
    const empty = join(dir, 'empty.qcow2');
    await writeImage(empty, {
      virtualSize: SIZE,
      extents: [{ offset: 0, length: SIZE, kind: 'unallocated' }],
    });
    await assertCheckClean(empty);
    const odd = join(dir, 'odd.qcow2');
    const oddSize = 3 * M + 1536;
    const oddSrc = join(dir, 'odd.raw');
    const oddExtents = await makeSparseRaw(oddSrc, oddSize, [[3 * M, 1536]]);
    await writeImage(odd, { virtualSize: oddSize, extents: oddExtents }, oddSrc);
    await assertCheckClean(odd);
    await assertSameContent(oddSrc, odd, 'raw', 'qcow2');
  });

  it('writes an overlay: zero extents shadow the backing, unallocated ones fall through', async () => {
    // base: pattern everywhere qemu-io writes; final = base + new data + zeroed ranges.
    const base = join(dir, 'base.qcow2');
    await qemuImg('create', '-f', 'qcow2', base, String(SIZE));
    await qemuIo(base, ['write -P 0x11 0 8M', 'write -P 0x22 12M 8M']);
    const final = join(dir, 'final.raw');
    await qemuImg('convert', '-O', 'raw', base, final);
    const overlayExtents: Extent[] = [
      { offset: 0, length: 64 * K, kind: 'unallocated' },
      { offset: 64 * K, length: 128 * K, kind: 'zero' }, // whole clusters: zero flag
      { offset: 192 * K, length: 1000, kind: 'data' }, // partial cluster: rest comes from the source
      { offset: 192 * K + 1000, length: 2 * M, kind: 'unallocated' },
      { offset: 192 * K + 1000 + 2 * M, length: 5000, kind: 'zero' }, // zero mixed with unallocated
      { offset: 192 * K + 6000 + 2 * M, length: 4 * M, kind: 'unallocated' },
      { offset: 192 * K + 6000 + 6 * M, length: 3 * M, kind: 'data' },
      { offset: 192 * K + 6000 + 9 * M, length: SIZE - (192 * K + 6000 + 9 * M), kind: 'unallocated' },
    ];
    const fh = await open(final, 'r+');
    for (const e of overlayExtents) {
      if (e.kind === 'unallocated') continue;
      const buf = e.kind === 'zero' ? Buffer.alloc(e.length) : Buffer.alloc(e.length, 0x5a);
      await fh.write(buf, 0, buf.length, e.offset);
    }
    await fh.close();
    const overlay = join(dir, 'overlay.qcow2');
    await writeImage(
      overlay,
      { virtualSize: SIZE, extents: overlayExtents, backing: { name: 'base.qcow2', format: 'qcow2' } },
      final,
    );
    await assertCheckClean(overlay);
    await assertSameContent(final, overlay, 'raw', 'qcow2');
    const info = await qemuImgInfo(overlay);
    assert.equal(info['backing-filename'], 'base.qcow2');
    assert.equal(info['backing-filename-format'], 'qcow2');
    const { stdout } = await qemuImg('info', '--backing-chain', overlay);
    assert.match(stdout, /image: .*base\.qcow2/);
    const map = await qemuImgMap(overlay);
    const zeroTop = map.find((m) => m.start === 64 * K);
    assert.ok(zeroTop && zeroTop.depth === 0 && zeroTop.zero && !zeroTop.data, JSON.stringify(map));
    // Moving the pair elsewhere keeps the chain working: the backing name is relative.
    const moved = join(dir, 'moved');
    await mkdir(moved);
    await copyFile(base, join(moved, 'base.qcow2'));
    await copyFile(overlay, join(moved, 'overlay.qcow2'));
    await assertSameContent(final, join(moved, 'overlay.qcow2'), 'raw', 'qcow2');
  });

  it('reading into recycled buffers (a reader and a lending sink) writes the very same bytes', async () => {
    // Small chunks over many short runs: output chunks gather clusters of several guest runs, and
    // the last cluster is cut by the (unaligned) virtual size.
    for (const clusterSize of [4096, 65536]) {
      const plain = join(dir, `plain-${clusterSize}.qcow2`);
      await writeImage(plain, { virtualSize: SIZE, extents, clusterSize });
      const pooled = join(dir, `pooled-${clusterSize}.qcow2`);
      const disk = await RawDisk.open(srcPath);
      const sink = await FileSink.create(pooled);
      try {
        await writeQcow2(
          { virtualSize: SIZE, extents, clusterSize, source: disk, reader: bufferReaderFor(disk) },
          sink,
          { chunkBytes: 3 * clusterSize, readAhead: 3 },
        );
        await sink.close();
      } finally {
        await disk.close();
      }
      assert.ok((await readFile(pooled)).equals(await readFile(plain)), `cluster ${clusterSize}`);
      await assertCheckClean(pooled);
    }
  });

  it('leaves nothing behind when the write fails', async () => {
    const out = join(dir, 'failing.qcow2');
    const failing = { read: async () => Promise.reject(new Error('source broke')) };
    const sink = await FileSink.create(out);
    await assert.rejects(writeQcow2({ virtualSize: SIZE, extents, source: failing }, sink), /source broke/);
    await sink.abort();
    const left = (await readdir(dir)).filter((n) => n.includes('failing'));
    assert.deepEqual(left, []);
  });
});

describe('writeQcow2ByScanning (raw sources, one read pass)', () => {
  for (const clusterSize of [512, 65536, 2 * M]) {
    it(`finds the data while copying it (cluster ${clusterSize})`, async () => {
      const out = join(dir, `scan-${clusterSize}.qcow2`);
      const src = await RawDisk.open(srcPath);
      let last = 0;
      try {
        await writeQcow2ByScanning(src, out, { clusterSize, chunkBytes: M, onProgress: (d) => (last = d) });
      } finally {
        await src.close();
      }
      assert.equal(last, SIZE);
      await assertCheckClean(out);
      await assertSameContent(srcPath, out, 'raw', 'qcow2');
    });
  }

  it('handles an all-zero source, an empty one and a size that is not a cluster multiple', async () => {
    const zeros = join(dir, 'zeros.raw');
    await makeSparseRaw(zeros, 5 * M, []);
    const odd = join(dir, 'odd-scan.raw');
    await makeSparseRaw(odd, 3 * M + 1536, [[3 * M + 1024, 512]]);
    const empty = join(dir, 'empty-scan.raw');
    await makeSparseRaw(empty, 0, []);
    for (const file of [zeros, odd, empty]) {
      const out = `${file}.qcow2`;
      const src = await RawDisk.open(file);
      try {
        await writeQcow2ByScanning(src, out);
      } finally {
        await src.close();
      }
      await assertCheckClean(out);
      await assertSameContent(file, out, 'raw', 'qcow2');
    }
  });
});

describe('writeRawSparse', () => {
  it('writes only the data extents of a sparse raw image', async () => {
    const out = join(dir, 'copy.raw');
    const source = await LocalFile.open(srcPath);
    try {
      await writeRawSparse({ virtualSize: SIZE, extents, source }, out, { chunkBytes: M });
    } finally {
      await source.close();
    }
    await assertSameContent(srcPath, out, 'raw', 'raw');
    const st = await stat(out);
    assert.equal(st.size, SIZE);
    assert.ok(st.blocks * 512 < SIZE / 2, `raw output is not sparse (${st.blocks} blocks)`);
  });
});
