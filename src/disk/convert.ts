import { dirname, relative, resolve } from 'node:path';
import type { Disk } from './disk.js';
import { DiskError } from './errors.js';
import type { Extent } from './extent.js';
import { FileSink } from './file-sink.js';
import { diskExtents, rawDiskExtents } from './hole-map.js';
import { openDiskImage } from './open.js';
import { bufferReaderFor } from './qcow2/chain-buffer-reader.js';
import { type ClusterRun, planClusters } from './qcow2/cluster-plan.js';
import { assertClusterSize } from './qcow2/layout.js';
import { writeQcow2ByScanning } from './qcow2/scan-writer.js';
import { DEFAULT_CLUSTER_SIZE, writeQcow2 } from './qcow2/writer.js';
import { RawDisk } from './raw.js';
import { writeRawSparse } from './raw-writer.js';
import { readAheadInOrder } from './read-ahead.js';

export interface ConvertOptions {
  format: 'qcow2' | 'raw';
  /** qcow2 only; default 64 KiB. */
  clusterSize?: number;
  /**
   * qcow2 only: make DST an overlay of this image holding only what differs from it. Its name is
   * stored relative to DST's directory.
   */
  backing?: string;
  readAhead?: number;
  chunkBytes?: number;
  /** Bytes of output written so far, out of the total. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

export interface ConvertResult {
  /** Bytes of guest data stored in DST (data clusters or data extents). */
  dataBytes: number;
  /** With a backing: bytes of the source found identical to the backing and left out. */
  sameAsBackingBytes?: number;
}

/**
 * Copies a disk (a raw file, a qcow2 chain, any Disk) into a new sparse image: zero and unallocated
 * ranges take no space. DST is written to a temp file and renamed into place when complete.
 */
export async function convertImage(src: Disk, dst: string, opts: ConvertOptions): Promise<ConvertResult> {
  if (opts.format === 'raw') {
    if (opts.backing) throw new DiskError('QCOW2_UNSUPPORTED', 'a raw image cannot have a backing file');
    const extents = await diskExtents(src);
    const reader = bufferReaderFor(src);
    const r = await writeRawSparse({ virtualSize: src.virtualSize, extents, source: src, reader }, dst, opts);
    return { dataBytes: r.bytesWritten };
  }
  const clusterSize = opts.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  assertClusterSize(clusterSize);
  let extents: Extent[];
  let backing: { name: string; format: 'qcow2' | 'raw' } | undefined;
  let sameAsBackingBytes: number | undefined;
  if (opts.backing) {
    const base = await openDiskImage(opts.backing);
    try {
      const diff = await diffAgainstBacking(src, base, clusterSize, opts);
      extents = diff.extents;
      sameAsBackingBytes = diff.sameBytes;
    } finally {
      await base.close();
    }
    const name = relative(dirname(resolve(dst)), resolve(opts.backing));
    backing = { name, format: base instanceof RawDisk ? 'raw' : 'qcow2' };
  } else if (src instanceof RawDisk) {
    // A raw file has no map to ask: reading it once both finds the data and copies it.
    const layout = await writeQcow2ByScanning(src, dst, { ...opts, clusterSize });
    return { dataBytes: layout.dataClusters * clusterSize };
  } else {
    extents = await src.extents();
  }
  // The file sink says when it is done with a chunk, so the writer reads into recycled buffers.
  const reader = bufferReaderFor(src);
  const sink = await FileSink.create(dst);
  try {
    const r = await writeQcow2(
      { virtualSize: src.virtualSize, extents, source: src, reader, clusterSize, backing },
      sink,
      {
        readAhead: opts.readAhead,
        chunkBytes: opts.chunkBytes,
        onProgress: opts.onProgress,
        signal: opts.signal,
      },
    );
    await sink.close();
    return { dataBytes: r.layout.dataClusters * clusterSize, sameAsBackingBytes };
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

interface DiffChunk {
  start: number;
  count: number;
}

/**
 * The extent map of an overlay of `base` that reads like `src`, per cluster: identical content ->
 * unallocated (falls through); reads as zeros where the base does not -> zero cluster; else data.
 * Only clusters where `src` has data are read (from both); where `src` reads as zeros by its map,
 * the base's map decides.
 */
async function diffAgainstBacking(
  src: Disk,
  base: Disk,
  clusterSize: number,
  opts: ConvertOptions,
): Promise<{ extents: Extent[]; sameBytes: number }> {
  const size = src.virtualSize;
  const baseSize = Math.min(base.virtualSize, size);
  const srcData = planClusters(await diskExtents(src), size, clusterSize, false);
  const baseExtents = base instanceof RawDisk ? await rawDiskExtents(base) : await base.extents(0, baseSize);
  const baseData = baseSize > 0 ? planClusters(baseExtents, baseSize, clusterSize, false) : [];
  const out: Extent[] = [];
  const push = (cluster: number, count: number, kind: Extent['kind']) => {
    const offset = cluster * clusterSize;
    const length = Math.min(count * clusterSize, size - offset);
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.offset + last.length === offset) last.length += length;
    else out.push({ offset, length, kind });
  };
  // Zero clusters: base data the source does not cover with data of its own.
  const zeroRuns = subtractRuns(baseData, srcData);
  const perChunk = Math.max(1, Math.floor((opts.chunkBytes ?? 4 << 20) / clusterSize));
  const diffs: { cluster: number; kind: Extent['kind'] }[] = [];
  let sameBytes = 0;
  const zeroCluster = Buffer.alloc(clusterSize);
  await readAheadInOrder(
    chunksOf(srcData, perChunk),
    async (c) => {
      const offset = c.start * clusterSize;
      const length = Math.min(c.count * clusterSize, size - offset);
      const baseLength = Math.max(0, Math.min(length, baseSize - offset));
      const [a, b] = await Promise.all([
        src.read(offset, length),
        baseLength > 0 ? base.read(offset, baseLength) : Promise.resolve(Buffer.alloc(0)),
      ]);
      if (b.length === length) return [a, b] as const;
      // Past the base's end, the base reads as zeros.
      const padded = Buffer.alloc(length);
      b.copy(padded);
      return [a, padded] as const;
    },
    async (c, [a, b]) => {
      for (let i = 0; i < c.count; i++) {
        const from = i * clusterSize;
        const to = Math.min(from + clusterSize, a.length);
        const srcPart = a.subarray(from, to);
        const basePart = b.subarray(from, to);
        if (srcPart.equals(basePart)) {
          sameBytes += to - from;
          continue;
        }
        const zero = zeroCluster.subarray(0, to - from);
        const kind = srcPart.equals(zero) && !basePart.equals(zero) ? 'zero' : 'data';
        diffs.push({ cluster: c.start + i, kind });
      }
    },
    opts.readAhead ?? 8,
    opts.signal,
  );
  // Merge the compared clusters with the zero runs, in guest order.
  const events: { cluster: number; count: number; kind: Extent['kind'] }[] = [
    ...diffs.map((d) => ({ cluster: d.cluster, count: 1, kind: d.kind })),
    ...zeroRuns.map((r) => ({ cluster: r.start, count: r.count, kind: 'zero' as const })),
  ].sort((x, y) => x.cluster - y.cluster);
  let pos = 0;
  for (const e of events) {
    if (e.cluster > pos) push(pos, e.cluster - pos, 'unallocated');
    push(e.cluster, e.count, e.kind);
    pos = e.cluster + e.count;
  }
  const totalClusters = Math.ceil(size / clusterSize);
  if (pos < totalClusters) push(pos, totalClusters - pos, 'unallocated');
  return { extents: out, sameBytes };
}

function* chunksOf(runs: readonly ClusterRun[], perChunk: number): Generator<DiffChunk> {
  for (const r of runs) {
    for (let c = r.start; c < r.start + r.count; c += perChunk) {
      yield { start: c, count: Math.min(perChunk, r.start + r.count - c) };
    }
  }
}

/** Clusters of `a` not in `b` (both sorted, non-overlapping). */
function subtractRuns(a: readonly ClusterRun[], b: readonly ClusterRun[]): ClusterRun[] {
  const out: ClusterRun[] = [];
  let j = 0;
  for (const r of a) {
    let start = r.start;
    const end = r.start + r.count;
    while (j < b.length && b[j].start + b[j].count <= start) j++;
    for (let k = j; k < b.length && b[k].start < end; k++) {
      if (b[k].start > start) out.push({ start, count: b[k].start - start, kind: r.kind });
      start = Math.max(start, b[k].start + b[k].count);
    }
    if (start < end) out.push({ start, count: end - start, kind: r.kind });
  }
  return out;
}
