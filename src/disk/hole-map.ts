import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import type { Extent } from './extent.js';
import { LocalFile } from './io.js';
import { RawDisk } from './raw.js';

/**
 * Where a local file holds data, by lseek(SEEK_DATA/SEEK_HOLE) — what qemu-img and cp use to skip
 * holes. Node cannot call lseek, so this asks `xfs_io -c "seek -a"` (xfsprogs), which prints every
 * data/hole boundary. Without it (or on a filesystem that cannot answer) the answer is undefined
 * and callers read the whole file instead: slower, never wrong. Data ranges may still contain
 * zeros; holes never contain data.
 */
export async function dataRangesOf(path: string, size: number): Promise<Extent[] | undefined> {
  let stdout: string;
  try {
    stdout = await new Promise<string>((ok, fail) => {
      execFile(
        'xfs_io',
        ['-r', '-c', 'seek -a -r 0', resolve(path)],
        { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 },
        (err, out) => (err ? fail(err) : ok(out)),
      );
    });
  } catch {
    return undefined;
  }
  const out: Extent[] = [];
  let dataFrom = -1;
  let last = -1;
  let sawHeader = false;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('Whence')) {
      sawHeader = true;
      continue;
    }
    const m = /^(DATA|HOLE)\s+(\d+)$/.exec(line.trim());
    if (!m) continue;
    const at = Number(m[2]);
    if (!Number.isSafeInteger(at) || at < last) return undefined; // not what we expect: do not guess
    last = at;
    if (m[1] === 'DATA') {
      if (dataFrom < 0) dataFrom = at;
    } else if (dataFrom >= 0) {
      if (at > dataFrom) out.push({ offset: dataFrom, length: Math.min(at, size) - dataFrom, kind: 'data' });
      dataFrom = -1;
    }
  }
  if (!sawHeader) return undefined;
  if (dataFrom >= 0 && dataFrom < size) out.push({ offset: dataFrom, length: size - dataFrom, kind: 'data' });
  return out.filter((e) => e.length > 0);
}

/**
 * The extent map of a raw disk: data where the file has data (zero elsewhere) when the filesystem
 * can say so, else the disk's own scan.
 */
export async function rawDiskExtents(disk: RawDisk): Promise<Extent[]> {
  if (disk.file instanceof LocalFile) {
    const data = await dataRangesOf(disk.file.name, disk.virtualSize);
    if (data) {
      const out: Extent[] = [];
      let pos = 0;
      for (const e of data) {
        if (e.offset > pos) out.push({ offset: pos, length: e.offset - pos, kind: 'zero' });
        out.push(e);
        pos = e.offset + e.length;
      }
      if (pos < disk.virtualSize) out.push({ offset: pos, length: disk.virtualSize - pos, kind: 'zero' });
      return out;
    }
  }
  return disk.extents();
}

/** Extents of any disk, asking the filesystem for the holes of raw files. */
export function diskExtents(disk: { extents(): Promise<Extent[]> }): Promise<Extent[]> {
  return disk instanceof RawDisk ? rawDiskExtents(disk) : disk.extents();
}
