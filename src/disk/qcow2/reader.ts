import { inflateRawSync } from 'node:zlib';
import type { Disk } from '../disk.js';
import { DiskError } from '../errors.js';
import type { Extent, ExtentKind } from '../extent.js';
import type { RandomAccessFile } from '../io.js';
import { checkDiskRange } from '../range.js';
import {
  decodeL2Entry,
  type L2Entry,
  l1EntryL2Offset,
  type Qcow2Header,
  readL1Table,
  readL2Table,
  readQcow2Header,
} from './format.js';
import { LruCache } from './lru.js';

/**
 * One qcow2 image, read-only, as a `Disk`. Unallocated ranges read as zeros here; the chain reader
 * (chain.ts) sends them to the backing image instead. Works on any RandomAccessFile, so the same code
 * reads a local file or an S3 object with ranged GETs.
 *
 * Opening tolerates the dirty bit, lazy refcounts, the corrupt bit, internal snapshots (only the
 * active L1 table is read) and persistent bitmaps: none of them matter to a reader.
 */

export interface Qcow2OpenOptions {
  /** Memory for cached L2 tables (default 32 MiB, at least 16 tables). */
  l2CacheBytes?: number;
  /** Decompressed clusters kept (default 16). */
  compressedCacheClusters?: number;
}

/** Where one guest cluster lives: what merge needs to move or re-point it. */
export interface ClusterMapping {
  guestCluster: number;
  l1Index: number;
  l2Index: number;
  /** Offset of the L2 table holding the entry; 0 when the L1 entry is empty (entry is unallocated). */
  l2TableOffset: number;
  entry: L2Entry;
}

const UNALLOCATED: L2Entry = {
  kind: 'unallocated',
  hostOffset: 0,
  compressedSize: 0,
  copied: false,
  allocMask: 0,
  zeroMask: 0,
  reservedBits: false,
};

/** Compressed clusters closer than this in the file are fetched with one read. */
const COMPRESSED_GAP = 64 * 1024;
/** Largest single read of compressed data. */
const COMPRESSED_SPAN = 16 * 1024 * 1024;
/** L2 tables requested ahead of a walk. */
const L2_PREFETCH = 32;
/** Runs of host reads issued at once. */
const READ_CONCURRENCY = 4;

interface HostRun {
  host: number;
  out: number;
  length: number;
}

export class Qcow2Image implements Disk {
  readonly virtualSize: number;
  private readonly l2Cache: LruCache<number, Promise<Buffer>>;
  private readonly compressedCache: LruCache<number, Buffer>;

  private constructor(
    readonly file: RandomAccessFile,
    readonly header: Qcow2Header,
    /** The active L1 table, raw big-endian entries (decode with l1EntryL2Offset). */
    readonly l1Table: Buffer,
    opts: Qcow2OpenOptions,
  ) {
    this.virtualSize = header.size;
    const l2Tables = Math.max(16, Math.floor((opts.l2CacheBytes ?? 32 * 1024 * 1024) / header.clusterSize));
    this.l2Cache = new LruCache(l2Tables);
    this.compressedCache = new LruCache(opts.compressedCacheClusters ?? 16);
  }

  /** Parses the header and loads the active L1 table. The file stays owned by the image (close() closes it). */
  static async open(file: RandomAccessFile, opts: Qcow2OpenOptions = {}): Promise<Qcow2Image> {
    const header = await readQcow2Header(file);
    const l1 = await readL1Table(file, header);
    checkActiveL1(file, header, l1);
    return new Qcow2Image(file, header, l1, opts);
  }

  get backingFileName(): string | undefined {
    return this.header.backingFileName;
  }

  get backingFormat(): string | undefined {
    return this.header.backingFormat;
  }

  get clusterSize(): number {
    return this.header.clusterSize;
  }

  /** Number of L1 entries that cover the virtual size (the table may hold more). */
  private get usedL1Entries(): number {
    const h = this.header;
    return Math.ceil(h.size / (h.clusterSize * h.l2Entries));
  }

  /** Drops cached L2 tables and clusters (after someone rewrote the file in place). */
  invalidateCaches(): void {
    this.l2Cache.clear();
    this.compressedCache.clear();
  }

  /** The L2 table for L1 entry `l1Index`, or undefined when the entry is empty. */
  private async l2Table(l1Index: number): Promise<{ offset: number; table: Buffer } | undefined> {
    const offset = l1EntryL2Offset(this.l1Table, l1Index);
    if (offset === 0) return undefined;
    return { offset, table: await this.loadL2(offset) };
  }

  private loadL2(offset: number): Promise<Buffer> {
    let p = this.l2Cache.get(offset);
    if (!p) {
      p = readL2Table(this.file, this.header, offset);
      this.l2Cache.set(offset, p);
      p.catch(() => this.l2Cache.delete(offset));
    }
    return p;
  }

  /**
   * Starts loading the L2 tables of L1 entries [from, to) without waiting: with small clusters a
   * walk crosses thousands of tables, and one read at a time would make it latency-bound (S3!).
   */
  private prefetchL2(from: number, to: number): void {
    const last = Math.min(to, this.usedL1Entries);
    for (let i = from; i < last; i++) {
      const offset = l1EntryL2Offset(this.l1Table, i);
      if (offset !== 0 && !this.l2Cache.has(offset)) this.loadL2(offset).catch(() => {});
    }
  }

  /** Host mapping of guest cluster `guestCluster` (its index, i.e. guest offset / cluster size). */
  async lookupCluster(guestCluster: number): Promise<ClusterMapping> {
    const h = this.header;
    if (guestCluster < 0 || guestCluster * h.clusterSize >= h.size) {
      throw new DiskError('DISK_RANGE', `${this.file.name}: cluster ${guestCluster} beyond the virtual size`);
    }
    const l1Index = Math.floor(guestCluster / h.l2Entries);
    const l2Index = guestCluster % h.l2Entries;
    const l2 = await this.l2Table(l1Index);
    if (!l2) return { guestCluster, l1Index, l2Index, l2TableOffset: 0, entry: UNALLOCATED };
    const entry = decodeL2Entry(l2.table, l2Index, h);
    this.checkEntryInFile(entry, guestCluster);
    return { guestCluster, l1Index, l2Index, l2TableOffset: l2.offset, entry };
  }

  private checkEntryInFile(e: L2Entry, guestCluster: number): void {
    if ((e.allocMask !== 0 || e.kind === 'compressed') && e.hostOffset >= this.file.size) {
      throw new DiskError(
        'QCOW2_MALFORMED',
        `${this.file.name}: guest cluster ${guestCluster} maps to ${e.hostOffset}, beyond the end of the file`,
      );
    }
  }

  /**
   * Calls `visit(guestCluster, entry)` for every guest cluster overlapping [offset, end), in order
   * (`entry` may be a reused object: keep its fields, not the object, except for compressed entries);
   * ranges whose L1 entry is empty are reported once as `visitEmpty(startCluster, endCluster)`.
   */
  private async walk(
    offset: number,
    end: number,
    visit: (guestCluster: number, entry: L2Entry) => void,
    visitEmpty: (firstCluster: number, endCluster: number) => void,
  ): Promise<void> {
    const h = this.header;
    const firstCluster = Math.floor(offset / h.clusterSize);
    const endCluster = Math.ceil(end / h.clusterSize);
    // Reused for plain data entries: visitors must not keep it (they copy what they need).
    const scratch: L2Entry = { ...UNALLOCATED, kind: 'data', allocMask: 1 };
    let c = firstCluster;
    while (c < endCluster) {
      const l1Index = Math.floor(c / h.l2Entries);
      const tableEnd = Math.min(endCluster, (l1Index + 1) * h.l2Entries);
      if (l1Index % L2_PREFETCH === 0 || c === firstCluster) {
        this.prefetchL2(
          l1Index + 1,
          Math.min(l1Index + 1 + L2_PREFETCH, Math.ceil(endCluster / h.l2Entries)),
        );
      }
      const l2 = await this.l2Table(l1Index);
      if (!l2) {
        visitEmpty(c, tableEnd);
      } else {
        const table = l2.table;
        for (; c < tableEnd; c++) {
          const index = c % h.l2Entries;
          if (!h.extendedL2) {
            // Fast path for the common entries (no allocation per cluster: 512-byte-cluster images
            // have millions): plain data with an aligned offset, or all-zero (unallocated).
            const hi = table.readUInt32BE(index * 8);
            const lo = table.readUInt32BE(index * 8 + 4);
            if (hi === 0 && lo === 0) {
              visit(c, UNALLOCATED);
              continue;
            }
            if ((hi & 0x7fffffff) < 0x01000000 && (lo & 0x1ff) === 0) {
              const host = (hi & 0x00ffffff) * 2 ** 32 + lo;
              if (host !== 0 && host % h.clusterSize === 0 && host < this.file.size) {
                scratch.hostOffset = host;
                scratch.copied = hi >>> 31 === 1;
                visit(c, scratch);
                continue;
              }
            }
          }
          const entry = decodeL2Entry(table, index, h);
          this.checkEntryInFile(entry, c);
          visit(c, entry);
        }
      }
      c = tableEnd;
    }
  }

  async extents(offset = 0, length = this.virtualSize - offset): Promise<Extent[]> {
    checkDiskRange(offset, length, this.virtualSize, this.file.name);
    const end = offset + length;
    const h = this.header;
    const out: Extent[] = [];
    const push = (start: number, stop: number, kind: ExtentKind) => {
      const s = Math.max(start, offset);
      const e = Math.min(stop, end);
      if (e <= s) return;
      const last = out[out.length - 1];
      if (last && last.kind === kind && last.offset + last.length === s) last.length += e - s;
      else out.push({ offset: s, length: e - s, kind });
    };
    const cs = h.clusterSize;
    await this.walk(
      offset,
      end,
      (c, entry) => {
        const base = c * cs;
        switch (entry.kind) {
          case 'data':
          case 'compressed':
            return push(base, base + cs, 'data');
          case 'zero':
            return push(base, base + cs, 'zero');
          case 'unallocated':
            return push(base, base + cs, 'unallocated');
          default:
            for (let sc = 0; sc < h.subclustersPerCluster; sc++) {
              const bit = 1 << sc;
              const kind: ExtentKind =
                entry.allocMask & bit ? 'data' : entry.zeroMask & bit ? 'zero' : 'unallocated';
              push(base + sc * h.subclusterSize, base + (sc + 1) * h.subclusterSize, kind);
            }
        }
      },
      (c0, c1) => push(c0 * cs, c1 * cs, 'unallocated'),
    );
    return out;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDiskRange(offset, length, this.virtualSize, this.file.name);
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    const h = this.header;
    const cs = h.clusterSize;
    const end = offset + length;
    const runs: HostRun[] = [];
    const compressed: { guestBase: number; entry: L2Entry }[] = [];
    const addHost = (guestStart: number, guestStop: number, host: number) => {
      const s = Math.max(guestStart, offset);
      const e = Math.min(guestStop, end);
      if (e <= s) return;
      const hostStart = host + (s - guestStart);
      // Guest-contiguous clusters that are also host-contiguous become one read.
      const last = runs[runs.length - 1];
      if (last && last.out + last.length === s - offset && last.host + last.length === hostStart) {
        last.length += e - s;
        return;
      }
      runs.push({ host: hostStart, out: s - offset, length: e - s });
    };
    await this.walk(
      offset,
      end,
      (c, entry) => {
        const base = c * cs;
        if (entry.kind === 'data') addHost(base, base + cs, entry.hostOffset);
        else if (entry.kind === 'compressed') compressed.push({ guestBase: base, entry });
        else if (entry.kind === 'mixed') {
          for (let sc = 0; sc < h.subclustersPerCluster; sc++) {
            if (entry.allocMask & (1 << sc)) {
              const s = base + sc * h.subclusterSize;
              addHost(s, s + h.subclusterSize, entry.hostOffset + sc * h.subclusterSize);
            }
          }
        }
        // zero and unallocated: `out` is already zeros
      },
      () => {},
    );
    if (runs.length === 1 && runs[0].length === length) {
      const buf = await this.file.read(runs[0].host, length);
      if (buf.length === length) return buf;
    }
    await forEachLimited(runs, READ_CONCURRENCY, async (r) => {
      const buf = await this.file.read(r.host, r.length);
      buf.copy(out, r.out); // a cluster cut short by the end of the file reads the rest as zeros
    });
    // Compressed clusters written in one go lie back to back in the file: read each such run once.
    for (let i = 0; i < compressed.length; ) {
      let j = i + 1;
      let spanEnd = compressed[i].entry.hostOffset + compressed[i].entry.compressedSize;
      while (j < compressed.length) {
        const e = compressed[j].entry;
        if (e.hostOffset < spanEnd - 512 || e.hostOffset > spanEnd + COMPRESSED_GAP) break;
        if (e.hostOffset + e.compressedSize - compressed[i].entry.hostOffset > COMPRESSED_SPAN) break;
        spanEnd = Math.max(spanEnd, e.hostOffset + e.compressedSize);
        j++;
      }
      const spanStart = compressed[i].entry.hostOffset;
      const needed = compressed.slice(i, j).some((c) => !this.compressedCache.get(c.entry.hostOffset));
      // The last sector of a compressed cluster may be cut short by the end of the file.
      const span = needed ? await this.file.read(spanStart, spanEnd - spanStart) : Buffer.alloc(0);
      for (; i < j; i++) {
        const { guestBase, entry } = compressed[i];
        const at = entry.hostOffset - spanStart;
        const cluster = this.decompress(entry, guestBase, () => span.subarray(at, at + entry.compressedSize));
        const s = Math.max(guestBase, offset);
        const e = Math.min(guestBase + cs, end);
        cluster.copy(out, s - offset, s - guestBase, e - guestBase);
      }
    }
    return out;
  }

  private decompress(entry: L2Entry, guestBase: number, source: () => Buffer): Buffer {
    const cached = this.compressedCache.get(entry.hostOffset);
    if (cached) return cached;
    const cs = this.header.clusterSize;
    const src = source();
    let cluster: Buffer;
    try {
      cluster = inflateRawSync(src, { maxOutputLength: cs, finishFlush: 2 /* Z_SYNC_FLUSH */ });
    } catch (err) {
      throw new DiskError(
        'QCOW2_MALFORMED',
        `${this.file.name}: compressed cluster at guest offset ${guestBase} does not inflate`,
        { cause: err },
      );
    }
    if (cluster.length !== cs) {
      throw new DiskError(
        'QCOW2_MALFORMED',
        `${this.file.name}: compressed cluster at guest offset ${guestBase} inflates to ${cluster.length} bytes`,
      );
    }
    this.compressedCache.set(entry.hostOffset, cluster);
    return cluster;
  }

  /** Bytes of the file referenced as data by the active L1 (compressed clusters count their size). */
  async allocatedBytes(): Promise<number> {
    let n = 0;
    const h = this.header;
    await this.walk(
      0,
      this.virtualSize,
      (_c, e) => {
        if (e.kind === 'compressed') n += e.compressedSize;
        else if (e.allocMask !== 0) {
          let bits = e.allocMask >>> 0;
          let count = 0;
          while (bits) {
            count += bits & 1;
            bits >>>= 1;
          }
          n += count * h.subclusterSize;
        }
      },
      () => {},
    );
    return n;
  }

  async close(): Promise<void> {
    this.invalidateCaches();
    await this.file.close();
  }

  /** Number of L1 entries covering the virtual size; entries past it are ignored. */
  get l1EntriesInUse(): number {
    return this.usedL1Entries;
  }
}

/**
 * Validates the L1 entries that cover the virtual size: aligned, inside the file, and no L2 table
 * named twice. QEMU never shares an L2 table within one L1; a hostile image that does could make a
 * walk visit the same table millions of times, so refusing it keeps every walk linear in the file.
 */
function checkActiveL1(file: RandomAccessFile, h: Qcow2Header, l1: Buffer): void {
  const used = Math.min(h.l1Size, Math.ceil(h.size / (h.clusterSize * h.l2Entries)));
  const seen = new Set<number>();
  for (let i = 0; i < used; i++) {
    const offset = l1EntryL2Offset(l1, i);
    if (offset === 0) continue;
    if (offset % h.clusterSize !== 0 || offset >= file.size) {
      throw new DiskError(
        'QCOW2_MALFORMED',
        `${file.name}: L1 entry ${i} points at an invalid L2 offset ${offset}`,
      );
    }
    if (seen.has(offset)) {
      throw new DiskError(
        'QCOW2_MALFORMED',
        `${file.name}: L2 table at ${offset} is used twice by the L1 table`,
      );
    }
    seen.add(offset);
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
export async function forEachLimited<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
