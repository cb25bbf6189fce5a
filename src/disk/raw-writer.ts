import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { openDirectWriter } from './aligned-memory.js';
import { BufferPool } from './buffer-pool.js';
import { DiskError } from './errors.js';
import type { Extent } from './extent.js';
import { fsyncDirectory, tempPathBeside } from './file-sink.js';
import { PositionalWriter } from './positional-writer.js';
import type { BufferReader } from './qcow2/chain-buffer-reader.js';
import type { ExtentSource } from './qcow2/writer.js';
import { readAheadInOrder } from './read-ahead.js';

export interface RawWriteInput {
  virtualSize: number;
  extents: readonly Extent[];
  /** Gives the final content; only read inside data extents. */
  source: ExtentSource;
  /** Reads into recycled buffers when given (much cheaper for big copies than source.read). */
  reader?: BufferReader;
}

export interface RawWriteOptions {
  readAhead?: number;
  chunkBytes?: number;
  /** Data bytes written so far and the data bytes to write. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

interface Chunk {
  offset: number;
  length: number;
}

function* dataChunks(extents: readonly Extent[], virtualSize: number, chunkBytes: number): Generator<Chunk> {
  for (const e of extents) {
    if (e.kind !== 'data') continue;
    const end = Math.min(virtualSize, e.offset + e.length);
    for (let o = Math.max(0, e.offset); o < end; o += chunkBytes) {
      yield { offset: o, length: Math.min(chunkBytes, end - o) };
    }
  }
}

/**
 * Writes a sparse raw image: the file is sized to the virtual size (a hole, reading as zeros) and
 * only data extents are written. Written to a temp file beside `path`, fsynced, then renamed into
 * place, so `path` never holds half an image.
 */
export async function writeRawSparse(input: RawWriteInput, path: string, options: RawWriteOptions = {}) {
  const chunkBytes = options.chunkBytes ?? 2 << 20;
  let total = 0;
  for (const e of input.extents) if (e.kind === 'data') total += e.length;
  const temp = tempPathBeside(path);
  let fh: FileHandle | undefined;
  let writer: PositionalWriter | undefined;
  try {
    fh = await open(temp, 'wx', 0o644);
    await fh.truncate(input.virtualSize);
    const out = new PositionalWriter(fh, { direct: await openDirectWriter(temp) });
    writer = out;
    let done = 0;
    const readAhead = options.readAhead ?? 4;
    const pool = new BufferPool(chunkBytes, readAhead + 6);
    const { reader } = input;
    await readAheadInOrder(
      dataChunks(input.extents, input.virtualSize, chunkBytes),
      async (c): Promise<{ data: Buffer; pooled?: Buffer }> => {
        if (reader) {
          const pooled = pool.acquire();
          try {
            await reader.readInto(pooled.subarray(0, c.length), c.offset);
          } catch (err) {
            pool.release(pooled);
            throw err;
          }
          return { data: pooled.subarray(0, c.length), pooled };
        }
        const data = await input.source.read(c.offset, c.length);
        if (data.length !== c.length) {
          throw new DiskError(
            'DISK_IO',
            `source returned ${data.length} bytes at ${c.offset}, expected ${c.length}`,
          );
        }
        return { data };
      },
      async (c, { data, pooled }) => {
        await out.write(data, c.offset, pooled && (() => pool.release(pooled)));
        done += data.length;
        options.onProgress?.(done, total);
      },
      readAhead,
      options.signal,
    );
    await out.finish();
    await fh.close();
    fh = undefined;
    await rename(temp, path);
    await fsyncDirectory(dirname(path));
    return { bytesWritten: done };
  } catch (err) {
    await writer?.settle();
    await fh?.close().catch(() => {});
    await rm(temp, { force: true });
    if (err instanceof DiskError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new DiskError('DISK_IO', `${path}: writing raw image failed (${code ?? String(err)})`, {
      cause: err,
    });
  }
}
