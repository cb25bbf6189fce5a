import type { Command } from 'commander';
import type { Disk } from '../../disk/disk.js';
import type { Extent } from '../../disk/extent.js';
import { LocalFile } from '../../disk/io.js';
import { openDiskImage } from '../../disk/open.js';
import type { ChainReader } from '../../disk/qcow2/chain.js';
import { checkQcow2, formatCheckReport } from '../../disk/qcow2/check.js';
import { Qcow2Image } from '../../disk/qcow2/reader.js';
import { RawDisk } from '../../disk/raw.js';

/**
 * `lifeboat image info|check|map|compare`: offline inspection of disk images (qcow2 with its backing
 * chain, or raw), no controller needed. Exit codes follow qemu-img where it has an equivalent.
 */
export function registerImageInspectCommands(image: Command): void {
  image
    .command('info')
    .description('format, virtual size, cluster size, backing chain and allocation of an image')
    .argument('<file>', 'image file (qcow2 or raw)')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const info = await withDisk(file, imageInfo);
      write(opts.json ? `${JSON.stringify(info, null, 2)}\n` : formatInfo(info));
    });

  image
    .command('check')
    .description('check a qcow2 image for consistency (exit 0 clean, 2 corrupt, 3 leaks only)')
    .argument('<file>', 'qcow2 image file')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const f = await LocalFile.open(file);
      try {
        const head = await f.read(0, 4);
        if (head.length < 4 || head.toString('latin1') !== 'QFI\xfb') {
          write(opts.json ? `${JSON.stringify({ image: file, format: 'raw', consistent: true })}\n` : '');
          if (!opts.json) write('raw image: no metadata to check.\n');
          return;
        }
        const r = await checkQcow2(f);
        write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : formatCheckReport(r));
        if (r.corruptions > 0) process.exitCode = 2;
        else if (r.leaks > 0) process.exitCode = 3;
      } finally {
        await f.close();
      }
    });

  image
    .command('map')
    .description('extents of the whole chain: start, length, data/zero/unallocated, depth (0 = top)')
    .argument('<file>', 'image file (qcow2 or raw)')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const extents = await withDisk(file, (d) => d.extents());
      const rows = extents.map((e) => ({
        start: e.offset,
        length: e.length,
        kind: e.kind,
        depth: e.depth ?? 0,
      }));
      if (opts.json) write(`${JSON.stringify(rows)}\n`);
      else {
        write(`${'start'.padEnd(20)}${'length'.padEnd(20)}${'kind'.padEnd(13)}depth\n`);
        for (const r of rows) {
          write(
            `${String(r.start).padEnd(20)}${String(r.length).padEnd(20)}${r.kind.padEnd(13)}${r.depth}\n`,
          );
        }
      }
    });

  image
    .command('compare')
    .description('compare the content of two images (exit 0 identical, 1 different, 2 error)')
    .argument('<a>', 'first image')
    .argument('<b>', 'second image')
    .action(async (a: string, b: string) => {
      process.exitCode = 2; // an error thrown below keeps 2, like qemu-img compare
      const result = await withDisk(a, (da) => withDisk(b, (db) => compareDisks(da, db)));
      if (result.sizeMismatch) write('Warning: Image size mismatch!\n');
      if (result.firstDifference === undefined) {
        write('Images are identical.\n');
        process.exitCode = 0;
      } else {
        write(`Content mismatch at offset ${result.firstDifference}!\n`);
        process.exitCode = 1;
      }
    });
}

function write(s: string): void {
  process.stdout.write(s);
}

async function withDisk<T>(path: string, fn: (d: ChainReader | RawDisk) => Promise<T>): Promise<T> {
  const disk = await openDiskImage(path);
  try {
    return await fn(disk);
  } finally {
    await disk.close();
  }
}

interface LayerInfo {
  file: string;
  /** Backing name as written in the child's header (absent for the top). */
  backingName?: string;
  format: 'qcow2' | 'raw';
  version?: number;
  virtualSize: number;
  clusterSize?: number;
  fileSize: number;
  /** Bytes of guest data stored in this layer. */
  allocatedBytes: number;
}

interface ImageInfo extends LayerInfo {
  backingChain: LayerInfo[];
  dirty?: boolean;
  extendedL2?: boolean;
  refcountBits?: number;
  compressionType?: string;
}

async function layerInfo(disk: Qcow2Image | RawDisk, backingName?: string): Promise<LayerInfo> {
  if (disk instanceof Qcow2Image) {
    return {
      file: disk.file.name,
      backingName,
      format: 'qcow2',
      version: disk.header.version,
      virtualSize: disk.virtualSize,
      clusterSize: disk.clusterSize,
      fileSize: disk.file.size,
      allocatedBytes: await disk.allocatedBytes(),
    };
  }
  let data = 0;
  for (const e of await disk.extents()) if (e.kind === 'data') data += e.length;
  return {
    file: disk.file.name,
    backingName,
    format: 'raw',
    virtualSize: disk.virtualSize,
    fileSize: disk.file.size,
    allocatedBytes: data,
  };
}

async function imageInfo(disk: ChainReader | RawDisk): Promise<ImageInfo> {
  if (disk instanceof RawDisk) return { ...(await layerInfo(disk)), backingChain: [] };
  const [top, ...rest] = disk.layers;
  const backingChain: LayerInfo[] = [];
  for (const l of rest) backingChain.push(await layerInfo(l.disk, l.nameInChild));
  const h = disk.top.header;
  return {
    ...(await layerInfo(top.disk)),
    backingChain,
    dirty: h.dirty,
    extendedL2: h.extendedL2,
    refcountBits: h.refcountBits,
    compressionType: 'deflate',
  };
}

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${Number.isInteger(v) ? v : v.toFixed(2)} ${units[u]}`;
}

function formatInfo(i: ImageInfo): string {
  const lines = [
    `image: ${i.file}`,
    `format: ${i.format}${i.version ? ` (version ${i.version})` : ''}`,
    `virtual size: ${human(i.virtualSize)} (${i.virtualSize} bytes)`,
    `file size: ${human(i.fileSize)}`,
    `allocated: ${human(i.allocatedBytes)} (data held by this file)`,
  ];
  if (i.clusterSize) lines.push(`cluster size: ${i.clusterSize}`);
  if (i.refcountBits) lines.push(`refcount bits: ${i.refcountBits}`);
  if (i.extendedL2) lines.push('extended L2: yes');
  if (i.dirty) lines.push('dirty: yes');
  if (i.backingChain.length > 0) {
    lines.push(`backing chain (${i.backingChain.length}):`);
    i.backingChain.forEach((l, n) => {
      lines.push(`  [${n + 1}] ${l.backingName} -> ${l.file} (${l.format}, ${human(l.virtualSize)})`);
    });
  }
  return `${lines.join('\n')}\n`;
}

/** Largest read while comparing. */
const COMPARE_CHUNK = 4 * 1024 * 1024;

/**
 * Compares the content of two disks, reading only where at least one side has data. The part past
 * the end of the smaller disk must read as zeros (what qemu-img compare does).
 */
export async function compareDisks(
  a: Disk,
  b: Disk,
): Promise<{ firstDifference?: number; sizeMismatch: boolean }> {
  const size = Math.max(a.virtualSize, b.virtualSize);
  const [ea, eb] = [await a.extents(), await b.extents()];
  const pa = { list: ea, i: 0 };
  const pb = { list: eb, i: 0 };
  const dataAt = (p: { list: Extent[]; i: number }, off: number): { data: boolean; end: number } => {
    while (p.i < p.list.length && p.list[p.i].offset + p.list[p.i].length <= off) p.i++;
    const e = p.list[p.i];
    if (!e || e.offset > off) return { data: false, end: e ? e.offset : size };
    return { data: e.kind === 'data', end: e.offset + e.length };
  };
  for (let off = 0; off < size; ) {
    const sa = dataAt(pa, off);
    const sb = dataAt(pb, off);
    const end = Math.min(sa.end, sb.end, size);
    if (sa.data || sb.data) {
      for (let pos = off; pos < end; pos += COMPARE_CHUNK) {
        const len = Math.min(COMPARE_CHUNK, end - pos);
        const ba = sa.data ? await a.read(pos, len) : Buffer.alloc(len);
        const bb = sb.data ? await b.read(pos, len) : Buffer.alloc(len);
        if (!ba.equals(bb))
          return {
            firstDifference: pos + firstMismatch(ba, bb),
            sizeMismatch: a.virtualSize !== b.virtualSize,
          };
      }
    }
    off = end;
  }
  return { sizeMismatch: a.virtualSize !== b.virtualSize };
}

/** Index of the first differing byte of two buffers of equal length that are not equal. */
function firstMismatch(a: Buffer, b: Buffer): number {
  let lo = 0;
  let len = a.length;
  // Halve the range with memcmp until it is small, then scan bytes.
  while (len > 64) {
    const half = Math.floor(len / 2);
    if (a.compare(b, lo, lo + half, lo, lo + half) !== 0) len = half;
    else {
      lo += half;
      len -= half;
    }
  }
  for (let i = lo; i < lo + len; i++) if (a[i] !== b[i]) return i;
  return lo;
}
