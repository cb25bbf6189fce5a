import { DiskError } from '../errors.js';
import type { ClusterRun } from './cluster-plan.js';

/*
 * Where everything goes in a qcow2 image written in one pass. Every offset is known before a byte
 * of data moves, so the file is one sequential stream:
 *   header cluster | refcount table | refcount blocks | L1 table | L2 tables | data clusters
 * Every cluster of the file is referenced exactly once, so every refcount is 1 and the refcount
 * blocks are "1 for every cluster below the end of the file".
 */

export const QCOW2_MAGIC = 0x514649fb;
export const HEADER_V3_LENGTH = 112;
export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const L1_OFFSET_MASK = 0x00fffffffffffe00n;
export const ENTRY_COPIED = 1n << 63n;
export const ENTRY_COMPRESSED = 1n << 62n;
export const L2_ZERO_FLAG = 1n;
/** 16-bit refcounts: what qemu-img creates by default. */
export const REFCOUNT_ORDER = 4;
export const MAX_BACKING_NAME = 1023;

export interface BackingRef {
  /** The backing file name as stored: relative to the image's own directory. */
  name: string;
  format: 'qcow2' | 'raw';
}

export interface Qcow2Layout {
  clusterSize: number;
  clusterBits: number;
  virtualSize: number;
  /** Entries of the L1 table (guest size / bytes one L2 table maps). */
  l1Entries: number;
  /** L2 entries per table (clusterSize / 8). */
  l2Entries: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  refcountBlocksOffset: number;
  refcountBlockCount: number;
  l1Offset: number;
  l1Clusters: number;
  /** L1 indexes that get an L2 table, ascending; table i sits at l2Offset + i * clusterSize. */
  l2Indexes: number[];
  l2Offset: number;
  /** End of the metadata; clusters from here to dataOffset (if any) are unused holes. */
  metadataEnd: number;
  dataOffset: number;
  dataClusters: number;
  totalClusters: number;
  fileSize: number;
}

export function assertClusterSize(clusterSize: number): number {
  const bits = Math.log2(clusterSize);
  if (!Number.isInteger(bits) || bits < 9 || bits > 21) {
    throw new DiskError(
      'QCOW2_UNSUPPORTED',
      `cluster size ${clusterSize} is not a power of two between 512 B and 2 MiB`,
    );
  }
  return bits;
}

function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/**
 * Computes every offset of the image from its cluster runs. `fixedDataOffset` puts the data at a
 * place chosen before the runs were known (see maxMetadataEnd): the metadata still starts at
 * cluster 1 and the clusters between its end and the data stay unused (refcount 0, a file hole).
 */
export function computeLayout(
  runs: readonly ClusterRun[],
  virtualSize: number,
  clusterSize: number,
  fixedDataOffset?: number,
): Qcow2Layout {
  const clusterBits = assertClusterSize(clusterSize);
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) {
    throw new DiskError('DISK_RANGE', `invalid virtual size ${virtualSize}`);
  }
  const l2Entries = clusterSize / 8;
  const l1Entries = ceilDiv(ceilDiv(virtualSize, clusterSize), l2Entries);
  // An empty disk has no L1 table at all (l1_size 0, offset 0), like qemu-img makes it.
  const l1Clusters = ceilDiv(l1Entries * 8, clusterSize);
  const l2Indexes: number[] = [];
  let dataClusters = 0;
  for (const r of runs) {
    if (r.kind === 'data') dataClusters += r.count;
    const firstTable = Math.floor(r.start / l2Entries);
    const lastTable = Math.floor((r.start + r.count - 1) / l2Entries);
    for (let t = firstTable; t <= lastTable; t++) {
      if (l2Indexes[l2Indexes.length - 1] !== t) l2Indexes.push(t);
    }
  }
  const fixed = 1 + l1Clusters + l2Indexes.length + dataClusters;
  const gapFree = fixedDataOffset === undefined;
  // The refcount structures count themselves: iterate to the fixed point (converges in 2-3 steps).
  const refcountsPerBlock = (clusterSize * 8) >> REFCOUNT_ORDER;
  let blocks = 0;
  let tableClusters = 0;
  for (;;) {
    const total = gapFree ? fixed + blocks + tableClusters : fixedDataOffset / clusterSize + dataClusters;
    const nextBlocks = ceilDiv(total, refcountsPerBlock);
    const nextTable = Math.max(1, ceilDiv(nextBlocks * 8, clusterSize));
    if (nextBlocks === blocks && nextTable === tableClusters) break;
    blocks = nextBlocks;
    tableClusters = nextTable;
  }
  const refcountTableOffset = clusterSize;
  const refcountBlocksOffset = refcountTableOffset + tableClusters * clusterSize;
  const l1Offset = refcountBlocksOffset + blocks * clusterSize;
  const l2Offset = l1Offset + l1Clusters * clusterSize;
  const metadataEnd = l2Offset + l2Indexes.length * clusterSize;
  const dataOffset = fixedDataOffset ?? metadataEnd;
  if (dataOffset < metadataEnd || dataOffset % clusterSize !== 0) {
    throw new Error(`qcow2 layout: data offset ${dataOffset} inside the metadata (ends at ${metadataEnd})`);
  }
  const totalClusters = dataOffset / clusterSize + dataClusters;
  return {
    clusterSize,
    clusterBits,
    virtualSize,
    l1Entries,
    l2Entries,
    refcountTableOffset,
    refcountTableClusters: tableClusters,
    refcountBlocksOffset,
    refcountBlockCount: blocks,
    l1Offset,
    l1Clusters,
    l2Indexes,
    l2Offset,
    metadataEnd,
    dataOffset,
    dataClusters,
    totalClusters,
    fileSize: totalClusters * clusterSize,
  };
}

/** Header extension bytes: type, length, data padded to 8 bytes. */
export function encodeHeaderExtension(type: number, data: Buffer): Buffer {
  const padded = Math.ceil(data.length / 8) * 8;
  const out = Buffer.alloc(8 + padded);
  out.writeUInt32BE(type, 0);
  out.writeUInt32BE(data.length, 4);
  data.copy(out, 8);
  return out;
}

/** Cluster 0: v3 header, backing-format extension, end marker, then the backing file name. */
export function encodeHeaderCluster(layout: Qcow2Layout, backing?: BackingRef): Buffer {
  const buf = Buffer.alloc(layout.clusterSize);
  let pos = HEADER_V3_LENGTH;
  let nameOffset = 0;
  let nameBytes: Buffer | undefined;
  if (backing) {
    nameBytes = Buffer.from(backing.name, 'utf8');
    if (nameBytes.length === 0 || nameBytes.length > MAX_BACKING_NAME) {
      throw new DiskError('QCOW2_UNSUPPORTED', `backing file name must be 1..${MAX_BACKING_NAME} bytes`);
    }
    const ext = encodeHeaderExtension(EXT_BACKING_FORMAT, Buffer.from(backing.format, 'ascii'));
    if (pos + ext.length + 8 + nameBytes.length > layout.clusterSize) {
      throw new DiskError(
        'QCOW2_UNSUPPORTED',
        `backing file name does not fit in a ${layout.clusterSize} B cluster`,
      );
    }
    ext.copy(buf, pos);
    pos += ext.length;
  }
  buf.writeUInt32BE(EXT_END, pos);
  buf.writeUInt32BE(0, pos + 4);
  pos += 8;
  if (nameBytes) {
    nameOffset = pos;
    nameBytes.copy(buf, pos);
  }
  buf.writeUInt32BE(QCOW2_MAGIC, 0);
  buf.writeUInt32BE(3, 4);
  buf.writeBigUInt64BE(BigInt(nameOffset), 8);
  buf.writeUInt32BE(nameBytes?.length ?? 0, 16);
  buf.writeUInt32BE(layout.clusterBits, 20);
  buf.writeBigUInt64BE(BigInt(layout.virtualSize), 24);
  buf.writeUInt32BE(0, 32); // no encryption
  buf.writeUInt32BE(layout.l1Entries, 36);
  buf.writeBigUInt64BE(BigInt(layout.l1Entries > 0 ? layout.l1Offset : 0), 40);
  buf.writeBigUInt64BE(BigInt(layout.refcountTableOffset), 48);
  buf.writeUInt32BE(layout.refcountTableClusters, 56);
  buf.writeUInt32BE(0, 60); // no snapshots
  buf.writeBigUInt64BE(0n, 64);
  buf.writeBigUInt64BE(0n, 72); // incompatible features
  buf.writeBigUInt64BE(0n, 80); // compatible features
  buf.writeBigUInt64BE(0n, 88); // autoclear features
  buf.writeUInt32BE(REFCOUNT_ORDER, 96);
  buf.writeUInt32BE(HEADER_V3_LENGTH, 100);
  // byte 104: compression type 0 (zlib); 105..111 padding — already zero.
  return buf;
}

/** The refcount table: entry i points at refcount block i. */
export function encodeRefcountTable(layout: Qcow2Layout): Buffer {
  const buf = Buffer.alloc(layout.refcountTableClusters * layout.clusterSize);
  for (let i = 0; i < layout.refcountBlockCount; i++) {
    buf.writeBigUInt64BE(BigInt(layout.refcountBlocksOffset + i * layout.clusterSize), i * 8);
  }
  return buf;
}

/** Refcount block `index`: 1 for every cluster of the file it covers, 0 in the gap and past the end. */
export function encodeRefcountBlock(layout: Qcow2Layout, index: number): Buffer {
  const perBlock = (layout.clusterSize * 8) >> REFCOUNT_ORDER;
  const buf = Buffer.alloc(layout.clusterSize);
  const first = index * perBlock;
  const n = Math.min(perBlock, layout.totalClusters - first);
  const gapFrom = layout.metadataEnd / layout.clusterSize;
  const gapTo = layout.dataOffset / layout.clusterSize;
  for (let i = 0; i < n; i++) {
    const c = first + i;
    if (c < gapFrom || c >= gapTo) buf.writeUInt16BE(1, i * 2);
  }
  return buf;
}

/**
 * Where the metadata of an image of this size could end at most (every cluster allocated): data
 * placed there can be written before the extent map is known.
 */
export function maxMetadataEnd(virtualSize: number, clusterSize: number): number {
  const clusters = Math.ceil(virtualSize / clusterSize);
  const runs: ClusterRun[] = clusters > 0 ? [{ start: 0, count: clusters, kind: 'data' }] : [];
  return computeLayout(runs, virtualSize, clusterSize).metadataEnd;
}

/** The L1 table: each present L2 table, with the COPIED flag (refcount is exactly 1). */
export function encodeL1Table(layout: Qcow2Layout): Buffer {
  const buf = Buffer.alloc(layout.l1Clusters * layout.clusterSize);
  layout.l2Indexes.forEach((l1Index, i) => {
    const offset = BigInt(layout.l2Offset + i * layout.clusterSize);
    buf.writeBigUInt64BE(offset | ENTRY_COPIED, l1Index * 8);
  });
  return buf;
}

/**
 * Yields the L2 tables in file order. `runs` must be sorted; data clusters are numbered in guest
 * order from `layout.dataOffset`, which is what the data stream writes.
 */
export function* encodeL2Tables(layout: Qcow2Layout, runs: readonly ClusterRun[]): Generator<Buffer> {
  const E = layout.l2Entries;
  let runIndex = 0;
  let dataBefore = 0; // data clusters in runs before runIndex
  for (const table of layout.l2Indexes) {
    const buf = Buffer.alloc(layout.clusterSize);
    const lo = table * E;
    const hi = lo + E;
    // Runs that ended before this table were fully consumed by earlier tables.
    while (runIndex < runs.length && runs[runIndex].start + runs[runIndex].count <= lo) {
      if (runs[runIndex].kind === 'data') dataBefore += runs[runIndex].count;
      runIndex++;
    }
    let dataCursor = dataBefore;
    for (let r = runIndex; r < runs.length && runs[r].start < hi; r++) {
      const run = runs[r];
      const from = Math.max(lo, run.start);
      const to = Math.min(hi, run.start + run.count);
      if (run.kind === 'zero') {
        for (let c = from; c < to; c++) buf.writeBigUInt64BE(L2_ZERO_FLAG, (c - lo) * 8);
      } else {
        let host = layout.dataOffset + (dataCursor + (from - run.start)) * layout.clusterSize;
        for (let c = from; c < to; c++) {
          buf.writeBigUInt64BE(BigInt(host) | ENTRY_COPIED, (c - lo) * 8);
          host += layout.clusterSize;
        }
        dataCursor += run.count;
      }
    }
    yield buf;
  }
}
