import { DiskError } from '../errors.js';
import { LocalFile } from '../io.js';
import { PositionalWriter } from '../positional-writer.js';
import {
  decodeL2Entry,
  type L2Entry,
  l1EntryL2Offset,
  type Qcow2Header,
  readL1Table,
  readL2Table,
  readQcow2Header,
  writeL1Entry,
  writeStandardL2Entry,
  writeU64,
} from './format.js';
import { RefcountEditor } from './refcount-editor.js';

/*
 * In-place editing of one qcow2 image, in an order that survives a crash at any moment:
 *   1. new clusters (data, new L2 tables) are written past the end of the file   -> fsync
 *   2. their refcounts are set (new refcount blocks / a relocated table first)    -> fsync
 *   3. L2 tables are rewritten in place, then L1 entries for new L2 tables        -> fsync
 *   4. clusters no longer referenced get their refcount decremented (a crash here only leaks)
 * Until step 3 nothing references the new clusters, so a crash leaks clusters at worst and never
 * makes a table point at unwritten data. New space is only ever taken at the end of the file: freed
 * clusters are not reused, which keeps every step independent of the others.
 */

interface L2State {
  offset: number;
  table: Buffer;
  /** Allocated in this batch: written whole in step 1, linked from L1 in step 3. */
  isNew: boolean;
  dirty: boolean;
}

async function writeAll(file: LocalFile, offset: number, buf: Buffer): Promise<void> {
  // The table readers check offsets against the file size: keep it current as the file grows.
  file.size = Math.max(file.size, offset + buf.length);
  let done = 0;
  while (done < buf.length) {
    done += (await file.handle.write(buf, done, buf.length - done, offset + done)).bytesWritten;
  }
}

function unsupported(path: string, what: string): DiskError {
  return new DiskError('QCOW2_UNSUPPORTED', `${path}: ${what}`);
}

export class Qcow2Editor {
  readonly clusterSize: number;
  private l1: Buffer;
  private l1DirtyLo = Number.POSITIVE_INFINITY;
  private l1DirtyHi = -1;
  private readonly l2 = new Map<number, L2State>();
  private readonly refcounts: RefcountEditor;
  /** First byte past every cluster in use: new clusters are only ever taken here. */
  nextFree: number;
  private batchStart: number;
  private pendingFrees: { offset: number; length: number }[] = [];
  /** Called between the steps of a barrier (crash tests kill the process there). */
  onStep?: (step: string) => void;
  /** Guest data writes: several in flight, flushed behind; drained at every barrier. */
  private readonly dataWriter: PositionalWriter;

  private constructor(
    readonly file: LocalFile,
    readonly header: Qcow2Header,
    l1: Buffer,
    refcounts: RefcountEditor,
    nextFree: number,
  ) {
    this.clusterSize = header.clusterSize;
    this.l1 = l1;
    this.refcounts = refcounts;
    this.nextFree = nextFree;
    this.batchStart = nextFree;
    this.dataWriter = new PositionalWriter(file.handle, { maxInFlight: 4, flushBehindBytes: 128 << 20 });
  }

  /** Opens `path` read-write. Refuses what in-place editing cannot keep consistent. */
  static async open(path: string): Promise<Qcow2Editor> {
    const file = await LocalFile.open(path, 'r+');
    try {
      const h = await readQcow2Header(file);
      if (h.nbSnapshots > 0) throw unsupported(path, 'image has internal snapshots');
      if (h.bitmaps && h.bitmaps.nbBitmaps > 0) throw unsupported(path, 'image has persistent bitmaps');
      if (h.extendedL2) throw unsupported(path, 'image uses extended L2 entries');
      if (h.corrupt) throw new DiskError('QCOW2_MALFORMED', `${path}: image is marked corrupt`);
      if (h.dirty)
        throw unsupported(path, 'image is dirty (lazy refcounts): repair it with qemu-img check -r all');
      const l1 = Buffer.from(await readL1Table(file, h));
      const refcounts = await RefcountEditor.load(file, h, (offset, buf) => writeAll(file, offset, buf));
      // Past the end of the file and past every cluster with a refcount (a crashed run may have
      // counted clusters it never wrote).
      const cs = h.clusterSize;
      const end = Math.max(cs, Math.ceil(file.size / cs) * cs, await refcounts.endOfUsedClusters());
      return new Qcow2Editor(file, h, l1, refcounts, end);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  get path(): string {
    return this.file.name;
  }

  // ------------------------------------------------------------------------------------ L1/L2

  /** Loads the L2 table of L1 entry `l1Index` (if any) so entry()/setEntry() can run synchronously. */
  async loadL2(l1Index: number): Promise<void> {
    if (this.l2.has(l1Index)) return;
    const offset = l1EntryL2Offset(this.l1, l1Index);
    if (offset === 0) return;
    const table = Buffer.from(await readL2Table(this.file, this.header, offset));
    this.l2.set(l1Index, { offset, table, isNew: false, dirty: false });
  }

  /** Loads the L2 tables covering guest clusters [first, first+count). */
  async loadL2Range(first: number, count: number): Promise<void> {
    const E = this.header.l2Entries;
    for (let t = Math.floor(first / E); t <= Math.floor((first + count - 1) / E); t++) await this.loadL2(t);
  }

  private static readonly UNALLOCATED: L2Entry = {
    kind: 'unallocated',
    hostOffset: 0,
    compressedSize: 0,
    copied: false,
    allocMask: 0,
    zeroMask: 0,
    reservedBits: false,
  };

  /** The current entry of a guest cluster (its L2 table must have been loaded). */
  entry(guestCluster: number): L2Entry {
    const E = this.header.l2Entries;
    const state = this.l2.get(Math.floor(guestCluster / E));
    if (!state) return Qcow2Editor.UNALLOCATED;
    return decodeL2Entry(state.table, guestCluster % E, this.header);
  }

  /** Points a guest cluster at `hostOffset` (0 = none), optionally as a zero cluster. */
  setEntry(guestCluster: number, hostOffset: number, zero: boolean): void {
    const E = this.header.l2Entries;
    const l1Index = Math.floor(guestCluster / E);
    let state = this.l2.get(l1Index);
    if (!state) {
      if (l1EntryL2Offset(this.l1, l1Index) !== 0) throw new Error('editor: L2 table not loaded');
      state = { offset: this.allocate(1), table: Buffer.alloc(this.clusterSize), isNew: true, dirty: true };
      this.l2.set(l1Index, state);
    }
    writeStandardL2Entry(state.table, guestCluster % E, this.header, {
      hostOffset,
      copied: hostOffset !== 0,
      zeroMask: zero ? 1 : 0,
    });
    state.dirty = true;
  }

  /** Takes `clusters` contiguous clusters at the end of the file; returns the offset of the first. */
  allocate(clusters: number): number {
    const off = this.nextFree;
    this.nextFree += clusters * this.clusterSize;
    return off;
  }

  /** Drops one reference to the clusters of [offset, offset+length) after the next L2 barrier. */
  freeLater(offset: number, length: number): void {
    this.pendingFrees.push({ offset, length });
  }

  /**
   * Starts writing guest data (returns once started); `onWritten` runs when `buf` is no longer
   * needed. The next barrier waits for it.
   */
  writeData(offset: number, buf: Buffer, onWritten?: () => void): Promise<void> {
    this.file.size = Math.max(this.file.size, offset + buf.length);
    return this.dataWriter.write(buf, offset, onWritten);
  }

  writeAt(offset: number, buf: Buffer): Promise<void> {
    return writeAll(this.file, offset, buf);
  }

  // ------------------------------------------------------------------------------------ barrier

  /** Makes everything since the last barrier durable and visible, in the crash-safe order. */
  async barrier(): Promise<void> {
    const fh = this.file.handle;
    await this.dataWriter.drain();
    for (const s of this.l2.values()) if (s.isNew) await this.writeAt(s.offset, s.table);
    this.onStep?.('new-clusters-written');
    await fh.sync();
    this.onStep?.('new-clusters-synced');

    await this.commitRefcounts();
    this.onStep?.('refcounts-synced');

    let wroteL2 = false;
    for (const s of this.l2.values()) {
      if (!s.isNew && s.dirty) {
        await this.writeAt(s.offset, s.table);
        wroteL2 = true;
      }
    }
    this.onStep?.('l2-written');
    if (wroteL2) await fh.sync();
    this.onStep?.('l2-synced');
    for (const [l1Index, s] of this.l2) {
      if (s.isNew) this.markL1(l1Index, s.offset);
    }
    if (this.l1DirtyHi >= 0) {
      const from = this.l1DirtyLo * 8;
      await this.writeAt(this.header.l1TableOffset + from, this.l1.subarray(from, (this.l1DirtyHi + 1) * 8));
      this.l1DirtyLo = Number.POSITIVE_INFINITY;
      this.l1DirtyHi = -1;
      this.onStep?.('l1-written');
      await fh.sync();
      this.onStep?.('l1-synced');
    }
    // The tables are durable: keep none in memory (bounded memory whatever the image size).
    this.l2.clear();
    if (this.pendingFrees.length > 0) {
      await this.applyFrees();
      await fh.sync(); // lost, these would only leak; synced, a normal run leaves no leak behind
    }
    this.onStep?.('frees-applied');
  }

  private markL1(l1Index: number, l2Offset: number): void {
    writeL1Entry(this.l1, l1Index, l2Offset, true);
    this.l1DirtyLo = Math.min(this.l1DirtyLo, l1Index);
    this.l1DirtyHi = Math.max(this.l1DirtyHi, l1Index);
  }

  /** Step 2: refcount 1 for everything allocated since the last barrier, then fsync. */
  private async commitRefcounts(): Promise<void> {
    if (this.nextFree === this.batchStart) return;
    const superseded = this.refcounts.cover(this, this.batchStart);
    if (superseded) this.freeLater(superseded.offset, superseded.length);
    const cs = this.clusterSize;
    await this.refcounts.set(this.batchStart / cs, this.nextFree / cs, 1);
    await this.flushRefcounts();
    await this.file.handle.sync();
    this.batchStart = this.nextFree;
  }

  private async flushRefcounts(): Promise<void> {
    const replaced = await this.refcounts.flush(this.onStep);
    if (replaced) this.freeLater(replaced.offset, replaced.length);
  }

  private async applyFrees(): Promise<void> {
    // A relocated table's old clusters are freed by the flush below: loop until none is left.
    while (this.pendingFrees.length > 0) {
      const frees = this.pendingFrees;
      this.pendingFrees = [];
      for (const f of frees) await this.refcounts.decrement(f.offset, f.length);
      await this.flushRefcounts();
    }
  }

  // ------------------------------------------------------------------------------------ header

  /**
   * Grows the virtual size (never shrinks). The L1 table grows in place when its clusters have
   * room, else moves to the end of the file; the header switches over in one sector write.
   */
  async growTo(virtualSize: number): Promise<void> {
    const h = this.header;
    if (virtualSize <= h.size) return;
    if (this.l2.size > 0 || this.nextFree !== this.batchStart) throw new Error('editor: growTo mid-batch');
    const cs = this.clusterSize;
    const needL1 = Math.ceil(virtualSize / (cs * h.l2Entries));
    let l1Offset = h.l1TableOffset;
    let oldL1: { offset: number; length: number } | undefined;
    if (needL1 > h.l1Size) {
      const inPlace = h.l1Size > 0 ? (Math.ceil((h.l1Size * 8) / cs) * cs) / 8 : 0;
      const grown = Buffer.alloc(needL1 * 8);
      this.l1.copy(grown);
      if (needL1 <= inPlace) {
        // The tail of the table's last cluster belongs to the table: make sure it reads as empty.
        await this.writeAt(h.l1TableOffset + h.l1Size * 8, grown.subarray(h.l1Size * 8));
      } else {
        l1Offset = this.allocate(Math.ceil((needL1 * 8) / cs));
        await this.writeAt(l1Offset, grown);
        if (h.l1Size > 0) oldL1 = { offset: h.l1TableOffset, length: h.l1Size * 8 };
      }
      this.l1 = grown;
      await this.file.handle.sync();
      await this.commitRefcounts();
    }
    const fields = Buffer.alloc(24); // size (24..32), crypt_method (32..36), l1_size, l1_table_offset
    writeU64(fields, 0, virtualSize);
    fields.writeUInt32BE(h.cryptMethod, 8);
    fields.writeUInt32BE(Math.max(needL1, h.l1Size), 12);
    writeU64(fields, 16, l1Offset);
    await this.writeAt(24, fields);
    await this.file.handle.sync();
    h.size = virtualSize;
    h.l1Size = Math.max(needL1, h.l1Size);
    h.l1TableOffset = l1Offset;
    if (oldL1) {
      this.freeLater(oldL1.offset, oldL1.length);
      await this.applyFrees();
      await this.file.handle.sync();
    }
  }

  /**
   * Replaces the backing file name so that a crash leaves either the old or the new name: the new
   * name goes to a free spot of the header cluster first (fsync), then offset and length switch in
   * one write inside the first sector (fsync).
   */
  async setBackingName(name: string): Promise<void> {
    const h = this.header;
    const bytes = Buffer.from(name, 'utf8');
    if (bytes.length === 0 || bytes.length > 1023) {
      throw unsupported(this.path, `backing file name must be 1..1023 bytes`);
    }
    const start = Math.ceil(h.extensionsEnd / 8) * 8;
    const oldFrom = h.backingFileOffset;
    const oldTo = h.backingFileOffset + h.backingFileSize;
    let at = start;
    if (h.backingFileOffset !== 0 && at < oldTo && at + bytes.length > oldFrom) at = Math.ceil(oldTo / 8) * 8;
    if (at + bytes.length > this.clusterSize) {
      throw unsupported(this.path, `no room in the header cluster for backing file name ${name}`);
    }
    await this.writeAt(at, bytes);
    await this.file.handle.sync();
    this.onStep?.('backing-name-staged');
    const fields = Buffer.alloc(12);
    writeU64(fields, 0, at);
    fields.writeUInt32BE(bytes.length, 8);
    await this.writeAt(8, fields);
    await this.file.handle.sync();
    h.backingFileOffset = at;
    h.backingFileSize = bytes.length;
    h.backingFileName = name;
  }

  async sync(): Promise<void> {
    await this.dataWriter.finish();
  }

  async close(): Promise<void> {
    await this.dataWriter.settle();
    await this.file.close();
  }
}
