import { BatchedSink } from '../batched-sink.js';
import { BufferPool } from '../buffer-pool.js';
import { DiskError } from '../errors.js';
import type { Extent } from '../extent.js';
import type { ByteSink } from '../io.js';
import { readAheadInOrder } from '../read-ahead.js';
import type { BufferReader } from './chain-buffer-reader.js';
import { type ClusterRun, planClusters } from './cluster-plan.js';
import {
  type BackingRef,
  computeLayout,
  encodeHeaderCluster,
  encodeL1Table,
  encodeL2Tables,
  encodeRefcountBlock,
  encodeRefcountTable,
  type Qcow2Layout,
} from './layout.js';

/**
 * Where the writer gets its bytes. Contract: `read` returns the FINAL content of the virtual disk
 * (with a backing file: the merged view, backing content included), because a cluster only partly
 * covered by a data extent is copied whole. It is only called for ranges inside the virtual size.
 */
export interface ExtentSource {
  read(offset: number, length: number): Promise<Buffer>;
}

export interface Qcow2WriteInput {
  virtualSize: number;
  /** Sorted, non-overlapping; gaps count as unallocated. */
  extents: readonly Extent[];
  source: ExtentSource;
  /** Power of two, 512 B..2 MiB; default 64 KiB. */
  clusterSize?: number;
  /** Makes the image an overlay: zero extents become zero clusters, unallocated ones fall through. */
  backing?: BackingRef;
  /**
   * Reads the same content as `source` into buffers the writer owns. When the sink can lend buffers
   * back (ByteSink.writeBorrowed), data is read through this into recycled buffers: a fresh buffer
   * per chunk costs more in page faults and garbage collection than the copy itself.
   */
  reader?: BufferReader;
}

export interface Qcow2WriteOptions {
  /** Source reads kept in flight while earlier data is written (default 8). */
  readAhead?: number;
  /** Largest single read from the source and write to the sink (default 4 MiB). */
  chunkBytes?: number;
  /** Called after each write to the sink with output bytes written and the final file size. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

export interface Qcow2WriteResult {
  layout: Qcow2Layout;
  bytesWritten: number;
}

export const DEFAULT_CLUSTER_SIZE = 65536;
const DEFAULT_READ_AHEAD = 8;
const DEFAULT_CHUNK_BYTES = 4 << 20;

interface DataChunk {
  /** Guest byte offset (cluster aligned). */
  offset: number;
  /** Bytes to emit (whole clusters). */
  length: number;
}

/** Consecutive data clusters of the file, gathered from one or more guest runs. */
interface PackedChunk {
  pieces: DataChunk[];
  /** Bytes to emit: the sum of the pieces. */
  length: number;
}

/** Pooled chunks kept besides those read ahead: writes in flight in the sink (FileSink runs 4). */
const POOL_SPARE = 6;

/**
 * Writes a qcow2 image in one pass, strictly sequentially, from an extent map known up front: the
 * whole layout is computed first (see layout.ts), so the output can stream to a file, a pipe or an
 * S3 multipart upload. The sink is neither closed nor aborted here; that is the caller's call.
 */
export class Qcow2Writer {
  readonly layout: Qcow2Layout;
  private readonly runs: ClusterRun[];
  private readonly clusterSize: number;

  constructor(
    private readonly input: Qcow2WriteInput,
    private readonly options: Qcow2WriteOptions = {},
  ) {
    this.clusterSize = input.clusterSize ?? DEFAULT_CLUSTER_SIZE;
    this.runs = planClusters(input.extents, input.virtualSize, this.clusterSize, input.backing !== undefined);
    this.layout = computeLayout(this.runs, input.virtualSize, this.clusterSize);
    // Fails early (before any byte is written) when the backing name cannot be stored.
    encodeHeaderCluster(this.layout, input.backing);
  }

  async writeTo(sink: ByteSink): Promise<Qcow2WriteResult> {
    const { layout } = this;
    const chunkBytes = Math.max(this.clusterSize, this.options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    const out = new BatchedSink(sink, chunkBytes, (n) => this.options.onProgress?.(n, layout.fileSize));
    await out.push(encodeHeaderCluster(layout, this.input.backing));
    await out.push(encodeRefcountTable(layout));
    for (let i = 0; i < layout.refcountBlockCount; i++) await out.push(encodeRefcountBlock(layout, i));
    await out.push(encodeL1Table(layout));
    for (const table of encodeL2Tables(layout, this.runs)) await out.push(table);
    if (out.bytesWritten !== layout.dataOffset) {
      throw new Error(`qcow2 writer: metadata ended at ${out.bytesWritten}, expected ${layout.dataOffset}`);
    }
    if (this.input.reader && out.lends) await this.writeDataPooled(out, this.input.reader, chunkBytes);
    else await this.writeData(out, chunkBytes);
    await out.flush();
    if (out.bytesWritten !== layout.fileSize) {
      throw new Error(`qcow2 writer: wrote ${out.bytesWritten} bytes, expected ${layout.fileSize}`);
    }
    return { layout, bytesWritten: out.bytesWritten };
  }

  private *dataChunks(chunkBytes: number): Generator<DataChunk> {
    const cs = this.clusterSize;
    const perChunk = Math.max(1, Math.floor(chunkBytes / cs));
    for (const run of this.runs) {
      if (run.kind !== 'data') continue;
      for (let c = run.start; c < run.start + run.count; c += perChunk) {
        const n = Math.min(perChunk, run.start + run.count - c);
        yield { offset: c * cs, length: n * cs };
      }
    }
  }

  /**
   * Data clusters follow each other in the file whatever guest runs they come from, so every output
   * chunk is a full `chunkBytes` (but the first, cut to align the rest, and the last): few large
   * writes, no batching copies.
   */
  private *packedChunks(chunkBytes: number): Generator<PackedChunk> {
    const cs = this.clusterSize;
    const perChunk = Math.max(1, Math.floor(chunkBytes / cs));
    // The first chunk ends where the file offset is a multiple of the chunk size, so that every
    // later chunk covers whole blocks of a sink that hashes in blocks of that size (in place).
    const misaligned = (this.layout.dataOffset / cs) % perChunk;
    let limit = misaligned === 0 ? perChunk : perChunk - misaligned;
    let chunk: PackedChunk = { pieces: [], length: 0 };
    for (const run of this.runs) {
      if (run.kind !== 'data') continue;
      for (let c = run.start; c < run.start + run.count; ) {
        const n = Math.min(limit - chunk.length / cs, run.start + run.count - c);
        chunk.pieces.push({ offset: c * cs, length: n * cs });
        chunk.length += n * cs;
        c += n;
        if (chunk.length === limit * cs) {
          yield chunk;
          chunk = { pieces: [], length: 0 };
          limit = perChunk;
        }
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  private async readPacked(chunk: PackedChunk, buf: Buffer, reader: BufferReader): Promise<void> {
    let at = 0;
    const reads: Promise<void>[] = [];
    for (const piece of chunk.pieces) {
      const want = Math.min(piece.length, this.input.virtualSize - piece.offset);
      reads.push(reader.readInto(buf.subarray(at, at + want), piece.offset));
      // Last cluster past the virtual size: the file still holds whole clusters.
      if (want < piece.length) buf.fill(0, at + want, at + piece.length);
      at += piece.length;
    }
    // Every read must be over before the buffer can go back to the pool, failed or not.
    for (const r of await Promise.allSettled(reads)) if (r.status === 'rejected') throw r.reason;
  }

  private async writeDataPooled(out: BatchedSink, reader: BufferReader, chunkBytes: number): Promise<void> {
    const cs = this.clusterSize;
    const pool = new BufferPool(
      Math.max(1, Math.floor(chunkBytes / cs)) * cs,
      this.readAhead + POOL_SPARE,
      true, // shared memory: a hashing sink hashes the chunks where they are (no copy)
    );
    await readAheadInOrder(
      this.packedChunks(chunkBytes),
      async (chunk) => {
        const buf = pool.acquire();
        try {
          await this.readPacked(chunk, buf, reader);
        } catch (err) {
          pool.release(buf);
          throw err;
        }
        return buf;
      },
      (chunk, buf) => out.lend(buf.subarray(0, chunk.length), () => pool.release(buf)),
      this.readAhead,
      this.options.signal,
    );
  }

  private get readAhead(): number {
    return this.options.readAhead ?? DEFAULT_READ_AHEAD;
  }

  private async readChunk(chunk: DataChunk): Promise<Buffer> {
    const want = Math.min(chunk.length, this.input.virtualSize - chunk.offset);
    const got = await this.input.source.read(chunk.offset, want);
    if (got.length !== want) {
      throw new DiskError(
        'DISK_IO',
        `source returned ${got.length} bytes at ${chunk.offset}, expected ${want}`,
      );
    }
    if (want === chunk.length) return got;
    // Last cluster past the virtual size: the file still holds whole clusters.
    const padded = Buffer.alloc(chunk.length);
    got.copy(padded);
    return padded;
  }

  private async writeData(out: BatchedSink, chunkBytes: number): Promise<void> {
    await readAheadInOrder(
      this.dataChunks(chunkBytes),
      (chunk) => this.readChunk(chunk),
      (_chunk, data) => out.push(data),
      this.readAhead,
      this.options.signal,
    );
  }
}

/** One-shot form of {@link Qcow2Writer}. */
export function writeQcow2(
  input: Qcow2WriteInput,
  sink: ByteSink,
  options?: Qcow2WriteOptions,
): Promise<Qcow2WriteResult> {
  return new Qcow2Writer(input, options).writeTo(sink);
}
