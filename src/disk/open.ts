import { realpath } from 'node:fs/promises';
import type { Disk } from './disk.js';
import { DiskError } from './errors.js';
import { LocalFile, type RandomAccessFile } from './io.js';
import { type BackingResolver, ChainReader, fileSystemBackingResolver } from './qcow2/chain.js';
import { QCOW2_MAGIC } from './qcow2/format.js';
import { RawDisk } from './raw.js';

/** Image formats Lifeboat reads. */
export type DiskFormat = 'qcow2' | 'raw';

/** qcow2 when the file starts with the qcow2 magic, raw otherwise (like qemu-img's probe). */
export async function probeFormat(file: RandomAccessFile): Promise<DiskFormat> {
  const head = await file.read(0, 4);
  return head.length === 4 && head.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
}

export interface OpenDiskImageOptions {
  /** Skip probing and open as this format. */
  format?: DiskFormat;
  /** How backing names are found (default: the filesystem, relative to the child's directory). */
  resolver?: BackingResolver;
  /** Refuse chains with more layers than this (default 1000). */
  maxChainDepth?: number;
}

/**
 * Opens an image file for reading: a qcow2 image with its whole backing chain (a ChainReader, one
 * merged extent map) or a raw file (a RawDisk).
 */
export async function openDiskImage(
  path: string,
  opts: OpenDiskImageOptions = {},
): Promise<ChainReader | RawDisk> {
  let canonical: string;
  try {
    canonical = await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DiskError('DISK_NOT_FOUND', `${path}: no such file`, { cause: err });
    throw new DiskError('DISK_IO', `${path}: cannot open (${code ?? String(err)})`, { cause: err });
  }
  const file = await LocalFile.open(canonical);
  return openDiskFile(file, opts);
}

/** Like openDiskImage on an already open file (a local file, an S3 object...). Takes ownership of it. */
export async function openDiskFile(
  file: RandomAccessFile,
  opts: OpenDiskImageOptions = {},
): Promise<ChainReader | RawDisk> {
  let format: DiskFormat;
  try {
    format = opts.format ?? (await probeFormat(file));
  } catch (err) {
    await file.close().catch(() => {});
    throw err;
  }
  if (format === 'raw') return new RawDisk(file);
  return ChainReader.open(file, {
    resolver: opts.resolver ?? fileSystemBackingResolver,
    maxDepth: opts.maxChainDepth,
  });
}

export type { Disk };
