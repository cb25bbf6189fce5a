import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { openDirectWriter } from '../aligned-memory.js';
import { BufferPool } from '../buffer-pool.js';
import type { Disk } from '../disk.js';
import { fsyncDirectory, ioError, tempPathBeside } from '../file-sink.js';
import { dataRangesOf } from '../hole-map.js';
import { LocalFile } from '../io.js';
import { PositionalWriter } from '../positional-writer.js';
import { RawDisk } from '../raw.js';
import { readAheadInOrder } from '../read-ahead.js';
import type { ClusterRun } from './cluster-plan.js';
import {
  computeLayout,
  encodeHeaderCluster,
  encodeL1Table,
  encodeL2Tables,
  encodeRefcountBlock,
  encodeRefcountTable,
  maxMetadataEnd,
  type Qcow2Layout,
} from './layout.js';
import { DEFAULT_CLUSTER_SIZE } from './writer.js';

export interface ScanWriteOptions {
  clusterSize?: number;
  readAhead?: number;
  chunkBytes?: number;
  /** Bytes of the source scanned so far, out of its virtual size. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

/**
 * qcow2 from a source whose only way to find data is to read it (a raw file: Node cannot ask for
 * holes): ONE read pass instead of a scan and then a copy. Each chunk is read once; its non-zero
 * clusters are appended at once after the largest metadata area the image could need, and the
 * metadata, now known, is written in front at the end. The unused part of that area stays a hole
 * (refcount 0). Needs a seekable local file, unlike Qcow2Writer which streams into any ByteSink.
 */
export async function writeQcow2ByScanning(
  source: Disk,
  path: string,
  opts: ScanWriteOptions = {},
): Promise<Qcow2Layout> {
  const cs = opts.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  const size = source.virtualSize;
  const dataOffset = Math.max(cs, Math.ceil(maxMetadataEnd(size, cs) / cs) * cs);
  const chunk = Math.max(cs, Math.floor((opts.chunkBytes ?? 2 << 20) / cs) * cs);
  const zeros = Buffer.alloc(cs);
  const runs: ClusterRun[] = [];
  const temp = tempPathBeside(path);
  let fh: FileHandle | undefined;
  let writer: PositionalWriter | undefined;
  try {
    fh = await open(temp, 'wx', 0o644);
    const out = new PositionalWriter(fh, { direct: await openDirectWriter(temp) });
    writer = out;
    let host = dataOffset;
    // Where the file can have data at all (whole disk when the filesystem cannot tell).
    const file = source instanceof RawDisk && source.file instanceof LocalFile ? source.file : undefined;
    const ranges = (file && (await dataRangesOf(file.name, size))) ?? [{ offset: 0, length: size }];
    const chunks = function* (): Generator<[number, number]> {
      let pos = 0;
      for (const r of ranges) {
        // Cluster-aligned, so a cluster is never read in two pieces (nor twice).
        const end = Math.min(size, Math.ceil((r.offset + r.length) / cs) * cs);
        for (let o = Math.max(pos, Math.floor(r.offset / cs) * cs); o < end; o += chunk) {
          const length = Math.min(chunk, end - o);
          yield [o, length];
          pos = o + length;
        }
      }
    };
    const readChunk = chunkReader(source, chunk, (opts.readAhead ?? 4) + 6);
    await readAheadInOrder(
      chunks(),
      ([offset, length]) => readChunk(offset, length),
      async ([offset], { data: buf, release }) => {
        // Consecutive non-zero clusters become one slice; the slices go out in one writev.
        const pieces: Buffer[] = [];
        let pieceStart = -1;
        let clusters = 0;
        let padTail = 0;
        const endPiece = (at: number) => {
          if (pieceStart >= 0) pieces.push(buf.subarray(pieceStart, at));
          pieceStart = -1;
        };
        for (let at = 0; at < buf.length; at += cs) {
          const part = buf.subarray(at, Math.min(at + cs, buf.length));
          if (part.equals(part.length === cs ? zeros : zeros.subarray(0, part.length))) {
            endPiece(at);
            continue;
          }
          if (pieceStart < 0) pieceStart = at;
          addDataCluster(runs, (offset + at) / cs);
          clusters++;
          // The last cluster cut by the virtual size: the file still holds a whole cluster.
          padTail = cs - part.length;
        }
        endPiece(buf.length);
        if (padTail > 0) pieces.push(zeros.subarray(0, padTail));
        if (clusters > 0) await out.write(pieces, host, release);
        else release();
        host += clusters * cs;
        opts.onProgress?.(offset + buf.length, size);
      },
      opts.readAhead ?? 4,
      opts.signal,
    );
    const layout = computeLayout(runs, size, cs, dataOffset);
    if (layout.fileSize !== host)
      throw new Error(`qcow2 scan writer: data ended at ${host}, expected ${layout.fileSize}`);
    const meta = [encodeHeaderCluster(layout), encodeRefcountTable(layout)];
    for (let i = 0; i < layout.refcountBlockCount; i++) meta.push(encodeRefcountBlock(layout, i));
    meta.push(encodeL1Table(layout), ...encodeL2Tables(layout, runs));
    await out.write(meta, 0);
    await out.finish();
    await fh.close();
    fh = undefined;
    await rename(temp, path);
    await fsyncDirectory(dirname(path));
    return layout;
  } catch (err) {
    await writer?.settle();
    await fh?.close().catch(() => {});
    await rm(temp, { force: true });
    throw ioError(path, 'writing qcow2 image', err);
  }
}

interface PooledChunk {
  data: Buffer;
  /** Gives the buffer back once nothing uses it any more. */
  release: () => void;
}

/**
 * Reads chunks into recycled buffers straight from the file of a local raw image; any other disk
 * goes through its own read (fresh buffers, nothing to recycle).
 */
function chunkReader(source: Disk, chunk: number, keep: number) {
  const file = source instanceof RawDisk && source.file instanceof LocalFile ? source.file : undefined;
  if (!file) {
    return async (offset: number, length: number): Promise<PooledChunk> => ({
      data: await source.read(offset, length),
      release: () => {},
    });
  }
  const pool = new BufferPool(chunk, keep);
  return async (offset: number, length: number): Promise<PooledChunk> => {
    const buf = pool.acquire();
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await file.handle.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      pool.release(buf);
      throw err;
    }
    buf.fill(0, done, length); // a file that shrank under us reads as zeros past its end
    return { data: buf.subarray(0, length), release: () => pool.release(buf) };
  };
}

function addDataCluster(runs: ClusterRun[], cluster: number): void {
  const last = runs[runs.length - 1];
  if (last && last.start + last.count === cluster) last.count++;
  else runs.push({ start: cluster, count: 1, kind: 'data' });
}
