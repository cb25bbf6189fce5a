import { DiskError } from '../errors.js';
import type { LocalFile } from '../io.js';
import {
  type Qcow2Header,
  readRefcount,
  readRefcountBlock,
  readRefcountTable,
  refcountTableEntry,
  writeRefcount,
  writeRefcountTableEntry,
  writeU64,
} from './format.js';

/** Hands out clusters at the end of the file (the editor owns the cursor). */
export interface ClusterAllocator {
  readonly nextFree: number;
  allocate(clusters: number): number;
}

interface BlockState {
  offset: number;
  buf: Buffer;
  dirty: boolean;
}

type WriteAt = (offset: number, buf: Buffer) => Promise<void>;

/** The unit a disk writes atomically (and a page never splits). */
const SECTOR = 512;

/**
 * The refcount side of in-place editing (editor.ts orders the steps): refcount blocks cached while
 * they change, new blocks and a bigger refcount table allocated when new clusters need them. A new
 * block is written before the table entry pointing at it; a relocated table is written and synced
 * before the header switches to it in one sector write.
 */
export class RefcountEditor {
  private rtDirty = new Set<number>();
  /** A refcount table relocated since the last flush (written whole, then the header points at it). */
  private relocated?: { offset: number; clusters: number; old: { offset: number; clusters: number } };
  private readonly blocks = new Map<number, BlockState>();

  private constructor(
    private readonly file: LocalFile,
    private readonly header: Qcow2Header,
    private rt: Buffer,
    private readonly writeAt: WriteAt,
  ) {}

  static async load(file: LocalFile, header: Qcow2Header, writeAt: WriteAt): Promise<RefcountEditor> {
    return new RefcountEditor(file, header, Buffer.from(await readRefcountTable(file, header)), writeAt);
  }

  private get tableEntries(): number {
    return this.rt.length / 8;
  }

  /** First byte past the last cluster with a refcount (0 when none). */
  async endOfUsedClusters(): Promise<number> {
    const E = this.header.refcountBlockEntries;
    for (let i = this.tableEntries - 1; i >= 0; i--) {
      const off = refcountTableEntry(this.rt, i);
      if (off === 0) continue;
      const block = await readRefcountBlock(this.file, this.header, off);
      for (let j = E - 1; j >= 0; j--) {
        if (readRefcount(block, j, this.header.refcountOrder) !== 0)
          return (i * E + j + 1) * this.header.clusterSize;
      }
    }
    return 0;
  }

  /**
   * Allocates the refcount blocks (and, when the table is full, a bigger table) that clusters from
   * `from` up to the allocator's end need. They are allocated from the same allocator, so they
   * cover themselves.
   */
  cover(alloc: ClusterAllocator, from: number): { offset: number; length: number } | undefined {
    const cs = this.header.clusterSize;
    const E = this.header.refcountBlockEntries;
    let superseded: { offset: number; length: number } | undefined;
    for (;;) {
      const need = Math.floor((alloc.nextFree / cs - 1) / E) + 1;
      if (need > this.tableEntries) {
        // Room for twice what is needed, so one batch never relocates twice in a row.
        const clusters = Math.ceil((need * 2 * 8) / cs);
        const offset = alloc.allocate(clusters);
        const grown = Buffer.alloc(clusters * cs);
        this.rt.copy(grown);
        this.rt = grown;
        if (this.relocated)
          superseded = { offset: this.relocated.offset, length: this.relocated.clusters * cs };
        const old = this.relocated?.old ?? {
          offset: this.header.refcountTableOffset,
          clusters: this.header.refcountTableClusters,
        };
        this.relocated = { offset, clusters, old };
        continue;
      }
      let changed = false;
      for (let i = Math.floor(from / cs / E); i < need; i++) {
        if (refcountTableEntry(this.rt, i) !== 0) continue;
        const offset = alloc.allocate(1);
        this.blocks.set(i, { offset, buf: Buffer.alloc(cs), dirty: true });
        writeRefcountTableEntry(this.rt, i, offset);
        this.rtDirty.add(i);
        changed = true;
      }
      if (!changed) return superseded;
    }
  }

  private async block(index: number): Promise<BlockState> {
    let b = this.blocks.get(index);
    if (!b) {
      const offset = refcountTableEntry(this.rt, index);
      if (offset === 0) {
        throw new DiskError(
          'QCOW2_MALFORMED',
          `${this.file.name}: refcount block ${index} missing for a used cluster`,
        );
      }
      b = { offset, buf: Buffer.from(await readRefcountBlock(this.file, this.header, offset)), dirty: false };
      this.blocks.set(index, b);
    }
    return b;
  }

  /** Sets the refcount of clusters [first, end) (cluster numbers) to `value`, in memory. */
  async set(first: number, end: number, value: number): Promise<void> {
    const E = this.header.refcountBlockEntries;
    const order = this.header.refcountOrder;
    for (let c = first; c < end; ) {
      const b = await this.block(Math.floor(c / E));
      const stop = Math.min(end, (Math.floor(c / E) + 1) * E);
      for (; c < stop; c++) writeRefcount(b.buf, c % E, order, value);
      b.dirty = true;
    }
  }

  /** Drops one reference to every cluster touching [offset, offset+length), in memory. */
  async decrement(offset: number, length: number): Promise<void> {
    const cs = this.header.clusterSize;
    const E = this.header.refcountBlockEntries;
    const order = this.header.refcountOrder;
    for (let c = Math.floor(offset / cs); c <= Math.floor((offset + length - 1) / cs); c++) {
      const b = await this.block(Math.floor(c / E));
      const v = readRefcount(b.buf, c % E, order);
      if (v > 0) writeRefcount(b.buf, c % E, order, v - 1);
      b.dirty = true;
    }
  }

  /**
   * Writes dirty blocks, then the table entries, or the relocated table (synced) and the header
   * fields pointing at it. Returns the old table's range when one was replaced: the caller frees it
   * once this is durable.
   */
  async flush(onStep?: (step: string) => void): Promise<{ offset: number; length: number } | undefined> {
    for (const b of this.blocks.values()) {
      if (b.dirty) await this.writeAt(b.offset, b.buf);
      b.dirty = false;
    }
    onStep?.('refcount-blocks-written');
    let replaced: { offset: number; length: number } | undefined;
    if (this.relocated) {
      const r = this.relocated;
      await this.writeAt(r.offset, this.rt);
      await this.file.handle.sync();
      onStep?.('refcount-table-relocated');
      const fields = Buffer.alloc(12);
      writeU64(fields, 0, r.offset);
      fields.writeUInt32BE(r.clusters, 8);
      await this.writeAt(48, fields); // refcount_table_offset + refcount_table_clusters, one sector
      this.header.refcountTableOffset = r.offset;
      this.header.refcountTableClusters = r.clusters;
      replaced = { offset: r.old.offset, length: r.old.clusters * this.header.clusterSize };
      this.relocated = undefined;
    } else if (this.rtDirty.size > 0) {
      await this.linkNewBlocks();
    }
    this.rtDirty.clear();
    this.blocks.clear(); // all written: nothing needs to stay cached
    return replaced;
  }

  /**
   * Links new refcount blocks into the table in place. A new block's own refcount lives in a block
   * of the same or a higher index (blocks are only ever allocated past the clusters they cover), so
   * entries are written from the highest down, one 512-byte sector at a time (a sector write is
   * atomic, a process kill cannot tear it), each sector synced before the next: at no moment does
   * the table point at a block whose own refcount is not yet reachable. The blocks themselves are
   * synced first, so a linked block never reads as zeros after a power loss.
   */
  private async linkNewBlocks(): Promise<void> {
    await this.file.handle.sync();
    const base = this.header.refcountTableOffset;
    const bySector = new Map<number, { lo: number; hi: number }>();
    for (const i of this.rtDirty) {
      const sector = Math.floor((base + i * 8) / SECTOR);
      const span = bySector.get(sector);
      if (!span) bySector.set(sector, { lo: i, hi: i });
      else bySector.set(sector, { lo: Math.min(span.lo, i), hi: Math.max(span.hi, i) });
    }
    const sectors = [...bySector.keys()].sort((a, b) => b - a);
    for (const [n, sector] of sectors.entries()) {
      const { lo, hi } = bySector.get(sector) as { lo: number; hi: number };
      await this.writeAt(base + lo * 8, this.rt.subarray(lo * 8, (hi + 1) * 8));
      if (n < sectors.length - 1) await this.file.handle.sync();
    }
  }
}
