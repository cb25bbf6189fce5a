import { coalesceExtents, type Extent, type ExtentKind } from '../disk/extent.js';
import type { NbdClient } from './client.js';
import { NbdError } from './errors.js';
import { BASE_ALLOCATION, DIRTY_BITMAP_PREFIX, NBD_STATE_DIRTY, NBD_STATE_ZERO } from './protocol.js';

/** A range with the raw flags of one metadata context. */
export interface StatusRange {
  offset: number;
  length: number;
  flags: number;
}

/**
 * Block status requests are cut into windows this large and the windows are asked for at once, so
 * a big disk is mapped with several requests in flight rather than one round trip after another.
 */
const WINDOW = 1 << 30;

export function dirtyBitmapContext(bitmapName: string): string {
  return DIRTY_BITMAP_PREFIX + bitmapName;
}

function requireContext(client: NbdClient, context: string): void {
  if (!client.hasMetaContext(context)) {
    const what = context.startsWith(DIRTY_BITMAP_PREFIX)
      ? `dirty bitmap '${context.slice(DIRTY_BITMAP_PREFIX.length)}'`
      : `metadata context '${context}'`;
    throw new NbdError(
      'NBD_META_CONTEXT_NOT_FOUND',
      `${what} is not available on export '${client.exportName}'`,
      {
        details: { context, exportName: client.exportName },
      },
    );
  }
}

/**
 * Block status of several contexts over [offset, end). Every reply describes all selected contexts,
 * each possibly over a different length; each context keeps its own cursor and the next request
 * starts at the one furthest behind, so no range is asked for twice.
 */
async function readWindow(
  client: NbdClient,
  contexts: readonly string[],
  offset: number,
  end: number,
): Promise<StatusRange[][]> {
  const out: StatusRange[][] = contexts.map(() => []);
  const cursors = contexts.map(() => offset);
  for (;;) {
    const at = Math.min(...cursors);
    if (at >= end) return out;
    const reply = await client.blockStatus(at, end - at);
    contexts.forEach((context, i) => {
      if (cursors[i] !== at) return; // this context is already known further on
      const descriptors = reply.get(context);
      if (!descriptors || descriptors.length === 0) {
        throw new NbdError('NBD_PROTOCOL', `block status reply at ${at} has no descriptors for '${context}'`);
      }
      const ranges = out[i];
      for (const d of descriptors) {
        // Servers must not describe past the request; if one does, the excess is simply not used.
        const n = Math.min(d.length, end - cursors[i]);
        if (n <= 0) break;
        const last = ranges[ranges.length - 1];
        if (last && last.flags === d.flags && last.offset + last.length === cursors[i]) last.length += n;
        else ranges.push({ offset: cursors[i], length: n, flags: d.flags });
        cursors[i] += n;
      }
    });
  }
}

/**
 * Raw block status of several contexts over [offset, offset+length) from the same requests, looping
 * until every context covers the range; one list per context, in the order asked.
 */
export async function readStatusRangesOf(
  client: NbdClient,
  contexts: readonly string[],
  offset = 0,
  length = client.size - offset,
): Promise<StatusRange[][]> {
  for (const context of contexts) requireContext(client, context);
  if (offset < 0 || length < 0 || offset + length > client.size) {
    throw new NbdError(
      'NBD_RANGE',
      `block status [${offset}, +${length}) outside export of ${client.size} bytes`,
    );
  }
  const end = offset + length;
  const windows: Promise<StatusRange[][]>[] = [];
  for (let at = offset; at < end; ) {
    const next = Math.min(end, Math.floor(at / WINDOW) * WINDOW + WINDOW);
    windows.push(readWindow(client, contexts, at, next));
    at = next;
  }
  const perWindow = await Promise.all(windows);
  return contexts.map((_, i) => perWindow.flatMap((w) => w[i]));
}

/** Raw block status of one context over [offset, offset+length), looping until it is all covered. */
export async function readStatusRanges(
  client: NbdClient,
  context: string,
  offset?: number,
  length?: number,
): Promise<StatusRange[]> {
  return (await readStatusRangesOf(client, [context], offset, length))[0];
}

function kindMapper(context: string): (flags: number) => ExtentKind {
  if (context === BASE_ALLOCATION) {
    // ZERO (with or without HOLE) reads as zeros; everything else, even a hole of undefined content, is read.
    return (flags) => (flags & NBD_STATE_ZERO ? 'zero' : 'data');
  }
  if (context.startsWith(DIRTY_BITMAP_PREFIX)) {
    // Dirty = changed since the checkpoint: 'data'; clean = unchanged: 'unallocated' (falls through).
    return (flags) => (flags & NBD_STATE_DIRTY ? 'data' : 'unallocated');
  }
  throw new NbdError('NBD_UNSUPPORTED', `no extent mapping for metadata context '${context}'`);
}

/**
 * Extents of `base:allocation` or `qemu:dirty-bitmap:NAME` over a range (default: the whole export),
 * in the shared model: sorted, adjacent kinds merged.
 */
export async function readExtents(
  client: NbdClient,
  context: string,
  offset?: number,
  length?: number,
): Promise<Extent[]> {
  const kindOf = kindMapper(context);
  const ranges = await readStatusRanges(client, context, offset, length);
  return coalesceExtents(ranges.map((r) => ({ offset: r.offset, length: r.length, kind: kindOf(r.flags) })));
}

export function readAllocationExtents(
  client: NbdClient,
  offset?: number,
  length?: number,
): Promise<Extent[]> {
  return readExtents(client, BASE_ALLOCATION, offset, length);
}

/** Changed ('data') and unchanged ('unallocated') ranges of a QEMU dirty bitmap exported over NBD. */
export function readDirtyExtents(
  client: NbdClient,
  bitmapName: string,
  offset?: number,
  length?: number,
): Promise<Extent[]> {
  return readExtents(client, dirtyBitmapContext(bitmapName), offset, length);
}

/**
 * What an incremental must store: dirty ranges that hold data stay 'data'; dirty ranges that are now
 * zero or a hole become 'zero' (so the overlay shadows the old data with zeros); clean ranges are
 * 'unallocated' (they fall through to the backing image). Both inputs sorted, over the same range.
 */
export function intersectDirtyWithAllocation(
  dirty: readonly Extent[],
  allocation: readonly Extent[],
): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const d of dirty) {
    if (d.kind !== 'data') {
      out.push({ offset: d.offset, length: d.length, kind: 'unallocated' });
      continue;
    }
    const end = d.offset + d.length;
    let at = d.offset;
    while (at < end) {
      while (j < allocation.length && allocation[j].offset + allocation[j].length <= at) j++;
      const a = allocation[j];
      if (!a || a.offset > at) {
        // Nothing known about this piece's allocation: copying it is always correct.
        const next = a ? Math.min(end, a.offset) : end;
        out.push({ offset: at, length: next - at, kind: 'data' });
        at = next;
        continue;
      }
      const next = Math.min(end, a.offset + a.length);
      out.push({ offset: at, length: next - at, kind: a.kind === 'data' ? 'data' : 'zero' });
      at = next;
    }
  }
  return coalesceExtents(out);
}

/** Dirty bitmap ∩ allocation over a range: the extent map of an incremental backup of this export. */
export async function readIncrementalExtents(
  client: NbdClient,
  bitmapName: string,
  offset?: number,
  length?: number,
): Promise<Extent[]> {
  const dirtyContext = dirtyBitmapContext(bitmapName);
  const [dirty, allocation] = await readStatusRangesOf(
    client,
    [dirtyContext, BASE_ALLOCATION],
    offset,
    length,
  );
  const toExtents = (ranges: StatusRange[], context: string) => {
    const kindOf = kindMapper(context);
    return coalesceExtents(
      ranges.map((r) => ({ offset: r.offset, length: r.length, kind: kindOf(r.flags) })),
    );
  };
  return intersectDirtyWithAllocation(toExtents(dirty, dirtyContext), toExtents(allocation, BASE_ALLOCATION));
}
