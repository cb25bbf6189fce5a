import { chmod, lstat } from 'node:fs/promises';
import { convertImage } from '../disk/convert.js';
import type { Disk } from '../disk/disk.js';
import { bytesOfKind } from '../disk/extent.js';
import { abortedError, RestoreError } from './restore-errors.js';

export type RestoreFileFormat = 'qcow2' | 'raw';

export interface RestoreToFileOptions {
  format: RestoreFileFormat;
  /** Guest data bytes written so far, out of the disk's data bytes. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
  /** Source reads in flight while earlier data is written (default 8 x 4 MiB). */
  readAhead?: number;
}

export interface RestoreToFileResult {
  path: string;
  format: RestoreFileFormat;
  virtualSize: number;
  dataBytes: number;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes a disk (a target chain read through one merged map) into a NEW sparse image file: qcow2
 * through the one-pass writer, or raw with holes where the disk reads as zeros. The file appears
 * under `path` only when complete (temp file + rename) and is made world-readable, because QEMU
 * runs as libvirt-qemu and must open it. An existing file is never overwritten.
 */
export async function restoreDiskToFile(
  disk: Disk,
  path: string,
  opts: RestoreToFileOptions,
): Promise<RestoreToFileResult> {
  if (await exists(path)) {
    throw new RestoreError('RESTORE_OUTPUT_EXISTS', `${path} already exists; it is never overwritten`);
  }
  const total = bytesOfKind(await disk.extents(), 'data');
  opts.onProgress?.(0, total);
  try {
    await convertImage(disk, path, {
      format: opts.format,
      readAhead: opts.readAhead ?? 8,
      signal: opts.signal,
      // raw reports data bytes; qcow2 reports file bytes (metadata first): both scale to data bytes.
      onProgress: (done, of) =>
        opts.onProgress?.(of > 0 ? Math.min(total, Math.round((done / of) * total)) : 0, total),
    });
  } catch (err) {
    if (opts.signal?.aborted) throw abortedError(opts.signal, `restore of ${path}`);
    throw err;
  }
  await chmod(path, 0o644);
  opts.onProgress?.(total, total);
  return { path, format: opts.format, virtualSize: disk.virtualSize, dataBytes: total };
}
