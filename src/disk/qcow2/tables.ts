import { DiskError } from '../errors.js';
import type { RandomAccessFile } from '../io.js';
import { fitsInFile, MAX_SNAPSHOTS, type Qcow2Header } from './header.js';

/**
 * Readers of the on-disk tables (L1, L2, refcount table and blocks, snapshot table, bitmap
 * directory). Each checks alignment and that the table lies inside the file before allocating, so a
 * hostile size or offset cannot make us allocate more than the file holds.
 */

function malformed(file: RandomAccessFile, what: string, details?: Record<string, unknown>): DiskError {
  return new DiskError('QCOW2_MALFORMED', `${file.name}: ${what}`, { details });
}

/** Reads exactly `length` bytes or throws QCOW2_MALFORMED (the table would overrun the file). */
export async function readExact(
  file: RandomAccessFile,
  offset: number,
  length: number,
  what: string,
): Promise<Buffer> {
  if (!fitsInFile(offset, length, file.size)) {
    throw malformed(file, `${what} at ${offset} (+${length}) beyond the end of the file (${file.size})`);
  }
  const buf = await file.read(offset, length);
  if (buf.length !== length) throw malformed(file, `${what} at ${offset}: short read`);
  return buf;
}

/** Checks that a cluster-sized table at `offset` is aligned and inside the file. */
export function checkClusterOffset(
  file: RandomAccessFile,
  h: Qcow2Header,
  offset: number,
  what: string,
): void {
  if (offset === 0 || offset % h.clusterSize !== 0) throw malformed(file, `${what} offset ${offset} invalid`);
  if (offset >= file.size)
    throw malformed(file, `${what} at ${offset} beyond the end of the file (${file.size})`);
}

/**
 * Reads one cluster-sized table. QEMU does not pad a file to a whole cluster and reads past the end
 * as zeros, so a table that starts inside the file but is cut short is zero-filled, not refused.
 */
async function readClusterTable(file: RandomAccessFile, h: Qcow2Header, offset: number, what: string) {
  checkClusterOffset(file, h, offset, what);
  const buf = await file.read(offset, h.clusterSize);
  if (buf.length === h.clusterSize) return buf;
  const padded = Buffer.alloc(h.clusterSize);
  buf.copy(padded);
  return padded;
}

/** The active L1 table: l1Size big-endian u64 entries. */
export function readL1Table(file: RandomAccessFile, h: Qcow2Header): Promise<Buffer> {
  if (h.l1Size === 0) return Promise.resolve(Buffer.alloc(0));
  return readExact(file, h.l1TableOffset, h.l1Size * 8, 'L1 table');
}

/** One L2 table (one cluster) at `offset`, as pointed to by an L1 entry. */
export function readL2Table(file: RandomAccessFile, h: Qcow2Header, offset: number): Promise<Buffer> {
  return readClusterTable(file, h, offset, 'L2 table');
}

/** The refcount table: refcountTableClusters clusters of u64 entries. */
export function readRefcountTable(file: RandomAccessFile, h: Qcow2Header): Promise<Buffer> {
  return readExact(file, h.refcountTableOffset, h.refcountTableClusters * h.clusterSize, 'refcount table');
}

/** One refcount block (one cluster). */
export function readRefcountBlock(file: RandomAccessFile, h: Qcow2Header, offset: number): Promise<Buffer> {
  return readClusterTable(file, h, offset, 'refcount block');
}

/** Refcount table index and block index of the host cluster holding `hostOffset`. */
export function refcountPosition(
  h: Qcow2Header,
  hostOffset: number,
): { tableIndex: number; blockIndex: number } {
  const cluster = Math.floor(hostOffset / h.clusterSize);
  return {
    tableIndex: Math.floor(cluster / h.refcountBlockEntries),
    blockIndex: cluster % h.refcountBlockEntries,
  };
}

/** Byte offset, in the file, of the L2 entry for guest cluster `guestCluster` in the L2 table at `l2Offset`. */
export function l2EntryFileOffset(h: Qcow2Header, l2Offset: number, guestCluster: number): number {
  return l2Offset + (guestCluster % h.l2Entries) * h.l2EntrySize;
}

/** L1 index and L2 index of a guest cluster number. */
export function guestClusterPosition(
  h: Qcow2Header,
  guestCluster: number,
): { l1Index: number; l2Index: number } {
  return { l1Index: Math.floor(guestCluster / h.l2Entries), l2Index: guestCluster % h.l2Entries };
}

// ---------------------------------------------------------------------------------- snapshot table

export interface Qcow2Snapshot {
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  vmStateSize: number;
  /** Virtual size at snapshot time (v3 extra data), when present. */
  diskSize?: number;
  /** Offset and length of this entry in the file. */
  entryOffset: number;
  entryLength: number;
}

/**
 * Parses the internal snapshot table. We never read snapshot contents; check needs their L1 tables
 * to account for the clusters they keep alive.
 */
export async function readSnapshotTable(file: RandomAccessFile, h: Qcow2Header): Promise<Qcow2Snapshot[]> {
  const out: Qcow2Snapshot[] = [];
  if (h.nbSnapshots === 0) return out;
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw malformed(file, 'too many snapshots');
  let pos = h.snapshotsOffset;
  // Entries have variable length; read in slices and never past the end of the file.
  for (let i = 0; i < h.nbSnapshots; i++) {
    const fixed = await readExact(file, pos, 40, `snapshot ${i} entry`);
    const idLen = fixed.readUInt16BE(12);
    const nameLen = fixed.readUInt16BE(14);
    const extraLen = fixed.readUInt32BE(36);
    const total = 40 + extraLen + idLen + nameLen;
    if (extraLen > 1024 * 1024) throw malformed(file, `snapshot ${i}: extra data too large`);
    const entry = await readExact(file, pos, total, `snapshot ${i} entry`);
    const l1TableOffset = Number(entry.readBigUInt64BE(0));
    const l1Size = entry.readUInt32BE(8);
    let vmStateSize = entry.readUInt32BE(32);
    let diskSize: number | undefined;
    if (extraLen >= 8) vmStateSize = Number(entry.readBigUInt64BE(40));
    if (extraLen >= 16) diskSize = Number(entry.readBigUInt64BE(48));
    const idStart = 40 + extraLen;
    out.push({
      l1TableOffset,
      l1Size,
      id: entry.subarray(idStart, idStart + idLen).toString('utf8'),
      name: entry.subarray(idStart + idLen, total).toString('utf8'),
      vmStateSize,
      diskSize,
      entryOffset: pos,
      entryLength: Math.ceil(total / 8) * 8,
    });
    pos += Math.ceil(total / 8) * 8;
  }
  return out;
}

// ------------------------------------------------------------------------------- bitmap directory

export interface Qcow2BitmapEntry {
  name: string;
  tableOffset: number;
  /** Entries (u64) in the bitmap table. */
  tableSize: number;
  flags: number;
  type: number;
  granularityBits: number;
}

/** Parses the persistent-bitmap directory (only `check` needs it, to account for bitmap clusters). */
export async function readBitmapDirectory(
  file: RandomAccessFile,
  h: Qcow2Header,
): Promise<Qcow2BitmapEntry[]> {
  const ext = h.bitmaps;
  if (!ext || ext.nbBitmaps === 0) return [];
  if (ext.nbBitmaps > 65535) throw malformed(file, 'too many bitmaps');
  const dir = await readExact(file, ext.directoryOffset, ext.directorySize, 'bitmap directory');
  const out: Qcow2BitmapEntry[] = [];
  let pos = 0;
  for (let i = 0; i < ext.nbBitmaps; i++) {
    if (pos + 24 > dir.length) throw malformed(file, `bitmap directory entry ${i} truncated`);
    const nameSize = dir.readUInt16BE(pos + 18);
    const extra = dir.readUInt32BE(pos + 20);
    const total = 24 + extra + nameSize;
    if (total > dir.length - pos) throw malformed(file, `bitmap directory entry ${i} truncated`);
    out.push({
      tableOffset: Number(dir.readBigUInt64BE(pos)),
      tableSize: dir.readUInt32BE(pos + 8),
      flags: dir.readUInt32BE(pos + 12),
      type: dir[pos + 16],
      granularityBits: dir[pos + 17],
      name: dir.subarray(pos + 24 + extra, pos + total).toString('utf8'),
    });
    pos += Math.ceil(total / 8) * 8;
  }
  return out;
}
