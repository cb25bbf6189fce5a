import { hostname } from 'node:os';
import type { TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { snapshotPrefix } from './layout.js';
import { type LeaseOwner, WorkloadLease } from './lease.js';
import { scanTarget } from './scan.js';

export interface CleanupOptions {
  /** Only folders untouched for this long are removed (default 1 hour). */
  olderThanMs?: number;
  /** Who takes the workload lease while cleaning (default: this host, installation "lifeboat-cleanup"). */
  owner?: LeaseOwner;
  workloadId?: string;
  dryRun?: boolean;
}

export interface CleanupReport {
  removed: Array<{ workloadId: string; snapshotId: string; objects: number; bytes: number }>;
  skipped: Array<{ workloadId: string; snapshotId?: string; reason: string }>;
  /** Temp files / incomplete multipart uploads of dead writers. */
  staleUploads: number;
}

const DEFAULT_OLDER_THAN_MS = 60 * 60_000;

/**
 * Removes unfinished snapshots (folders without snapshot.json) of writers that are gone. A workload
 * whose lease someone holds is left alone (its snapshot may be being written right now); otherwise
 * cleanup takes the lease itself for the duration, so no writer can start meanwhile.
 */
export async function cleanupUnfinished(
  backend: TargetBackend,
  opts: CleanupOptions = {},
): Promise<CleanupReport> {
  const olderThanMs = opts.olderThanMs ?? DEFAULT_OLDER_THAN_MS;
  const owner = opts.owner ?? { installationId: 'lifeboat-cleanup', host: hostname() };
  const scan = await scanTarget(backend, { workloadId: opts.workloadId });
  const report: CleanupReport = { removed: [], skipped: [], staleUploads: 0 };
  const now = Date.now();
  for (const w of scan.workloads) {
    const old = w.unfinished.filter((u) => now - Date.parse(u.lastModified) >= olderThanMs);
    for (const u of w.unfinished) {
      if (!old.includes(u))
        report.skipped.push({ workloadId: w.id, snapshotId: u.id, reason: 'recently written' });
    }
    if (old.length === 0) continue;
    let lease: WorkloadLease | undefined;
    if (!opts.dryRun) {
      try {
        lease = await WorkloadLease.acquire(backend, w.id, owner, { ttlMs: 10 * 60_000 });
      } catch (err) {
        if (err instanceof TargetError && err.code === 'TARGET_LEASE_HELD') {
          report.skipped.push({ workloadId: w.id, reason: err.message });
          continue;
        }
        throw err;
      }
    }
    try {
      for (const u of old) {
        // Re-check under the lease: the folder may have been committed since the scan.
        if (await backend.stat(`${snapshotPrefix(w.id, u.id)}snapshot.json`)) continue;
        if (!opts.dryRun) await backend.deletePrefix(snapshotPrefix(w.id, u.id));
        report.removed.push({ workloadId: w.id, snapshotId: u.id, objects: u.objects, bytes: u.bytes });
      }
    } finally {
      await lease?.release();
    }
  }
  if (!opts.dryRun) report.staleUploads = await backend.removeStaleUploads(olderThanMs);
  return report;
}
