import { z } from 'zod';
import { getHost, listHosts } from '../catalog/hosts.js';
import type { CatalogDb } from '../catalog/schema.js';
import { getSnapshot, listSnapshotDisks, listSnapshotVms, type SnapshotVm } from '../catalog/snapshots.js';
import { nicTarget } from '../datamover/handlers/payloads.js';
import { ControllerError } from './errors.js';

/**
 * A restore plan: which VMs of a snapshot come back, under which names, on which host, in which
 * storage directory, on which networks, with which disks. `lifeboat restore plan SNAPSHOT` prints a
 * complete one to edit; a submitted plan is validated here (shape by zod, then against the snapshot).
 */
export const restorePlanVmSchema = z.strictObject({
  /** The VM's id in the snapshot (its folder on the target). */
  vm_id: z.string().min(1),
  /** The VM's name when it was backed up (informative). */
  source_name: z.string().optional(),
  include: z.boolean().default(true),
  /** New VMs: the new domain's name. In place: the existing domain (name or UUID). */
  name: z.string().trim().min(1).max(200),
  host_id: z.uuid(),
  /** New VMs: where the restored images go on that host. */
  storage_dir: z.string().startsWith('/', 'must be an absolute path').optional(),
  /** Saved network or bridge name -> where the restored NIC is plugged. */
  network_map: z.record(z.string(), nicTarget).default({}),
  /** Target devs (vda, vdb...) to restore; every backed-up disk when absent. */
  disks: z.array(z.string().min(1)).optional(),
  /** Start the VM once restored. */
  start: z.boolean().default(false),
});

export const restorePlanSchema = z.strictObject({
  snapshot_id: z.uuid(),
  vms: z.array(restorePlanVmSchema).min(1),
});

export type RestorePlan = z.infer<typeof restorePlanSchema>;
export type RestorePlanVm = z.infer<typeof restorePlanVmSchema>;
export type RestoreKind = 'one_click' | 'selective' | 'in_place';

interface SavedDefinition {
  vm_id?: string;
  nics?: Array<{ network?: string | null; bridge?: string | null }>;
  disks?: Array<{ target_dev: string }>;
}

/** The folder of a snapshot VM on the target (its libvirt UUID unless the definition says otherwise). */
export function targetVmId(vm: SnapshotVm): string {
  return (vm.definition as SavedDefinition).vm_id ?? vm.domain_uuid;
}

async function defaultHostId(db: CatalogDb, vm: SnapshotVm): Promise<string> {
  if (vm.host_id && (await getHost(db, vm.host_id).catch(() => undefined))) return vm.host_id;
  const hosts = await listHosts(db);
  const pick = hosts.find((h) => h.status === 'online') ?? hosts[0];
  if (!pick) throw new ControllerError('CONTROLLER_PLAN_INVALID', 'no host is registered to restore to');
  return pick.id;
}

async function storageDirOf(db: CatalogDb, hostId: string, fallback: string): Promise<string> {
  const host = await getHost(db, hostId);
  const dir = host.capabilities.storageDir ?? host.capabilities.storage_dir;
  return typeof dir === 'string' && dir.startsWith('/') ? dir : fallback;
}

/**
 * The plan that brings everything back as it was: every VM under its own name on its own host (or
 * the first online host when that one is gone), on the networks it was on, every backed-up disk.
 */
export async function generateRestorePlan(
  db: CatalogDb,
  snapshotId: string,
  options: { kind?: RestoreKind; defaultStorageDir: string },
): Promise<RestorePlan> {
  const snap = await getSnapshot(db, snapshotId);
  if (snap.status !== 'available') {
    throw new ControllerError(
      'CONTROLLER_SNAPSHOT_STATE',
      `snapshot ${snapshotId} is ${snap.status}, not available`,
    );
  }
  const vms: RestorePlanVm[] = [];
  for (const vm of await listSnapshotVms(db, snapshotId)) {
    const def = vm.definition as SavedDefinition;
    const hostId = await defaultHostId(db, vm);
    const networkMap: RestorePlanVm['network_map'] = {};
    for (const nic of def.nics ?? []) {
      if (nic.network) networkMap[nic.network] = { type: 'network', network: nic.network };
      else if (nic.bridge) networkMap[nic.bridge] = { type: 'bridge', bridge: nic.bridge };
    }
    const disks = (await listSnapshotDisks(db, { snapshotVmId: vm.id })).map((d) => d.target_dev);
    vms.push({
      vm_id: targetVmId(vm),
      source_name: vm.name,
      include: true,
      name: options.kind === 'in_place' ? vm.domain_uuid : vm.name,
      host_id: hostId,
      ...(options.kind === 'in_place'
        ? {}
        : { storage_dir: await storageDirOf(db, hostId, options.defaultStorageDir) }),
      network_map: networkMap,
      disks,
      start: false,
    });
  }
  return { snapshot_id: snapshotId, vms };
}

/**
 * Checks a plan against its snapshot: known VMs (each at most once), known disks, existing hosts,
 * distinct new names per host, at least one VM included. Every problem is reported at once.
 */
export async function validateRestorePlan(
  db: CatalogDb,
  input: unknown,
  kind: RestoreKind,
  defaultStorageDir: string,
): Promise<RestorePlan> {
  const parsed = restorePlanSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(
      (i) => `${['plan', ...i.path.map(String)].join('.')}: ${i.message}`,
    );
    throw new ControllerError('CONTROLLER_PLAN_INVALID', `invalid restore plan: ${issues.join('; ')}`, {
      details: { issues },
    });
  }
  const plan = parsed.data;
  const problems: string[] = [];
  const snapVms = await listSnapshotVms(db, plan.snapshot_id);
  const seen = new Set<string>();
  const names = new Set<string>();
  for (const [i, p] of plan.vms.entries()) {
    const at = `plan.vms.${i}`;
    const vm = snapVms.find((v) => targetVmId(v) === p.vm_id);
    if (!vm) {
      problems.push(`${at}.vm_id: snapshot ${plan.snapshot_id} has no VM ${p.vm_id}`);
      continue;
    }
    if (seen.has(p.vm_id)) problems.push(`${at}.vm_id: VM ${p.vm_id} appears twice`);
    seen.add(p.vm_id);
    if (!p.include) continue;
    if (!(await getHost(db, p.host_id).catch(() => undefined)))
      problems.push(`${at}.host_id: no host ${p.host_id}`);
    const key = `${p.host_id}/${p.name}`;
    if (names.has(key)) problems.push(`${at}.name: two VMs would be named ${p.name} on one host`);
    names.add(key);
    const saved = (await listSnapshotDisks(db, { snapshotVmId: vm.id })).map((d) => d.target_dev);
    for (const d of p.disks ?? []) {
      if (!saved.includes(d))
        problems.push(`${at}.disks: ${d} is not in the snapshot (it holds ${saved.join(', ')})`);
    }
    if (p.disks && p.disks.length === 0)
      problems.push(`${at}.disks: empty (leave it out to restore every disk)`);
    if (kind !== 'in_place' && !p.storage_dir)
      p.storage_dir = await storageDirOf(db, p.host_id, defaultStorageDir);
  }
  if (!plan.vms.some((v) => v.include)) problems.push('plan.vms: no VM is included');
  if (problems.length > 0) {
    throw new ControllerError('CONTROLLER_PLAN_INVALID', `invalid restore plan: ${problems.join('; ')}`, {
      details: { issues: problems },
    });
  }
  return plan;
}
