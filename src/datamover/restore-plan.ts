import type { DomainDisk, DomainNic } from '../hypervisor/domain-description.js';
import type { NicTarget } from '../hypervisor/domain-xml-rewrite.js';
import type { VmDiskMeta } from '../target/metadata/schemas.js';
import { RestoreError } from './restore-errors.js';

/**
 * Pure decisions of a restore into a new domain: which saved disks are written and which domain
 * disks are left out, and where each NIC is plugged on this host. Kept apart from the I/O so every
 * rule is unit-tested.
 */

/**
 * Parses `--network-map` values `OLD=NEW`. NEW is `network:NAME`, `bridge:NAME`, `user`, or a bare
 * NAME (a libvirt network). OLD is the saved NIC's network, bridge or device name (`user` for
 * user-mode NICs).
 */
export function parseNetworkMap(specs: readonly string[]): Record<string, NicTarget> {
  const map: Record<string, NicTarget> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const from = spec.slice(0, eq).trim();
    const to = spec.slice(eq + 1).trim();
    if (eq <= 0 || from === '' || to === '') {
      throw new RestoreError('RESTORE_BAD_OPTION', `network map ${JSON.stringify(spec)} is not OLD=NEW`);
    }
    if (from in map) throw new RestoreError('RESTORE_BAD_OPTION', `network ${from} is mapped twice`);
    map[from] = parseNicTarget(to);
  }
  return map;
}

export function parseNicTarget(spec: string): NicTarget {
  if (spec === 'user') return { type: 'user' };
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? 'network' : spec.slice(0, colon);
  const name = colon < 0 ? spec : spec.slice(colon + 1);
  if (name === '' || /\s/.test(name)) {
    throw new RestoreError('RESTORE_BAD_OPTION', `${JSON.stringify(spec)} does not name a network`);
  }
  if (kind === 'network') return { type: 'network', network: name };
  if (kind === 'bridge') return { type: 'bridge', bridge: name };
  throw new RestoreError(
    'RESTORE_BAD_OPTION',
    `${JSON.stringify(spec)}: use network:NAME, bridge:NAME or user`,
  );
}

/** What exists on the host the domain is restored to. */
export interface HostNetworks {
  /** libvirt networks defined on the host. */
  networks: ReadonlySet<string>;
  /** Host network interfaces (bridges among them). */
  interfaces: ReadonlySet<string>;
}

/** The name rewriteDomainXml keys NICs by: network, bridge or device name; `user` for user mode. */
export function nicKey(nic: DomainNic): string | undefined {
  return nic.type === 'user' ? 'user' : nic.source;
}

function missingOnHost(t: NicTarget, host: HostNetworks): string | undefined {
  if (t.type === 'network' && !host.networks.has(t.network)) return `network ${t.network}`;
  if (t.type === 'bridge' && !host.interfaces.has(t.bridge)) return `bridge ${t.bridge}`;
  return undefined;
}

/**
 * Where each saved NIC goes: the map first, else where it was. A NIC whose network (or bridge)
 * does not exist here goes to `fallback` when one is given; otherwise the restore stops before
 * writing anything, naming every missing network.
 */
export function planNetworks(
  nics: readonly DomainNic[],
  map: Readonly<Record<string, NicTarget>>,
  host: HostNetworks,
  fallback?: NicTarget,
): Record<string, NicTarget> {
  const plan: Record<string, NicTarget> = {};
  const missing: string[] = [];
  for (const nic of nics) {
    const key = nicKey(nic);
    if (key === undefined || key in plan) continue;
    let to: NicTarget | undefined = map[key];
    if (!to) {
      if (nic.type === 'network') to = { type: 'network', network: key };
      else if (nic.type === 'bridge') to = { type: 'bridge', bridge: key };
      else continue; // user, direct, ...: kept as saved
    }
    if (missingOnHost(to, host)) {
      if (fallback && !missingOnHost(fallback, host)) to = fallback;
      else {
        missing.push(`${missingOnHost(to, host)}${map[key] ? ` (mapped from ${key})` : ''}`);
        continue;
      }
    }
    if (map[key] || to !== undefined) plan[key] = to;
  }
  const unused = Object.keys(map).filter((k) => !nics.some((n) => nicKey(n) === k));
  if (unused.length > 0) {
    throw new RestoreError(
      'RESTORE_BAD_OPTION',
      `network map names ${unused.join(', ')}, which no NIC of the VM uses (NICs use: ${
        [...new Set(nics.map(nicKey).filter((k) => k !== undefined))].join(', ') || 'none'
      })`,
    );
  }
  if (missing.length > 0) {
    throw new RestoreError(
      'RESTORE_NETWORK_NOT_FOUND',
      `${missing.join(', ')} not found on this host; map it with --network-map OLD=NEW or give --default-network`,
      { details: { missing, hostNetworks: [...host.networks] } },
    );
  }
  return plan;
}

export interface SkippedDisk {
  target: string;
  reason: string;
}

export interface DiskPlan {
  /** Saved disks to write, in the saved order. */
  restore: VmDiskMeta[];
  /** Domain disk targets to leave out of the new domain. */
  remove: string[];
  /** Removable-media drives whose image is not on this host: kept, but empty. */
  eject: string[];
  skipped: SkippedDisk[];
}

/**
 * Matches the saved domain's disks with the backed-up ones by target device. Hard disks that were
 * not backed up (excluded at backup time) or not selected are left out of the new domain; backed-up
 * disks the saved definition does not mention cannot be attached and are not written. CD-ROMs and
 * floppies are kept when their image exists here, else kept empty.
 */
export function planDisks(
  domainDisks: readonly DomainDisk[],
  saved: readonly VmDiskMeta[],
  opts: { select?: readonly string[]; fileExists: (path: string) => boolean },
): DiskPlan {
  const plan: DiskPlan = { restore: [], remove: [], eject: [], skipped: [] };
  const select = opts.select ? new Set(opts.select) : undefined;
  for (const want of select ?? []) {
    if (!saved.some((d) => d.targetDev === want || d.name === want)) {
      throw new RestoreError(
        'RESTORE_DISK_NOT_FOUND',
        `disk ${want} is not in the backup (it holds: ${saved.map((d) => d.targetDev).join(', ') || 'none'})`,
      );
    }
  }
  const chosen = (d: VmDiskMeta) => !select || select.has(d.targetDev) || select.has(d.name);
  for (const dd of domainDisks) {
    const backed = saved.find((s) => s.targetDev === dd.target);
    if (dd.device === 'cdrom' || dd.device === 'floppy') {
      if (backed && chosen(backed)) continue;
      const path = dd.source.type === 'file' || dd.source.type === 'block' ? dd.source.path : undefined;
      if (path !== undefined && !opts.fileExists(path)) {
        plan.eject.push(dd.target);
        plan.skipped.push({
          target: dd.target,
          reason: `${dd.device} image ${path} is not on this host: drive left empty`,
        });
      }
      continue;
    }
    if (!backed) {
      plan.remove.push(dd.target);
      plan.skipped.push({
        target: dd.target,
        reason: 'not in the backup (excluded when it was taken): left out',
      });
    } else if (!chosen(backed)) {
      plan.remove.push(dd.target);
      plan.skipped.push({ target: dd.target, reason: 'not selected: left out' });
    }
  }
  for (const s of saved) {
    if (!chosen(s)) continue;
    if (!domainDisks.some((dd) => dd.target === s.targetDev)) {
      plan.skipped.push({
        target: s.targetDev,
        reason: `disk ${s.name} is in the backup but not in the saved definition: not restored`,
      });
      continue;
    }
    plan.restore.push(s);
  }
  return plan;
}
