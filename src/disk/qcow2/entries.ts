import { DiskError } from '../errors.js';
import type { Qcow2Header } from './header.js';

/**
 * Decoders and encoders of the 64-bit table entries of qcow2 (L1, L2, refcount table, refcount
 * block). Entries are handled as two 32-bit halves rather than BigInt: that keeps the hot loops of the
 * reader cheap, and every offset qcow2 can express (bits 9..55, cluster aligned) is exact in a double.
 */

const TWO_32 = 2 ** 32;
/** Bits 9..55 of an entry: a cluster-aligned host offset. */
const OFFSET_HI_MASK = 0x00ffffff;
const OFFSET_LO_MASK = 0xfffffe00;

/** The host offset in bits 9..55 of the entry at byte `pos`. */
function offsetBits(buf: Buffer, pos: number): number {
  return (
    (buf.readUInt32BE(pos) & OFFSET_HI_MASK) * TWO_32 + ((buf.readUInt32BE(pos + 4) & OFFSET_LO_MASK) >>> 0)
  );
}

/** Writes `v` (< 2^53) as a big-endian u64 made of two halves. */
export function writeU64(buf: Buffer, pos: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / TWO_32) >>> 0, pos);
  buf.writeUInt32BE((v % TWO_32) >>> 0, pos + 4);
}

// ---------------------------------------------------------------------------------------------- L1

/** Offset of the L2 table the L1 entry `index` points to; 0 = the whole range is unallocated. */
export function l1EntryL2Offset(l1: Buffer, index: number): number {
  return offsetBits(l1, index * 8);
}

/** Bit 63: the L2 table's refcount is exactly one. */
export function l1EntryCopied(l1: Buffer, index: number): boolean {
  return l1.readUInt32BE(index * 8) >>> 31 === 1;
}

/** True when reserved bits (0..8, 56..62) of the L1 entry are set. */
export function l1EntryReservedBits(l1: Buffer, index: number): boolean {
  return (l1.readUInt32BE(index * 8) & 0x7f000000) !== 0 || (l1.readUInt32BE(index * 8 + 4) & 0x1ff) !== 0;
}

export function writeL1Entry(l1: Buffer, index: number, l2Offset: number, copied = true): void {
  writeU64(l1, index * 8, l2Offset);
  if (copied && l2Offset !== 0) l1.writeUInt32BE((l1.readUInt32BE(index * 8) | 0x80000000) >>> 0, index * 8);
}

// ---------------------------------------------------------------------------------------------- L2

/**
 * What one guest cluster is, from its L2 entry.
 * - data: every subcluster reads from `hostOffset` (+ subcluster offset)
 * - zero: reads as zeros (hostOffset, when not 0, is a preallocation that is not read)
 * - unallocated: falls through to the backing file
 * - compressed: `compressedSize` bytes at byte offset `hostOffset` inflate to one cluster
 * - mixed (extended L2 only): per subcluster, see allocMask / zeroMask
 */
export type L2EntryKind = 'unallocated' | 'data' | 'zero' | 'compressed' | 'mixed';

export interface L2Entry {
  kind: L2EntryKind;
  hostOffset: number;
  /** Compressed clusters: bytes from hostOffset to the end of the last sector used. */
  compressedSize: number;
  /** Bit 63 (refcount exactly one). */
  copied: boolean;
  /**
   * One bit per subcluster (bit i = subcluster i; a single bit 0 without extended L2): allocated,
   * i.e. read from the host cluster. Unsigned 32-bit.
   */
  allocMask: number;
  /** One bit per subcluster: reads as zeros. Never overlaps allocMask. */
  zeroMask: number;
  /** Reserved bits set (check reports it; reading ignores it like QEMU does). */
  reservedBits: boolean;
}

/** allocMask/zeroMask value meaning "every subcluster". */
export function fullSubclusterMask(h: Qcow2Header): number {
  return h.extendedL2 ? 0xffffffff : 1;
}

function badEntry(h: Qcow2Header, index: number, what: string): DiskError {
  return new DiskError('QCOW2_MALFORMED', `L2 entry ${index}: ${what}`, {
    details: { clusterBits: h.clusterBits },
  });
}

/** Decodes the L2 entry `index` of the table `l2`. Throws QCOW2_MALFORMED for impossible entries. */
export function decodeL2Entry(l2: Buffer, index: number, h: Qcow2Header): L2Entry {
  const pos = index * h.l2EntrySize;
  const hi = l2.readUInt32BE(pos);
  const lo = l2.readUInt32BE(pos + 4);
  const copied = hi >>> 31 === 1;
  if (((hi >>> 30) & 1) === 1) return decodeCompressed(hi, lo, copied, h, index);

  const hostOffset = (hi & OFFSET_HI_MASK) * TWO_32 + ((lo & OFFSET_LO_MASK) >>> 0);
  let reservedBits = (hi & 0x3f000000) !== 0 || (lo & 0x1fe) !== 0;
  if (hostOffset % h.clusterSize !== 0)
    throw badEntry(h, index, `host offset ${hostOffset} not cluster aligned`);
  const full = fullSubclusterMask(h);
  let allocMask: number;
  let zeroMask: number;
  if (h.extendedL2) {
    const bitmap = l2.readBigUInt64BE(pos + 8);
    allocMask = Number(bitmap & 0xffffffffn);
    zeroMask = Number(bitmap >> 32n);
    if ((lo & 1) !== 0) reservedBits = true; // bit 0 is no zero flag with extended L2
    if ((allocMask & zeroMask) !== 0) throw badEntry(h, index, 'subcluster both allocated and zero');
    if (allocMask !== 0 && hostOffset === 0)
      throw badEntry(h, index, 'allocated subclusters without host offset');
  } else if ((lo & 1) !== 0) {
    allocMask = 0;
    zeroMask = full;
  } else {
    allocMask = hostOffset === 0 ? 0 : full;
    zeroMask = 0;
  }
  let kind: L2EntryKind;
  if (allocMask === full) kind = 'data';
  else if (zeroMask === full) kind = 'zero';
  else if (allocMask === 0 && zeroMask === 0) kind = 'unallocated';
  else kind = 'mixed';
  return { kind, hostOffset, compressedSize: 0, copied, allocMask, zeroMask, reservedBits };
}

function decodeCompressed(hi: number, lo: number, copied: boolean, h: Qcow2Header, index: number): L2Entry {
  // Descriptor: bits 0..x-1 offset, bits x..61 additional 512-byte sectors, x = 62 - (cluster_bits - 8).
  const v = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo >>> 0);
  const x = BigInt(62 - (h.clusterBits - 8));
  const offset = v & ((1n << x) - 1n);
  const sectors = v >> x;
  if (offset >= 1n << 56n) throw badEntry(h, index, 'compressed cluster offset beyond 2^56');
  const hostOffset = Number(offset);
  const compressedSize = (Number(sectors) + 1) * 512 - (hostOffset % 512);
  return {
    kind: 'compressed',
    hostOffset,
    compressedSize,
    copied,
    allocMask: 0,
    zeroMask: 0,
    reservedBits: copied, // bit 63 must be 0 for compressed clusters
  };
}

/**
 * Writes a standard (non-compressed) L2 entry. Without extended L2, `zeroMask` 1 sets the zero flag
 * (v3 only) and `allocMask` is implied by hostOffset. With extended L2 both masks are written as given.
 */
export function writeStandardL2Entry(
  l2: Buffer,
  index: number,
  h: Qcow2Header,
  e: { hostOffset: number; copied?: boolean; allocMask?: number; zeroMask?: number },
): void {
  const pos = index * h.l2EntrySize;
  writeU64(l2, pos, e.hostOffset);
  let hi = l2.readUInt32BE(pos);
  let lo = l2.readUInt32BE(pos + 4);
  if (e.copied ?? e.hostOffset !== 0) hi = (hi | 0x80000000) >>> 0;
  if (h.extendedL2) {
    const alloc = e.allocMask ?? (e.hostOffset !== 0 ? 0xffffffff : 0);
    const zero = e.zeroMask ?? 0;
    l2.writeUInt32BE(zero >>> 0, pos + 8);
    l2.writeUInt32BE(alloc >>> 0, pos + 12);
  } else if ((e.zeroMask ?? 0) !== 0) {
    lo = (lo | 1) >>> 0;
  }
  l2.writeUInt32BE(hi, pos);
  l2.writeUInt32BE(lo, pos + 4);
}

/** Writes a compressed-cluster L2 entry: `size` bytes of deflate data at byte offset `hostOffset`. */
export function writeCompressedL2Entry(
  l2: Buffer,
  index: number,
  h: Qcow2Header,
  hostOffset: number,
  size: number,
) {
  const pos = index * h.l2EntrySize;
  const x = BigInt(62 - (h.clusterBits - 8));
  const additionalSectors = BigInt(Math.ceil(((hostOffset % 512) + size) / 512) - 1);
  const v = (1n << 62n) | (additionalSectors << x) | BigInt(hostOffset);
  l2.writeBigUInt64BE(v, pos);
  if (h.extendedL2) l2.writeBigUInt64BE(0n, pos + 8);
}

// -------------------------------------------------------------------------------------- refcounts

/** Offset of the refcount block the refcount-table entry `index` points to; 0 = not allocated. */
export function refcountTableEntry(table: Buffer, index: number): number {
  const hi = table.readUInt32BE(index * 8);
  const lo = table.readUInt32BE(index * 8 + 4);
  return hi * TWO_32 + ((lo & OFFSET_LO_MASK) >>> 0);
}

export function writeRefcountTableEntry(table: Buffer, index: number, blockOffset: number): void {
  writeU64(table, index * 8, blockOffset);
}

/** Refcount `index` of a refcount block whose entries are 2^order bits wide (order 0..6). */
export function readRefcount(block: Buffer, index: number, order: number): number {
  switch (order) {
    case 3:
      return block[index];
    case 4:
      return block.readUInt16BE(index * 2);
    case 5:
      return block.readUInt32BE(index * 4);
    case 6: {
      const v = block.readBigUInt64BE(index * 8);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
    default: {
      // Sub-byte widths: bit 0 is the least significant bit of the byte.
      const bits = 1 << order;
      const bit = index * bits;
      return (block[bit >>> 3] >>> (bit & 7)) & ((1 << bits) - 1);
    }
  }
}

/** Stores `value` (must fit in 2^order bits) as refcount `index` of `block`. */
export function writeRefcount(block: Buffer, index: number, order: number, value: number): void {
  switch (order) {
    case 3:
      block[index] = value;
      return;
    case 4:
      block.writeUInt16BE(value, index * 2);
      return;
    case 5:
      block.writeUInt32BE(value, index * 4);
      return;
    case 6:
      block.writeBigUInt64BE(BigInt(value), index * 8);
      return;
    default: {
      const bits = 1 << order;
      const bit = index * bits;
      const mask = ((1 << bits) - 1) << (bit & 7);
      block[bit >>> 3] = (block[bit >>> 3] & ~mask) | ((value << (bit & 7)) & mask);
    }
  }
}

/** Largest refcount a 2^order-bit entry holds. */
export function maxRefcount(order: number): number {
  return order >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1;
}
