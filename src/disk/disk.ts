import type { Extent } from './extent.js';

/**
 * A block device as Lifeboat sees it: raw files, qcow2 images, qcow2 chains and NBD exports all
 * implement this, so writers, checksums and restores never care where the bytes come from.
 */
export interface Disk {
  readonly virtualSize: number;
  /**
   * Extents covering [offset, offset+length) (default: the whole disk), sorted, non-overlapping,
   * adjacent extents of the same kind merged.
   */
  extents(offset?: number, length?: number): Promise<Extent[]>;
  /** Reads exactly `length` bytes at `offset`; zero and unallocated ranges read as zeros. */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}
