import { getWorkload, listWorkloadVms, type Workload } from '../catalog/workloads.js';
import type { MetadataInput } from '../target/metadata/codec.js';
import type { ControllerContext } from './context.js';
import { resolveWorkloadNames } from './workload-names.js';

/**
 * A workload's description on its target (workload.json), made from the catalog. Labels say whom it
 * belonged to here (project, owner) and on which host each VM ran, so another installation can
 * rebuild the workload from the target alone (import); they grant nothing there.
 */
export async function workloadDocument(
  ctx: ControllerContext,
  w: Workload,
): Promise<MetadataInput<'workload'>> {
  const labels: Record<string, string> = {};
  const vms = await listWorkloadVms(ctx.db, w.id);
  const names = await resolveWorkloadNames(ctx.db, w, vms);
  labels['project.id'] = w.project_id;
  if (names.project !== null) labels['project.name'] = names.project;
  if (w.owner_user_id) {
    labels['owner.id'] = w.owner_user_id;
    if (names.owner !== null) labels['owner.name'] = names.owner;
  }
  for (const vm of vms) {
    const host = names.hosts.get(vm.host_id);
    if (host !== undefined) labels[`vm.${vm.domain_uuid}.host`] = host;
    if (vm.excluded_disks.length > 0) labels[`vm.${vm.domain_uuid}.excluded`] = vm.excluded_disks.join(',');
  }
  const policy: Record<string, unknown> = {};
  if (w.schedule_cron) policy.schedule = w.schedule_cron;
  if (w.retention_keep_count) policy.retention = `keep ${w.retention_keep_count}`;
  if (w.full_every) policy.fullEvery = w.full_every;
  return {
    id: w.id,
    name: w.name,
    description: w.description,
    labels,
    vms: vms.map((v) => ({ id: v.domain_uuid, name: v.name, uuid: v.domain_uuid })),
    policy: Object.keys(policy).length > 0 ? policy : null,
    createdAt: w.created_at,
    updatedAt: new Date().toISOString(),
  };
}

/** Writes workload.json on the workload's target under its lease (taken for the write if need be). */
export async function writeWorkloadDocument(ctx: ControllerContext, workloadId: string): Promise<void> {
  const w = await getWorkload(ctx.db, workloadId);
  if (!w.target_id) return;
  const doc = await workloadDocument(ctx, w);
  const target = await ctx.targets.target(w.target_id);
  await ctx.targets.withLease(w.target_id, w.id, (lease) => target.writeWorkload(lease, doc));
}
