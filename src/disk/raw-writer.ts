import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DiskError } from './errors.js';
import type { Extent } from './extent.js';
import { fsyncDirectory, tempPathBeside } from './file-sink.js';
import { PositionalWriter } from './positional-writer.js';
import type { ExtentSource } from './qcow2/writer.js';
import { readAheadInOrder } from './read-ahead.js';

export interface RawWriteInput {
  virtualSize: number;
  extents: readonly Extent[];
  /** Gives the final content; only read inside data extents. */
  source: ExtentSource;
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
  const chunkBytes = options.chunkBytes ?? 4 << 20;
  let total = 0;
  for (const e of input.extents) if (e.kind === 'data') total += e.length;
  const temp = tempPathBeside(path);
  let fh: FileHandle | undefined;
  let writer: PositionalWriter | undefined;
  try {
    fh = await open(temp, 'wx', 0o644);
    await fh.truncate(input.virtualSize);
    const out = new PositionalWriter(fh);
    writer = out;
    let done = 0;
    await readAheadInOrder(
      dataChunks(input.extents, input.virtualSize, chunkBytes),
      async (c) => {
        const buf = await input.source.read(c.offset, c.length);
        if (buf.length !== c.length) {
          throw new DiskError(
            'DISK_IO',
            `source returned ${buf.length} bytes at ${c.offset}, expected ${c.length}`,
          );
        }
        return buf;
      },
      async (c, buf) => {
        await out.write(buf, c.offset);
        done += buf.length;
        options.onProgress?.(done, total);
      },
      options.readAhead ?? 8,
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
