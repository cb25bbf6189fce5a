import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Disk } from '../disk.js';
import { DiskError } from '../errors.js';
import { coalesceExtents, type Extent } from '../extent.js';
import { LocalFile, type RandomAccessFile } from '../io.js';
import { checkDiskRange } from '../range.js';
import { RawDisk } from '../raw.js';
import { QCOW2_MAGIC } from './format.js';
import { forEachLimited, Qcow2Image, type Qcow2Image as Qcow2ImageType } from './reader.js';

/**
 * A qcow2 image and its whole backing chain as one `Disk`. The chain is resolved into ONE merged
 * extent map (each extent tagged with the depth of the layer that supplies it, 0 = top) the first
 * time it is needed; reads are then planned per extent from that map and go straight to the layer
 * holding the bytes, never probing layer by layer per cluster.
 */

/** Finds and opens a backing file named `name` (as written in `child`'s header). */
export type BackingResolver = (name: string, child: RandomAccessFile) => Promise<RandomAccessFile>;

/**
 * The filesystem resolver: relative names resolve against the child's directory (what qemu does, and
 * what keeps a copied target working), absolute names are used as they are. Returned files are named
 * by their canonical path so loops through symlinks are seen too.
 */
export const fileSystemBackingResolver: BackingResolver = async (name, child) => {
  const path = isAbsolute(name) ? name : resolve(dirname(child.name), name);
  let canonical: string;
  try {
    canonical = await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new DiskError('DISK_NOT_FOUND', `${child.name}: backing file ${name} not found (${path})`, {
        cause: err,
      });
    }
    throw new DiskError('DISK_IO', `${child.name}: backing file ${path}: ${code ?? String(err)}`, {
      cause: err,
    });
  }
  return LocalFile.open(canonical);
};

export const DEFAULT_MAX_CHAIN_DEPTH = 1000;

export interface ChainOptions {
  resolver?: BackingResolver;
  /** Refuse chains with more layers than this (default 1000). */
  maxDepth?: number;
}

export interface ChainLayer {
  format: 'qcow2' | 'raw';
  disk: Qcow2ImageType | RawDisk;
  file: RandomAccessFile;
  /** The backing name as the child's header wrote it (undefined for the top). */
  nameInChild?: string;
}

/** Data extents read at once. */
const READ_CONCURRENCY = 4;

export class ChainReader implements Disk {
  readonly virtualSize: number;
  private mapPromise?: Promise<Extent[]>;

  private constructor(readonly layers: readonly ChainLayer[]) {
    this.virtualSize = layers[0].disk.virtualSize;
  }

  /** Opens `top` (qcow2) and every backing file below it. Takes ownership of `top`. */
  static async open(top: RandomAccessFile, opts: ChainOptions = {}): Promise<ChainReader> {
    const resolver = opts.resolver ?? fileSystemBackingResolver;
    const maxDepth = opts.maxDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
    const layers: ChainLayer[] = [];
    const seen = new Set<string>();
    try {
      let file = top;
      let format: 'qcow2' | 'raw' = 'qcow2';
      let nameInChild: string | undefined;
      for (;;) {
        if (seen.has(file.name)) {
          await file.close();
          throw new DiskError('CHAIN_LOOP', `${top.name}: backing chain loops back to ${file.name}`);
        }
        seen.add(file.name);
        if (format === 'raw') {
          layers.push({ format, disk: new RawDisk(file), file, nameInChild });
          break;
        }
        let image: Qcow2Image;
        try {
          image = await Qcow2Image.open(file);
        } catch (err) {
          await file.close();
          throw err;
        }
        layers.push({ format, disk: image, file, nameInChild });
        const backing = image.backingFileName;
        if (backing === undefined) break;
        if (layers.length >= maxDepth) {
          throw new DiskError('CHAIN_TOO_DEEP', `${top.name}: backing chain deeper than ${maxDepth} layers`);
        }
        const declared = image.backingFormat;
        if (declared !== undefined && declared !== 'qcow2' && declared !== 'raw') {
          throw new DiskError(
            'QCOW2_UNSUPPORTED',
            `${file.name}: backing format ${declared} is not supported`,
          );
        }
        const child = file;
        file = await resolver(backing, child);
        nameInChild = backing;
        try {
          format = (declared as 'qcow2' | 'raw' | undefined) ?? (await probe(file));
        } catch (err) {
          await file.close();
          throw err;
        }
      }
    } catch (err) {
      await Promise.all(layers.map((l) => l.file.close().catch(() => {})));
      throw err;
    }
    return new ChainReader(layers);
  }

  get top(): Qcow2ImageType {
    return this.layers[0].disk as Qcow2ImageType;
  }

  /** The merged map of the whole disk (computed once, then shared by extents() and read()). */
  map(): Promise<Extent[]> {
    if (!this.mapPromise) {
      this.mapPromise = this.buildMap();
      this.mapPromise.catch(() => {
        this.mapPromise = undefined;
      });
    }
    return this.mapPromise;
  }

  private async buildMap(): Promise<Extent[]> {
    const out: Extent[] = [];
    await this.resolveRange(0, 0, this.virtualSize, out);
    return coalesceExtents(out);
  }

  /** Appends the extents of [start, end) as seen from layer `depth` downwards. */
  private async resolveRange(depth: number, start: number, end: number, out: Extent[]): Promise<void> {
    const layer = this.layers[depth];
    const limit = Math.min(end, layer.disk.virtualSize);
    if (start < limit) {
      for (const e of await layer.disk.extents(start, limit - start)) {
        if (e.kind === 'unallocated' && depth + 1 < this.layers.length) {
          await this.resolveRange(depth + 1, e.offset, e.offset + e.length, out);
        } else {
          out.push({ offset: e.offset, length: e.length, kind: e.kind, depth });
        }
      }
    }
    // A layer smaller than the one above it reads as zeros past its end; like qemu-img map, the range
    // is tagged with the depth of the last layer that still covers it.
    const from = Math.max(start, limit);
    if (from < end)
      out.push({ offset: from, length: end - from, kind: 'unallocated', depth: Math.max(0, depth - 1) });
  }

  async extents(offset = 0, length = this.virtualSize - offset): Promise<Extent[]> {
    checkDiskRange(offset, length, this.virtualSize);
    const end = offset + length;
    const map = await this.map();
    const out: Extent[] = [];
    for (let i = firstOverlapping(map, offset); i < map.length && map[i].offset < end; i++) {
      const e = map[i];
      const s = Math.max(e.offset, offset);
      const t = Math.min(e.offset + e.length, end);
      if (t > s) out.push({ ...e, offset: s, length: t - s });
    }
    return out;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDiskRange(offset, length, this.virtualSize);
    const parts = (await this.extents(offset, length)).filter((e) => e.kind === 'data');
    if (parts.length === 1 && parts[0].offset === offset && parts[0].length === length) {
      return this.layers[parts[0].depth ?? 0].disk.read(offset, length);
    }
    const out = Buffer.alloc(length);
    await forEachLimited(parts, READ_CONCURRENCY, async (e) => {
      const buf = await this.layers[e.depth ?? 0].disk.read(e.offset, e.length);
      buf.copy(out, e.offset - offset);
    });
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.layers.map((l) => l.disk.close()));
  }
}

/** Index of the first extent of the sorted `map` that ends after `offset` (binary search). */
function firstOverlapping(map: readonly Extent[], offset: number): number {
  let lo = 0;
  let hi = map.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (map[mid].offset + map[mid].length <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function probe(file: RandomAccessFile): Promise<'qcow2' | 'raw'> {
  const head = await file.read(0, 4);
  return head.length === 4 && head.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
}
