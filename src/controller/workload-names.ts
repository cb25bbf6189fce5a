import { getHost } from '../catalog/hosts.js';
import { getProject } from '../catalog/projects.js';
import type { CatalogDb } from '../catalog/schema.js';
import { getTarget } from '../catalog/targets.js';
import { getUser } from '../catalog/users.js';
import type { Workload, WorkloadVm } from '../catalog/workloads.js';

/** The names behind a workload's ids; null where nothing is there (none set, or deleted meanwhile). */
export interface WorkloadNames {
  project: string | null;
  owner: string | null;
  target: string | null;
  /** Host id → host name, for the hosts of `vms`. */
  hosts: Map<string, string>;
}

/**
 * Resolves what a workload refers to into names: for people (the API's workload detail, the CLI)
 * and for the labels of its workload.json on the target (workload-doc.ts).
 */
export async function resolveWorkloadNames(
  db: CatalogDb,
  w: Workload,
  vms: WorkloadVm[],
): Promise<WorkloadNames> {
  const nameOf = (p: Promise<{ name: string }>) => p.then((r) => r.name).catch(() => null);
  const hosts = new Map<string, string>();
  for (const hostId of new Set(vms.map((v) => v.host_id))) {
    const name = await nameOf(getHost(db, hostId));
    if (name !== null) hosts.set(hostId, name);
  }
  return {
    project: await nameOf(getProject(db, w.project_id)),
    owner: w.owner_user_id ? await nameOf(getUser(db, w.owner_user_id)) : null,
    target: w.target_id ? await nameOf(getTarget(db, w.target_id)) : null,
    hosts,
  };
}
