import type { Disk } from '../disk.js';
import type { Extent } from '../extent.js';
import { LocalFile, type RandomAccessFile } from '../io.js';
import { RawDisk } from '../raw.js';
import { ChainReader } from './chain.js';
import { decodeL2Entry, l1EntryL2Offset, readL2Table } from './format.js';
import { LruCache } from './lru.js';
import type { Qcow2Image } from './reader.js';

/**
 * Reads guest ranges of a disk into a buffer the caller owns (and recycles). Disk.read returns a
 * fresh buffer per call; copying gigabytes that way costs more in page faults and garbage
 * collection than in the copy itself. For a qcow2 chain this plans each read from the chain's
 * merged map and the layers' L2 tables and reads host ranges straight into the target; whatever it
 * does not handle itself (compressed clusters, subclusters, non-local files) goes through Disk.read.
 */
export interface BufferReader {
  readInto(target: Buffer, offset: number): Promise<void>;
}

export interface BufferReaderOptions {
  /**
   * Resolve each read through the layers for its own range instead of building the chain's map of
   * the whole disk once: for callers that read a small part of a big chain (commit reads what the
   * overlay maps; the base may be terabytes of mapped clusters).
   */
  perRangeMap?: boolean;
}

export function bufferReaderFor(disk: Disk, opts: BufferReaderOptions = {}): BufferReader {
  if (disk instanceof ChainReader) return new ChainBufferReader(disk, opts.perRangeMap ?? false);
  if (disk instanceof RawDisk && disk.file instanceof LocalFile) {
    const file = disk.file;
    return { readInto: (target, offset) => readFileInto(file, target, 0, target.length, offset) };
  }
  return {
    readInto: async (target, offset) => {
      (await disk.read(offset, target.length)).copy(target);
    },
  };
}

/** Reads [host, host+length) of `file` into target[at..]; zeros past the end of the file. */
async function readFileInto(
  file: RandomAccessFile,
  target: Buffer,
  at: number,
  length: number,
  host: number,
) {
  if (!(file instanceof LocalFile)) {
    if (file.readInto) return file.readInto(target.subarray(at, at + length), host);
    const buf = await file.read(host, length);
    buf.copy(target, at);
    if (buf.length < length) target.fill(0, at + buf.length, at + length);
    return;
  }
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.handle.read(target, at + done, length - done, host + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  if (done < length) target.fill(0, at + done, at + length);
}

interface HostRun {
  at: number;
  host: number;
  length: number;
}

class ChainBufferReader implements BufferReader {
  private readonly l2 = new LruCache<string, Promise<Buffer>>(256);

  constructor(
    private readonly chain: ChainReader,
    private readonly perRangeMap: boolean,
  ) {}

  async readInto(target: Buffer, offset: number): Promise<void> {
    let parts: Extent[];
    if (this.perRangeMap) {
      parts = [];
      await this.resolve(0, offset, offset + target.length, parts);
    } else {
      parts = await this.chain.extents(offset, target.length);
    }
    await Promise.all(parts.map((p) => this.readPart(p, target, offset)));
  }

  /** [start, end) as seen from layer `depth` down, asking each layer only about that range. */
  private async resolve(depth: number, start: number, end: number, out: Extent[]): Promise<void> {
    const layer = this.chain.layers[depth];
    const limit = Math.min(end, layer.disk.virtualSize);
    if (start < limit) {
      for (const e of await layer.disk.extents(start, limit - start)) {
        if (e.kind === 'unallocated' && depth + 1 < this.chain.layers.length) {
          await this.resolve(depth + 1, e.offset, e.offset + e.length, out);
        } else {
          out.push({ offset: e.offset, length: e.length, kind: e.kind, depth });
        }
      }
    }
    // Past a layer's end: zeros (a smaller backing file).
    const from = Math.max(start, limit);
    if (from < end) out.push({ offset: from, length: end - from, kind: 'zero', depth });
  }

  private async readPart(e: Extent, target: Buffer, base: number): Promise<void> {
    const at = e.offset - base;
    if (e.kind !== 'data') {
      target.fill(0, at, at + e.length);
      return;
    }
    const layer = this.chain.layers[e.depth ?? 0];
    if (layer.format === 'raw') return readFileInto(layer.file, target, at, e.length, e.offset);
    const image = layer.disk as Qcow2Image;
    const runs = await this.hostRuns(image, e, at);
    if (runs === undefined) {
      (await image.read(e.offset, e.length)).copy(target, at);
      return;
    }
    await Promise.all(runs.map((r) => readFileInto(image.file, target, r.at, r.length, r.host)));
  }

  /** Host ranges holding a data extent of `image`, or undefined when a cluster is not plain data. */
  private async hostRuns(image: Qcow2Image, e: Extent, at: number): Promise<HostRun[] | undefined> {
    const h = image.header;
    const cs = h.clusterSize;
    const runs: HostRun[] = [];
    const end = e.offset + e.length;
    for (let pos = e.offset; pos < end; ) {
      const cluster = Math.floor(pos / cs);
      const l1Index = Math.floor(cluster / h.l2Entries);
      const l2Offset = l1EntryL2Offset(image.l1Table, l1Index);
      if (l2Offset === 0) return undefined;
      const table = await this.table(image, l2Offset);
      const tableEnd = Math.min(end, (l1Index + 1) * h.l2Entries * cs);
      for (let c = cluster; pos < tableEnd; c++) {
        const entry = decodeL2Entry(table, c % h.l2Entries, h);
        // Anything but plain data, or a cluster the file does not hold: Disk.read decides.
        if (entry.kind !== 'data' || entry.hostOffset >= image.file.size) return undefined;
        const stop = Math.min(tableEnd, (c + 1) * cs);
        const host = entry.hostOffset + (pos - c * cs);
        const last = runs[runs.length - 1];
        if (last && last.host + last.length === host) last.length += stop - pos;
        else runs.push({ at: at + (pos - e.offset), host, length: stop - pos });
        pos = stop;
      }
    }
    return runs;
  }

  private table(image: Qcow2Image, l2Offset: number): Promise<Buffer> {
    const key = `${image.file.name}:${l2Offset}`;
    let p = this.l2.get(key);
    if (!p) {
      p = readL2Table(image.file, image.header, l2Offset);
      this.l2.set(key, p);
      p.catch(() => this.l2.delete(key));
    }
    return p;
  }
}
