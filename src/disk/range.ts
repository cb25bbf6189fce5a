import { DiskError } from './errors.js';

/**
 * Throws DISK_RANGE unless [offset, offset+length) is whole bytes inside a disk of `size` bytes:
 * the one check every `Disk` makes before `read` and `extents`. `name` (a file, an export) leads
 * the message when given.
 */
export function checkDiskRange(offset: number, length: number, size: number, name?: string): void {
  const where = name === undefined ? '' : `${name}: `;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new DiskError('DISK_RANGE', `${where}invalid range ${offset}+${length}`, {
      details: { offset, length, size },
    });
  }
  if (offset + length > size) {
    throw new DiskError('DISK_RANGE', `${where}range ${offset}+${length} beyond the virtual size ${size}`, {
      details: { offset, length, size },
    });
  }
}
