import { DiskError } from '../disk/errors.js';
import type { RandomAccessFile } from '../disk/io.js';
import { type BackingResolver, ChainReader } from '../disk/qcow2/chain.js';
import type { TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { resolveRelativeKey } from './keys.js';

/**
 * Opens qcow2 chains stored on a target, on any backend: backing names resolve relative to the
 * child's key (as qemu resolves them relative to the child's directory) and never outside the target.
 */
export class TargetChainOpener {
  private readonly keys = new WeakMap<RandomAccessFile, string>();

  constructor(private readonly backend: TargetBackend) {}

  /** The resolver to hand to ChainReader; it only knows files opened through this opener. */
  readonly resolver: BackingResolver = async (name, child) => {
    const childKey = this.keys.get(child);
    if (childKey === undefined)
      throw new DiskError('DISK_IO', `${child.name}: not a file of ${this.backend.location}`);
    let key: string;
    try {
      key = resolveRelativeKey(childKey, name);
    } catch (err) {
      throw new DiskError('DISK_NOT_FOUND', `${child.name}: backing file ${name} is outside the target`, {
        cause: err,
      });
    }
    return this.openFile(key).catch((err) => {
      if (err instanceof TargetError && err.code === 'TARGET_NOT_FOUND') {
        throw new DiskError('DISK_NOT_FOUND', `${child.name}: backing file ${name} not found (${key})`, {
          cause: err,
        });
      }
      throw err;
    });
  };

  async openFile(key: string): Promise<RandomAccessFile> {
    const file = await this.backend.openRead(key);
    this.keys.set(file, key);
    return file;
  }

  /** The image at `key` and every backing image below it, as one Disk. */
  async openChain(key: string): Promise<ChainReader> {
    return ChainReader.open(await this.openFile(key), { resolver: this.resolver });
  }
}
