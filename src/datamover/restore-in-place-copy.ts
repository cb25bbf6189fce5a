import type { Disk } from '../disk/disk.js';
import type { Extent } from '../disk/extent.js';
import { readAheadInOrder } from '../disk/read-ahead.js';
import type { InPlaceTarget } from './restore-in-place-target.js';

export interface InPlaceCopyOptions {
  /** Guest data bytes written so far, out of the snapshot's data bytes. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
  /** Largest single read/write (default 4 MiB). */
  chunkBytes?: number;
  /** Source reads in flight (default 8). */
  readAhead?: number;
  /** Writes in flight (default 4). */
  writesInFlight?: number;
}

export interface InPlaceCopyResult {
  dataBytes: number;
  /** Bytes that held something now but are zero or unallocated in the snapshot: zeroed. */
  zeroedBytes: number;
}

/**
 * The ranges that must be zeroed: not data in the snapshot, but not reading as zeros now. Both
 * lists sorted; `current` covers at least every non-data range of `snapshot`.
 */
export function rangesToZero(snapshot: readonly Extent[], current: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const s of snapshot) {
    if (s.kind === 'data') continue;
    const end = s.offset + s.length;
    while (j < current.length && current[j].offset + current[j].length <= s.offset) j++;
    for (let k = j; k < current.length && current[k].offset < end; k++) {
      const c = current[k];
      if (c.kind !== 'data') continue;
      const from = Math.max(s.offset, c.offset);
      const to = Math.min(end, c.offset + c.length);
      const last = out[out.length - 1];
      if (last && last.offset + last.length === from) last.length += to - from;
      else if (to > from) out.push({ offset: from, length: to - from, kind: 'zero' });
    }
  }
  return out;
}

function* chunks(
  extents: readonly Extent[],
  chunkBytes: number,
): Generator<{ offset: number; length: number }> {
  for (const e of extents) {
    if (e.kind !== 'data') continue;
    for (let o = e.offset; o < e.offset + e.length; o += chunkBytes) {
      yield { offset: o, length: Math.min(chunkBytes, e.offset + e.length - o) };
    }
  }
}

/**
 * Makes `dest` read exactly like `source` (a snapshot's synthetic full): ranges that are not data in
 * the snapshot are zeroed where `dest` does not read as zeros already, then every data range is
 * written, reads running ahead and several writes in flight. Same size required (the caller checks).
 */
export async function writeDiskInPlace(
  source: Disk,
  dest: InPlaceTarget,
  opts: InPlaceCopyOptions = {},
): Promise<InPlaceCopyResult> {
  const map = await source.extents();
  const total = map.reduce((n, e) => n + (e.kind === 'data' ? e.length : 0), 0);
  let zeroedBytes = 0;
  // The current state is only asked for where the snapshot has no data: that is all we compare.
  const holes = map.filter((e) => e.kind !== 'data');
  const current: Extent[] = [];
  for (const h of holes) {
    opts.signal?.throwIfAborted();
    current.push(...(await dest.currentExtents(h.offset, h.length)));
  }
  for (const z of rangesToZero(map, current)) {
    opts.signal?.throwIfAborted();
    await dest.writeZeroes(z.offset, z.length);
    zeroedBytes += z.length;
  }

  let done = 0;
  opts.onProgress?.(0, total);
  const inFlight = new Set<Promise<void>>();
  let failed: unknown;
  const limit = Math.max(1, opts.writesInFlight ?? 4);
  await readAheadInOrder(
    chunks(map, opts.chunkBytes ?? 4 << 20),
    (c) => source.read(c.offset, c.length),
    async (c, buf) => {
      while (inFlight.size >= limit) await Promise.race(inFlight);
      if (failed) throw failed;
      const p: Promise<void> = dest
        .write(c.offset, buf)
        .then(() => {
          done += c.length;
          opts.onProgress?.(done, total);
        })
        .catch((err) => {
          failed ??= err;
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    opts.readAhead ?? 8,
    opts.signal,
  ).finally(() => Promise.allSettled(inFlight));
  await Promise.allSettled(inFlight);
  if (failed) throw failed;
  return { dataBytes: total, zeroedBytes };
}
