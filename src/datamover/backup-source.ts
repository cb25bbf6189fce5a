import type { FreezeResult } from '../hypervisor/guest-agent.js';

/**
 * Where the disks of one backup are read from: a libvirt pull-mode backup job (running domain) or
 * read-only qemu-nbd exports (shut-off domain). Both serve each disk's point-in-time content over
 * NBD, with the changes since the parent snapshot as a dirty bitmap for incremental disks, and both
 * own a new checkpoint that becomes the start of the next incremental.
 */
export interface DiskExport {
  uri: string;
  /** Bitmap to read the changes from; absent: this disk is read in full. */
  dirtyBitmap?: string;
}

export interface BackupSource {
  readonly kind: 'pull-backup' | 'qemu-nbd';
  /** Per disk target (`vda`). */
  readonly exports: ReadonlyMap<string, DiskExport>;
  /** Guest filesystem freeze around the checkpoint (running domains); undefined for shut-off ones. */
  readonly freeze?: FreezeResult;
  /** The new checkpoint's name, or undefined when no disk can carry a bitmap. */
  readonly checkpoint?: string;
  /** Ends the backup job / stops the exports and removes scratch files. Safe to call twice. */
  close(): Promise<void>;
  /**
   * After every disk was copied: makes the new checkpoint known to libvirt (shut-off domains) and
   * returns its XML as saved in vm.json (null when there is no checkpoint).
   */
  commitCheckpoint(): Promise<string | null>;
  /** After a failure: deletes the new checkpoint, so the previous one still covers every change. */
  discardCheckpoint(): Promise<void>;
}
