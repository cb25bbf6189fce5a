import type { Disk } from './disk.js';
import type { Extent, ExtentKind } from './extent.js';
import { LocalFile, type RandomAccessFile } from './io.js';
import { checkDiskRange } from './range.js';

/**
 * A raw image file as a `Disk`: the virtual size is the file size.
 *
 * Node has no lseek(SEEK_DATA/SEEK_HOLE), and the file may be an S3 object anyway, so holes cannot
 * be asked for. `extents()` instead reads the file in large slices and compares each 64 KiB chunk
 * with a zero buffer (Buffer.compare is a memcmp): all-zero chunks are `zero`, the others `data`.
 * 64 KiB matches the default qcow2 cluster, so a raw -> qcow2 copy skips exactly what a
 * cluster-granular writer could skip, and the scan runs at read speed. Raw images have no
 * `unallocated` extents: every byte is defined.
 */
export const RAW_SCAN_CHUNK = 64 * 1024;
/** Bytes read per request while scanning. */
const RAW_SCAN_READ = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(RAW_SCAN_CHUNK);

export class RawDisk implements Disk {
  readonly virtualSize: number;

  constructor(readonly file: RandomAccessFile) {
    this.virtualSize = file.size;
  }

  static async open(path: string): Promise<RawDisk> {
    return new RawDisk(await LocalFile.open(path));
  }

  async extents(offset = 0, length = this.virtualSize - offset): Promise<Extent[]> {
    checkDiskRange(offset, length, this.virtualSize, this.file.name);
    const end = offset + length;
    const out: Extent[] = [];
    const push = (start: number, stop: number, kind: ExtentKind) => {
      const last = out[out.length - 1];
      if (last && last.kind === kind && last.offset + last.length === start) last.length += stop - start;
      else out.push({ offset: start, length: stop - start, kind });
    };
    for (let pos = offset; pos < end; ) {
      // Slices end on chunk boundaries so chunks are aligned to the disk, not to the request.
      const sliceEnd = Math.min(
        end,
        (Math.floor(pos / RAW_SCAN_CHUNK) + RAW_SCAN_READ / RAW_SCAN_CHUNK) * RAW_SCAN_CHUNK,
      );
      const buf = await this.readPadded(pos, sliceEnd - pos);
      for (let s = pos; s < sliceEnd; ) {
        const e = Math.min(sliceEnd, (Math.floor(s / RAW_SCAN_CHUNK) + 1) * RAW_SCAN_CHUNK);
        const chunk = buf.subarray(s - pos, e - pos);
        const zero = chunk.compare(ZEROS, 0, chunk.length) === 0;
        push(s, e, zero ? 'zero' : 'data');
        s = e;
      }
      pos = sliceEnd;
    }
    return out;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDiskRange(offset, length, this.virtualSize, this.file.name);
    return this.readPadded(offset, length);
  }

  /** Reads exactly `length` bytes; a file that shrank under us reads as zeros past its end. */
  private async readPadded(offset: number, length: number): Promise<Buffer> {
    const buf = await this.file.read(offset, length);
    if (buf.length === length) return buf;
    const out = Buffer.alloc(length);
    buf.copy(out);
    return out;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
