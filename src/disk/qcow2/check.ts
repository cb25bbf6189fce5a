import { DiskError } from '../errors.js';
import type { RandomAccessFile } from '../io.js';
import {
  decodeL2Entry,
  l1EntryCopied,
  l1EntryL2Offset,
  l1EntryReservedBits,
  type Qcow2Header,
  readBitmapDirectory,
  readExact,
  readL2Table,
  readQcow2Header,
  readRefcount,
  readRefcountBlock,
  readRefcountTable,
  readSnapshotTable,
  refcountTableEntry,
} from './format.js';

/**
 * Our own consistency check of a qcow2 image, in the spirit of `qemu-img check`: it recounts every
 * reference to every host cluster (header, L1/L2 tables, refcount structures, snapshot and bitmap
 * tables, data) and compares the counts with the stored refcounts. Read-only; it never repairs.
 *
 * - corruption: something a reader or writer can trip over (bad offsets, a cluster referenced more
 *   often than its refcount says, metadata overlapping data, entries pointing past the end of file)
 * - leak: a cluster whose refcount is higher than its references (wasted space, harmless)
 * - warning: dirty bit, reserved bits, stale COPIED flags: worth knowing, not dangerous when reading
 */

export type CheckSeverity = 'corruption' | 'leak' | 'warning';

export interface CheckFinding {
  severity: CheckSeverity;
  message: string;
  /** Host offset concerned, when there is one. */
  hostOffset?: number;
}

export interface CheckResult {
  image: string;
  /** No corruption and no leak. */
  consistent: boolean;
  corruptions: number;
  leaks: number;
  warnings: number;
  /** The first findings (at most MAX_FINDINGS); the counts above count all of them. */
  findings: CheckFinding[];
  /** Guest clusters of the virtual disk, and how many of them are allocated (data or compressed). */
  totalClusters: number;
  allocatedClusters: number;
  compressedClusters: number;
  /** Allocated clusters not directly after the previous allocated cluster in the file. */
  fragmentedClusters: number;
  /** End of the last cluster in use. */
  imageEndOffset: number;
}

export const MAX_FINDINGS = 1000;
/** Host clusters we are willing to count (a refcount array of this many u32). */
const MAX_HOST_CLUSTERS = 256 * 1024 * 1024;

/** What a host cluster is used for. */
type Use = 0 | 1 | 2 | 3 | 4;
const USE_METADATA = 1; // header, L1/refcount/snapshot/bitmap tables, refcount blocks
const USE_DATA = 2;
const USE_COMPRESSED = 3;
const USE_L2 = 4;

class Collector {
  corruptions = 0;
  leaks = 0;
  warnings = 0;
  findings: CheckFinding[] = [];
  add(severity: CheckSeverity, message: string, hostOffset?: number): void {
    if (severity === 'corruption') this.corruptions++;
    else if (severity === 'leak') this.leaks++;
    else this.warnings++;
    if (this.findings.length < MAX_FINDINGS) this.findings.push({ severity, message, hostOffset });
  }
}

/** Checks the qcow2 image in `file`. Throws only when it is not a qcow2 image we can read at all. */
export async function checkQcow2(file: RandomAccessFile): Promise<CheckResult> {
  const out = new Collector();
  const result = (h?: Qcow2Header, extra?: Partial<CheckResult>): CheckResult => ({
    image: file.name,
    consistent: out.corruptions === 0 && out.leaks === 0,
    corruptions: out.corruptions,
    leaks: out.leaks,
    warnings: out.warnings,
    findings: out.findings,
    totalClusters: h ? Math.ceil(h.size / h.clusterSize) : 0,
    allocatedClusters: 0,
    compressedClusters: 0,
    fragmentedClusters: 0,
    imageEndOffset: 0,
    ...extra,
  });

  let h: Qcow2Header;
  try {
    h = await readQcow2Header(file);
  } catch (err) {
    if (err instanceof DiskError && err.code === 'QCOW2_MALFORMED') {
      out.add('corruption', err.message);
      return result();
    }
    throw err;
  }
  const cs = h.clusterSize;
  const hostClusters = Math.ceil(file.size / cs);
  if (hostClusters > MAX_HOST_CLUSTERS) {
    throw new DiskError('QCOW2_UNSUPPORTED', `${file.name}: too many clusters to check (${hostClusters})`);
  }
  const refs = new Uint32Array(hostClusters);
  const use = new Uint8Array(hostClusters);
  if (h.dirty)
    out.add('warning', 'dirty bit set: refcounts may be stale (QEMU rebuilds them on the next write open)');
  if (h.corrupt) out.add('corruption', 'corrupt bit set: QEMU found this image inconsistent');

  /** Counts one reference to every host cluster of [offset, offset+length). */
  const ref = (offset: number, length: number, what: string, kind: Use): boolean => {
    if (offset % 1 !== 0 || offset < 0 || length <= 0) return false;
    if (offset >= file.size) {
      out.add('corruption', `${what} at ${offset} is beyond the end of the file (${file.size})`, offset);
      return false;
    }
    const first = Math.floor(offset / cs);
    const last = Math.min(hostClusters - 1, Math.floor((offset + length - 1) / cs));
    for (let c = first; c <= last; c++) {
      refs[c]++;
      const was = use[c];
      // Only the same L2 table (from several L1 tables) or the same data (from snapshots) may be
      // shared; anything else sharing a cluster is an overlap.
      if (was !== 0 && (was !== kind || kind === USE_METADATA)) {
        const names = ['', 'metadata', 'data', 'compressed data', 'an L2 table'];
        out.add('corruption', `${what} at ${c * cs} overlaps ${names[was]}`, c * cs);
      }
      if (was === 0) use[c] = kind;
    }
    return true;
  };

  ref(0, cs, 'header', USE_METADATA);
  ref(h.refcountTableOffset, h.refcountTableClusters * cs, 'refcount table', USE_METADATA);

  // L1 tables: the active one and those of internal snapshots. Like QEMU, every path L1 -> L2 -> data
  // is one reference: a snapshot sharing an L2 table adds one to the table and one to each of its
  // data clusters. The walk has a budget so a hostile L1 (every entry naming the same big L2 table)
  // cannot keep us busy for hours.
  const l2Seen = new Map<number, Buffer | null>();
  let budget = hostClusters * (h.nbSnapshots + 4) + 1_000_000;
  const stats = { allocated: 0, compressed: 0, fragmented: 0, lastHostEnd: -1 };
  const walkL1 = async (l1Offset: number, l1Size: number, active: boolean, label: string) => {
    if (l1Size === 0) return;
    if (l1Offset % cs !== 0) {
      out.add('corruption', `${label} L1 table offset ${l1Offset} is not cluster aligned`, l1Offset);
      return;
    }
    if (!ref(l1Offset, l1Size * 8, `${label} L1 table`, USE_METADATA)) return;
    let l1: Buffer;
    try {
      l1 = await readExact(file, l1Offset, l1Size * 8, `${label} L1 table`);
    } catch (err) {
      out.add('corruption', (err as Error).message, l1Offset);
      return;
    }
    const coveredEntries = Math.ceil(h.size / (cs * h.l2Entries));
    for (let i = 0; i < l1Size; i++) {
      const l2Offset = l1EntryL2Offset(l1, i);
      if (active && l1EntryReservedBits(l1, i)) out.add('warning', `L1 entry ${i}: reserved bits set`);
      if (l2Offset === 0) continue;
      if (l2Offset % cs !== 0) {
        out.add('corruption', `${label} L1 entry ${i}: L2 offset ${l2Offset} not cluster aligned`, l2Offset);
        continue;
      }
      if (!ref(l2Offset, cs, `${label} L2 table`, USE_L2)) continue;
      if (active)
        copiedChecks.push({ hostOffset: l2Offset, copied: l1EntryCopied(l1, i), what: `L1 entry ${i}` });
      let l2 = l2Seen.get(l2Offset);
      if (l2 === undefined) {
        l2 = await readL2Table(file, h, l2Offset).catch((err: Error) => {
          out.add('corruption', err.message, l2Offset);
          return null;
        });
        l2Seen.set(l2Offset, l2);
      }
      if (!l2) continue;
      budget -= h.l2Entries;
      if (budget < 0) {
        out.add(
          'corruption',
          `${label} L1 table: far more L2 references than the file has clusters; walk stopped`,
        );
        return;
      }
      walkL2(l2, i, active && i < coveredEntries);
    }
  };

  const copiedChecks: { hostOffset: number; copied: boolean; what: string }[] = [];
  const walkL2 = (l2: Buffer, l1Index: number, countGuest: boolean) => {
    for (let j = 0; j < h.l2Entries; j++) {
      const guest = (l1Index * h.l2Entries + j) * cs;
      let e: ReturnType<typeof decodeL2Entry>;
      try {
        e = decodeL2Entry(l2, j, h);
      } catch (err) {
        out.add('corruption', `guest offset ${guest}: ${(err as Error).message}`);
        continue;
      }
      if (e.reservedBits) out.add('warning', `guest offset ${guest}: L2 entry has reserved bits set`);
      const inDisk = countGuest && guest < h.size;
      if (e.kind === 'compressed') {
        if (!ref(e.hostOffset, e.compressedSize, `compressed cluster (guest ${guest})`, USE_COMPRESSED))
          continue;
        if (inDisk) {
          stats.allocated++;
          stats.compressed++;
        }
        continue;
      }
      if (e.hostOffset === 0) continue;
      if (!ref(e.hostOffset, cs, `data cluster (guest ${guest})`, USE_DATA)) continue;
      if (countGuest)
        copiedChecks.push({ hostOffset: e.hostOffset, copied: e.copied, what: `guest offset ${guest}` });
      if (inDisk && e.allocMask !== 0) {
        stats.allocated++;
        if (stats.lastHostEnd >= 0 && e.hostOffset !== stats.lastHostEnd) stats.fragmented++;
        stats.lastHostEnd = e.hostOffset + cs;
      }
    }
  };

  await walkL1(h.l1TableOffset, h.l1Size, true, 'active');

  try {
    const snapshots = await readSnapshotTable(file, h);
    if (snapshots.length > 0) {
      const last = snapshots[snapshots.length - 1];
      ref(
        h.snapshotsOffset,
        last.entryOffset + last.entryLength - h.snapshotsOffset,
        'snapshot table',
        USE_METADATA,
      );
    }
    for (const s of snapshots) await walkL1(s.l1TableOffset, s.l1Size, false, `snapshot ${s.id}`);
  } catch (err) {
    out.add('corruption', (err as Error).message, h.snapshotsOffset);
  }

  try {
    const bitmaps = await readBitmapDirectory(file, h);
    if (h.bitmaps && bitmaps.length > 0)
      ref(h.bitmaps.directoryOffset, h.bitmaps.directorySize, 'bitmap directory', USE_METADATA);
    for (const b of bitmaps) {
      if (!ref(b.tableOffset, b.tableSize * 8, `bitmap ${b.name} table`, USE_METADATA)) continue;
      const table = await readExact(file, b.tableOffset, b.tableSize * 8, `bitmap ${b.name} table`);
      for (let i = 0; i < b.tableSize; i++) {
        const off = l1EntryL2Offset(table, i); // same bit layout: offset in bits 9..55
        if (off !== 0) ref(off, cs, `bitmap ${b.name} data`, USE_METADATA);
      }
    }
  } catch (err) {
    out.add('corruption', (err as Error).message);
  }

  // Stored refcounts, compared cluster by cluster with the references just counted.
  const stored = new Uint32Array(hostClusters);
  let storedBeyondEnd = 0;
  let table: Buffer | undefined;
  try {
    table = await readRefcountTable(file, h);
  } catch (err) {
    out.add('corruption', (err as Error).message, h.refcountTableOffset);
  }
  const blocks = new Map<number, Buffer | null>();
  if (table) {
    for (let i = 0; i < table.length / 8; i++) {
      const blockOffset = refcountTableEntry(table, i);
      if (blockOffset === 0) continue;
      if (table.readUInt32BE(i * 8 + 4) & 0x1ff)
        out.add('warning', `refcount table entry ${i}: reserved bits set`);
      if (!ref(blockOffset, cs, 'refcount block', USE_METADATA)) continue;
      let block = blocks.get(blockOffset);
      if (block === undefined) {
        block = await readRefcountBlock(file, h, blockOffset).catch((err: Error) => {
          out.add('corruption', err.message, blockOffset);
          return null;
        });
        blocks.set(blockOffset, block);
      }
      if (!block) continue;
      const first = i * h.refcountBlockEntries;
      if (first >= hostClusters) {
        // Blocks covering only space past the end of the file: nothing may be counted there.
        if (!block.every((b) => b === 0)) storedBeyondEnd++;
        continue;
      }
      for (let j = 0; j < h.refcountBlockEntries; j++) {
        const v = readRefcount(block, j, h.refcountOrder);
        if (first + j < hostClusters) stored[first + j] = Math.min(v, 0xffffffff);
        else if (v !== 0) storedBeyondEnd++;
      }
    }
  }
  if (storedBeyondEnd > 0)
    out.add('leak', `${storedBeyondEnd} refcount entries count clusters beyond the end of the file`);

  let imageEnd = 0;
  for (let c = 0; c < hostClusters; c++) {
    const r = refs[c];
    const s = stored[c];
    if (r > 0 || s > 0) imageEnd = (c + 1) * cs;
    if (r === s) continue;
    if (s < r) {
      const twice = use[c] === USE_DATA && r > 1 ? ' (data cluster referenced more than once)' : '';
      out.add('corruption', `cluster at ${c * cs}: refcount ${s}, referenced ${r} times${twice}`, c * cs);
    } else {
      out.add('leak', `cluster at ${c * cs}: refcount ${s}, referenced ${r} times (leaked)`, c * cs);
    }
  }
  for (const cc of copiedChecks) {
    const c = Math.floor(cc.hostOffset / cs);
    if (c >= hostClusters) continue;
    if (cc.copied !== (stored[c] === 1)) {
      out.add(
        'warning',
        `${cc.what}: COPIED flag ${cc.copied ? 'set' : 'clear'} but refcount is ${stored[c]}`,
      );
    }
  }

  return result(h, {
    allocatedClusters: stats.allocated,
    compressedClusters: stats.compressed,
    fragmentedClusters: stats.fragmented,
    imageEndOffset: imageEnd,
  });
}

/** A readable report, like qemu-img check prints it. */
export function formatCheckReport(r: CheckResult): string {
  const lines: string[] = [];
  for (const f of r.findings) {
    const tag = f.severity === 'corruption' ? 'ERROR' : f.severity === 'leak' ? 'Leaked' : 'Warning';
    lines.push(`${tag}: ${f.message}`);
  }
  const omitted = r.corruptions + r.leaks + r.warnings - r.findings.length;
  if (omitted > 0) lines.push(`(${omitted} more findings not shown)`);
  if (r.consistent) lines.push('No errors were found on the image.');
  else {
    if (r.corruptions > 0) lines.push(`${r.corruptions} errors were found on the image.`);
    if (r.leaks > 0)
      lines.push(`${r.leaks} leaked clusters were found on the image (wasted space, not harmful).`);
  }
  if (r.totalClusters > 0) {
    const pct = (n: number) => ((100 * n) / r.totalClusters).toFixed(2);
    lines.push(
      `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters)}% allocated, ` +
        `${pct(r.fragmentedClusters)}% fragmented, ${pct(r.compressedClusters)}% compressed clusters`,
    );
    lines.push(`Image end offset: ${r.imageEndOffset}`);
  }
  return `${lines.join('\n')}\n`;
}
