import { DiskError } from '../errors.js';
import type { Extent } from '../extent.js';

/** What one run of guest clusters becomes in a new qcow2 image. */
export type ClusterRunKind = 'data' | 'zero';

/** A run of consecutive guest clusters of one kind. Clusters in no run get no L2 entry. */
export interface ClusterRun {
  /** First guest cluster index. */
  start: number;
  count: number;
  kind: ClusterRunKind;
}

const DATA = 1;
const ZERO = 2;
const UNALLOCATED = 4;

function flagOf(kind: Extent['kind']): number {
  return kind === 'data' ? DATA : kind === 'zero' ? ZERO : UNALLOCATED;
}

/**
 * Turns a byte-granular extent map into cluster runs. A cluster holding any data byte is data (the
 * writer reads the whole cluster from the source, so the source must give the final content of the
 * whole virtual disk). Without a backing file zero and unallocated both read as zeros and take no
 * entry. With a backing file a cluster entirely zero becomes a zero cluster (it must shadow the
 * backing), one entirely unallocated gets no entry (falls through), and one mixing zero with
 * unallocated must be stored as data: no single entry can say "zeros here, backing there".
 * Bytes covered by no extent count as unallocated.
 */
export function planClusters(
  extents: readonly Extent[],
  virtualSize: number,
  clusterSize: number,
  hasBacking: boolean,
): ClusterRun[] {
  const runs: ClusterRun[] = [];
  const emit = (start: number, count: number, kind: ClusterRunKind | null): void => {
    if (kind === null || count <= 0) return;
    const last = runs[runs.length - 1];
    if (last && last.kind === kind && last.start + last.count === start) last.count += count;
    else runs.push({ start, count, kind });
  };
  const bytesIn = (cluster: number): number => Math.min(clusterSize, virtualSize - cluster * clusterSize);
  const classify = (flags: number, covered: number, cluster: number): ClusterRunKind | null => {
    if (flags & DATA) return 'data';
    if (!hasBacking || !(flags & ZERO)) return null;
    const full = covered >= bytesIn(cluster) && !(flags & UNALLOCATED);
    return full ? 'zero' : 'data';
  };

  // The one cluster several extents may share; flushed when an extent moves past it.
  let cur = -1;
  let curFlags = 0;
  let curCovered = 0;
  const flush = (): void => {
    if (cur >= 0) emit(cur, 1, classify(curFlags, curCovered, cur));
    cur = -1;
  };
  const addPartial = (cluster: number, flag: number, bytes: number): void => {
    if (cluster !== cur) {
      flush();
      cur = cluster;
      curFlags = 0;
      curCovered = 0;
    }
    curFlags |= flag;
    curCovered += bytes;
  };

  let prevEnd = 0;
  for (const e of extents) {
    const a = Math.max(0, e.offset);
    const b = Math.min(virtualSize, e.offset + e.length);
    if (b <= a) continue;
    if (a < prevEnd) {
      throw new DiskError('DISK_RANGE', `extents overlap or are unsorted at offset ${a}`);
    }
    prevEnd = b;
    const flag = flagOf(e.kind);
    const first = Math.floor(a / clusterSize);
    const last = Math.floor((b - 1) / clusterSize);
    if (first === last) {
      addPartial(first, flag, b - a);
      continue;
    }
    addPartial(first, flag, (first + 1) * clusterSize - a);
    if (last > first + 1) {
      flush();
      emit(first + 1, last - first - 1, classify(flag, clusterSize, first + 1));
    }
    addPartial(last, flag, b - last * clusterSize);
  }
  flush();
  return runs;
}

/** Number of clusters of the runs of one kind. */
export function clustersOfKind(runs: readonly ClusterRun[], kind: ClusterRunKind): number {
  let n = 0;
  for (const r of runs) if (r.kind === kind) n += r.count;
  return n;
}
