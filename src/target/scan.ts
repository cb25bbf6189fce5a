import type { ObjectInfo, TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { resolveRelativeKey } from './keys.js';
import { leaseKey, snapshotPrefix, vmFileKey, vmKey, workloadKey, workloadPrefix } from './layout.js';
import { leaseActive, readLease } from './lease.js';
import type { LeaseMeta, SnapshotMeta, TargetRoot, WorkloadMeta } from './metadata/schemas.js';
import { Target } from './target.js';

export interface DiskScan {
  name: string;
  targetDev: string;
  mode: 'full' | 'incremental';
  virtualSize: number;
  storedBytes: number;
  imageKey: string;
  /** The backing image's key, resolved from the relative name in vm.json; null for a full. */
  backingKey: string | null;
  fallbackWarning: string | null;
}

export interface VmScan {
  id: string;
  name: string;
  disks: DiskScan[];
}

export interface SnapshotScan {
  id: string;
  type: 'full' | 'incremental';
  parentSnapshotId: string | null;
  startedAt: string;
  finishedAt: string;
  status: SnapshotMeta['status'];
  sizes: SnapshotMeta['sizes'];
  warnings: SnapshotMeta['warnings'];
  vms: VmScan[];
  /** True when every image, manifest, parent snapshot and backing image is present. */
  chainHealthy: boolean;
  problems: string[];
}

export interface UnfinishedSnapshot {
  id: string;
  objects: number;
  bytes: number;
  /** Newest write into the folder: how long ago it was last touched. */
  lastModified: string;
}

export interface WorkloadScan {
  id: string;
  workload: WorkloadMeta | null;
  lease: (LeaseMeta & { active: boolean }) | null;
  snapshots: SnapshotScan[];
  unfinished: UnfinishedSnapshot[];
  problems: string[];
}

export interface TargetScan {
  location: string;
  target: TargetRoot;
  workloads: WorkloadScan[];
}

function problemOf(err: unknown): string {
  if (err instanceof TargetError) return `${err.code}: ${err.message}`;
  return String((err as Error)?.message ?? err);
}

/**
 * Everything a fresh installation needs to know about a target, from the target alone: workloads,
 * committed snapshots with their VMs and disks, chain health. Unfinished snapshot folders (no
 * snapshot.json) are listed apart and never treated as snapshots. One listing per workload, then
 * only the small metadata files are read.
 */
export async function scanTarget(
  backend: TargetBackend,
  opts: { workloadId?: string } = {},
): Promise<TargetScan> {
  const target = await Target.open(backend);
  const ids = opts.workloadId !== undefined ? [opts.workloadId] : await target.listWorkloadIds();
  const workloads: WorkloadScan[] = [];
  for (const id of ids) workloads.push(await scanWorkload(target, id));
  return { location: backend.location, target: target.root, workloads };
}

async function scanWorkload(target: Target, wid: string): Promise<WorkloadScan> {
  const backend = target.backend;
  const scan: WorkloadScan = {
    id: wid,
    workload: null,
    lease: null,
    snapshots: [],
    unfinished: [],
    problems: [],
  };
  const objects = new Map<string, ObjectInfo>();
  for await (const o of backend.list(workloadPrefix(wid))) objects.set(o.key, o);
  try {
    scan.workload = (await target.readWorkload(wid)) ?? null;
    if (!scan.workload) scan.problems.push(`${workloadKey(wid)} is missing`);
  } catch (err) {
    scan.problems.push(problemOf(err));
  }
  if (objects.has(leaseKey(wid))) {
    const l = await readLease(backend, wid).catch((err) => ({ corrupt: problemOf(err), lease: undefined }));
    if (l?.lease) scan.lease = { ...l.lease, active: leaseActive(l.lease, new Date()) };
    else if (l?.corrupt) scan.problems.push(`lease: ${l.corrupt}`);
  }

  const committed = new Map<string, SnapshotMeta>();
  for (const sid of await target.listSnapshotFolders(wid)) {
    if (!objects.has(`${snapshotPrefix(wid, sid)}snapshot.json`)) {
      let n = 0;
      let bytes = 0;
      let newest = 0;
      for (const o of objects.values()) {
        if (!o.key.startsWith(snapshotPrefix(wid, sid))) continue;
        n++;
        bytes += o.size;
        newest = Math.max(newest, o.lastModified.getTime());
      }
      scan.unfinished.push({ id: sid, objects: n, bytes, lastModified: new Date(newest).toISOString() });
      continue;
    }
    try {
      const snap = await target.readSnapshot(wid, sid);
      if (snap) committed.set(sid, snap);
    } catch (err) {
      scan.problems.push(`snapshot ${sid}: ${problemOf(err)}`);
    }
  }

  for (const [sid, snap] of committed)
    scan.snapshots.push(await scanSnapshot(target, wid, sid, snap, objects, committed));
  scan.snapshots.sort((a, b) => (a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : 0));
  // A chain is only as healthy as its oldest link: parents come first in time order.
  const byId = new Map(scan.snapshots.map((s) => [s.id, s]));
  for (const s of scan.snapshots) {
    const parent = s.parentSnapshotId === null ? undefined : byId.get(s.parentSnapshotId);
    if (parent && !parent.chainHealthy) {
      s.problems.push(`parent snapshot ${parent.id} has a broken chain`);
      s.chainHealthy = false;
    }
  }
  return scan;
}

async function scanSnapshot(
  target: Target,
  wid: string,
  sid: string,
  snap: SnapshotMeta,
  objects: Map<string, ObjectInfo>,
  committed: Map<string, SnapshotMeta>,
): Promise<SnapshotScan> {
  const problems: string[] = [];
  if (snap.id !== sid || snap.workloadId !== wid) {
    problems.push(`snapshot.json names ${snap.workloadId}/${snap.id}, found under ${wid}/${sid}`);
  }
  if (snap.parentSnapshotId !== null && !committed.has(snap.parentSnapshotId)) {
    problems.push(`parent snapshot ${snap.parentSnapshotId} is missing`);
  }
  const vms: VmScan[] = [];
  for (const v of snap.vms) {
    let vm: Awaited<ReturnType<Target['readVm']>>;
    try {
      vm = await target.readVm(wid, snap.id, v.id);
    } catch (err) {
      problems.push(`vm ${v.id}: ${problemOf(err)}`);
      continue;
    }
    if (!vm) {
      problems.push(`${vmKey(wid, snap.id, v.id)} is missing`);
      continue;
    }
    const disks: DiskScan[] = [];
    for (const d of vm.disks) {
      const imageKey = vmFileKey(wid, snap.id, v.id, d.image);
      if (!objects.has(imageKey)) problems.push(`image ${imageKey} is missing`);
      if (!objects.has(vmFileKey(wid, snap.id, v.id, d.manifest)))
        problems.push(`manifest of ${imageKey} is missing`);
      let backingKey: string | null = null;
      if (d.backing !== null) {
        try {
          backingKey = resolveRelativeKey(imageKey, d.backing);
          if (!objects.has(backingKey)) problems.push(`backing ${d.backing} of ${imageKey} is missing`);
        } catch (err) {
          problems.push(`backing of ${imageKey}: ${problemOf(err)}`);
        }
      }
      disks.push({
        name: d.name,
        targetDev: d.targetDev,
        mode: d.mode,
        virtualSize: d.virtualSize,
        storedBytes: d.storedBytes,
        imageKey,
        backingKey,
        fallbackWarning: d.fallbackWarning,
      });
    }
    vms.push({ id: vm.id, name: vm.name, disks });
  }
  return {
    id: snap.id,
    type: snap.type,
    parentSnapshotId: snap.parentSnapshotId,
    startedAt: snap.startedAt,
    finishedAt: snap.finishedAt,
    status: snap.status,
    sizes: snap.sizes,
    warnings: snap.warnings,
    vms,
    chainHealthy: problems.length === 0,
    problems,
  };
}
