import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DiskError } from '../disk/errors.js';
import type { Extent } from '../disk/extent.js';
import { LocalFile } from '../disk/io.js';
import { RawDisk } from '../disk/raw.js';
import { QemuNbdExport } from '../hypervisor/qemu-nbd.js';
import { NbdClient } from '../nbd/client.js';
import { readAllocationExtents } from '../nbd/extents.js';
import { BASE_ALLOCATION } from '../nbd/protocol.js';

const run = promisify(execFile);

/**
 * An existing disk an in-place restore writes over. `currentExtents` says where it reads as zeros
 * now ('zero') and where it may not ('data'), so only ranges that must change are touched.
 */
export interface InPlaceTarget {
  readonly name: string;
  readonly size: number;
  currentExtents(offset: number, length: number): Promise<Extent[]>;
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes [offset, offset+length) read as zeros, deallocating where the storage can. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Durable, then released (qemu-nbd stopped / file closed). */
  close(): Promise<void>;
  /** Released without caring for durability (after a failure). */
  abort(): Promise<void>;
}

/**
 * A qcow2 (or raw) image written through a read-write qemu-nbd export: NBD WRITE for data,
 * WRITE_ZEROES (may trim) for ranges that must read as zeros. Never TRIM alone: after a trim the
 * content is unspecified, and the result must equal the snapshot byte for byte.
 */
export class NbdInPlaceTarget implements InPlaceTarget {
  private constructor(
    readonly name: string,
    private readonly exp: QemuNbdExport,
    private readonly client: NbdClient,
  ) {}

  static async open(path: string, format: 'qcow2' | 'raw'): Promise<NbdInPlaceTarget> {
    const exp = await QemuNbdExport.start({ image: path, format, writable: true, maxClients: 4 });
    try {
      const client = await NbdClient.connect(exp.uri, { metaContexts: [BASE_ALLOCATION], maxInFlight: 16 });
      if (client.readOnly) throw new DiskError('DISK_READ_ONLY', `${path}: qemu-nbd exported it read-only`);
      return new NbdInPlaceTarget(path, exp, client);
    } catch (err) {
      await exp.stop();
      throw err;
    }
  }

  get size(): number {
    return this.client.size;
  }

  currentExtents(offset: number, length: number): Promise<Extent[]> {
    return readAllocationExtents(this.client, offset, length);
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.client.write(offset, data);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.client.canWriteZeroes) return this.client.writeZeroes(offset, length);
    const zeros = Buffer.alloc(Math.min(length, 4 << 20));
    for (let at = offset; at < offset + length; at += zeros.length) {
      await this.client.write(at, zeros.subarray(0, Math.min(zeros.length, offset + length - at)));
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.flush();
      await this.client.close();
    } finally {
      await this.exp.stop();
    }
  }

  async abort(): Promise<void> {
    this.client.destroy();
    await this.exp.stop();
  }
}

/**
 * A raw image file (or block device) written directly: positional writes for data; ranges that
 * must read as zeros are found by reading (Node has no SEEK_HOLE) and punched with fallocate(1)
 * (FALLOC_FL_PUNCH_HOLE keeps the size), or overwritten with zeros where punching is not supported.
 */
export class RawFileInPlaceTarget implements InPlaceTarget {
  private punchUnsupported = false;
  private readonly scanner: RawDisk;

  private constructor(
    readonly name: string,
    private readonly file: LocalFile,
  ) {
    this.scanner = new RawDisk(file);
  }

  static async open(path: string): Promise<RawFileInPlaceTarget> {
    return new RawFileInPlaceTarget(path, await LocalFile.open(path, 'r+'));
  }

  get size(): number {
    return this.file.size;
  }

  currentExtents(offset: number, length: number): Promise<Extent[]> {
    return this.scanner.extents(offset, length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.file.handle.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (!this.punchUnsupported) {
      try {
        await run('fallocate', [
          '--punch-hole',
          '--offset',
          String(offset),
          '--length',
          String(length),
          this.name,
        ]);
        return;
      } catch {
        this.punchUnsupported = true; // e.g. a filesystem without hole punching: write zeros instead
      }
    }
    const zeros = Buffer.alloc(Math.min(length, 4 << 20));
    for (let at = offset; at < offset + length; at += zeros.length) {
      await this.write(at, zeros.subarray(0, Math.min(zeros.length, offset + length - at)));
    }
  }

  async close(): Promise<void> {
    await this.file.handle.sync();
    await this.file.close();
  }

  async abort(): Promise<void> {
    await this.file.close().catch(() => {});
  }
}
