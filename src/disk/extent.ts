/**
 * The block model every layer shares: a disk is a virtual size plus a list of extents saying, for
 * every byte, whether it holds data, reads as zeros, or is unallocated (reads as zeros at the bottom
 * of a chain, or falls through to the backing image when one is open separately).
 */
export type ExtentKind = 'data' | 'zero' | 'unallocated';

export interface Extent {
  /** Byte offset in the virtual disk. */
  offset: number;
  /** Length in bytes, > 0. */
  length: number;
  kind: ExtentKind;
  /** For chain maps: 0 = the top image, 1 = its backing image, ...; absent when not a chain. */
  depth?: number;
}

/** Merges adjacent extents of the same kind (and depth), dropping empty ones. Input must be sorted. */
export function coalesceExtents(extents: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    if (e.length <= 0) continue;
    const last = out[out.length - 1];
    if (last && last.kind === e.kind && last.depth === e.depth && last.offset + last.length === e.offset) {
      last.length += e.length;
    } else {
      out.push({ ...e });
    }
  }
  return out;
}

/** Sum of the lengths of the extents of one kind. */
export function bytesOfKind(extents: readonly Extent[], kind: ExtentKind): number {
  let n = 0;
  for (const e of extents) if (e.kind === kind) n += e.length;
  return n;
}
