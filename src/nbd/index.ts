/** The NBD layer's public surface. */
export {
  NbdClient,
  type NbdClientOptions,
  type NbdTargetInput,
  type WriteOptions,
  type WriteZeroesOptions,
} from './client.js';
export { NbdDisk } from './disk.js';
export { NbdError, type NbdErrorCode } from './errors.js';
export {
  dirtyBitmapContext,
  intersectDirtyWithAllocation,
  readAllocationExtents,
  readDirtyExtents,
  readExtents,
  readIncrementalExtents,
  readStatusRanges,
  readStatusRangesOf,
  type StatusRange,
} from './extents.js';
export type { BlockSizeConstraints, ExportListing } from './handshake.js';
export { BASE_ALLOCATION, DIRTY_BITMAP_PREFIX } from './protocol.js';
export type { BlockDescriptor } from './replies.js';
export type { NbdEndpoint } from './transport.js';
export { formatNbdUri, NBD_DEFAULT_PORT, type NbdTarget, parseNbdUri } from './uri.js';
