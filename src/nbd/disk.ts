import type { Disk } from '../disk/disk.js';
import type { Extent } from '../disk/extent.js';
import { checkDiskRange } from '../disk/range.js';
import { NbdClient, type NbdClientOptions, type NbdTargetInput } from './client.js';
import { readAllocationExtents } from './extents.js';
import { BASE_ALLOCATION } from './protocol.js';

/**
 * An NBD export as a Disk: extents from `base:allocation` (all 'data' when the server has no block
 * status), reads split at the server's limits with many requests in flight.
 */
export class NbdDisk implements Disk {
  constructor(
    readonly client: NbdClient,
    private readonly ownsClient = true,
  ) {}

  /** Connects to a URI/target and wraps the client; closing the disk closes the connection. */
  static async open(target: NbdTargetInput, options: NbdClientOptions = {}): Promise<NbdDisk> {
    const metaContexts = options.metaContexts ?? [BASE_ALLOCATION];
    return new NbdDisk(await NbdClient.connect(target, { ...options, metaContexts }));
  }

  get virtualSize(): number {
    return this.client.size;
  }

  async extents(offset = 0, length = this.virtualSize - offset): Promise<Extent[]> {
    checkDiskRange(offset, length, this.virtualSize, 'NBD export');
    if (length === 0) return [];
    if (!this.client.hasMetaContext(BASE_ALLOCATION)) return [{ offset, length, kind: 'data' }];
    return readAllocationExtents(this.client, offset, length);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDiskRange(offset, length, this.virtualSize, 'NBD export');
    return this.client.read(offset, length);
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}
