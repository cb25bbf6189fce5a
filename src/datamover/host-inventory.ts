import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DiskSource } from '../hypervisor/domain-description.js';
import { HypervisorError } from '../hypervisor/errors.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import type { DomainState } from '../hypervisor/libvirt-domains.js';
import { child, parseXml, textAt } from '../hypervisor/xml-tree.js';

/**
 * What one libvirt host has, as the control plane needs it: its VMs (to pick for workloads), its
 * networks and its storage (where a restore can put VMs and disks). Collected through the
 * hypervisor layer; the `host.inventory` task returns exactly this, and the libvirt cloud driver
 * calls it directly for the controller's own host.
 */
export interface HostInventory {
  libvirt_uri: string;
  collected_at: string;
  vms: InventoryVm[];
  networks: InventoryNetwork[];
  storage: InventoryStorage;
}

export interface InventoryVm {
  name: string;
  uuid: string;
  state: DomainState;
  persistent: boolean;
  vcpus: number;
  memory_bytes: number;
  disks: InventoryDisk[];
  nics: InventoryNic[];
  /** Names of the libvirt networks the VM's NICs are attached to. */
  networks: string[];
}

export interface InventoryDisk {
  target: string;
  device: string;
  bus: string | null;
  format: string | null;
  /** `file`, `block`, `network`, `volume`, `none`... */
  source_type: string;
  /** File or device path, or `pool/volume`, or the network protocol's name. */
  source: string | null;
  size_bytes: number | null;
  allocation_bytes: number | null;
  readonly: boolean;
}

export interface InventoryNic {
  mac: string | null;
  type: string;
  source: string | null;
  model: string | null;
}

export interface InventoryNetwork {
  name: string;
  uuid: string | null;
  active: boolean;
  persistent: boolean;
  autostart: boolean;
  bridge: string | null;
  forward_mode: string | null;
}

export interface InventoryStorage {
  pools: InventoryPool[];
  /** Directories a restore can write disk files to: dir pools' paths, libvirt's image directory, and
   * the directories the VMs' disk files are in, with their free space. */
  directories: InventoryDirectory[];
}

export interface InventoryPool {
  name: string;
  uuid: string | null;
  type: string | null;
  active: boolean;
  autostart: boolean;
  path: string | null;
  capacity_bytes: number | null;
  allocation_bytes: number | null;
  available_bytes: number | null;
}

export interface InventoryDirectory {
  path: string;
  total_bytes: number;
  available_bytes: number;
}

/** libvirt's default place for disk images on Debian and most distributions. */
export const LIBVIRT_IMAGES_DIR = '/var/lib/libvirt/images';

const nonEmptyLines = (s: string): string[] =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);

/** `Key:   value` lines (virsh net-info, pool-info) into a map with lower-case keys. */
export function parseVirshInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of nonEmptyLines(text)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return out;
}

const yes = (v: string | undefined) => v?.toLowerCase() === 'yes' || v?.toLowerCase() === 'running';
const bytesOrNull = (v: string | undefined) => (v && /^\d+$/.test(v) ? Number(v) : null);

export async function collectHostInventory(hv: LibvirtHypervisor): Promise<HostInventory> {
  const [vms, networks, pools] = await Promise.all([listVms(hv), listNetworks(hv), listPools(hv)]);
  return {
    libvirt_uri: hv.uri,
    collected_at: new Date().toISOString(),
    vms,
    networks,
    storage: { pools, directories: await storageDirectories(pools, vms) },
  };
}

export async function listVms(hv: LibvirtHypervisor): Promise<InventoryVm[]> {
  const out: InventoryVm[] = [];
  for (const summary of await hv.domains.list()) {
    try {
      const d = await hv.domains.describe(summary.uuid);
      const nics = d.nics.map((n) => ({
        mac: n.mac ?? null,
        type: n.type,
        source: n.source ?? null,
        model: n.model ?? null,
      }));
      out.push({
        name: summary.name,
        uuid: summary.uuid,
        state: summary.state,
        persistent: summary.persistent,
        vcpus: d.vcpus,
        memory_bytes: d.memoryBytes,
        disks: d.disks.map((disk) => ({
          target: disk.target,
          device: disk.device,
          bus: disk.bus ?? null,
          format: disk.format ?? null,
          source_type: disk.source.type,
          source: diskSourceText(disk.source),
          size_bytes: disk.sizeBytes ?? null,
          allocation_bytes: disk.allocationBytes ?? null,
          readonly: disk.readonly,
        })),
        nics,
        networks: [...new Set(nics.filter((n) => n.type === 'network' && n.source).map((n) => n.source!))],
      });
    } catch (err) {
      // A domain undefined between the list and its description is simply gone.
      if (err instanceof HypervisorError && err.code === 'DOMAIN_NOT_FOUND') continue;
      throw err;
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function diskSourceText(source: DiskSource): string | null {
  switch (source.type) {
    case 'file':
    case 'block':
      return source.path;
    case 'network':
      return source.name ? `${source.protocol}:${source.name}` : source.protocol;
    case 'volume':
      return `${source.pool}/${source.volume}`;
    default:
      return null;
  }
}

export async function listNetworks(hv: LibvirtHypervisor): Promise<InventoryNetwork[]> {
  const names = nonEmptyLines(await hv.virsh.run(['net-list', '--all', '--name']));
  const out: InventoryNetwork[] = [];
  for (const name of names) {
    const info = parseVirshInfo(await hv.virsh.run(['net-info', name]));
    let forwardMode: string | null = null;
    try {
      const xml = parseXml(await hv.virsh.run(['net-dumpxml', name]));
      forwardMode = child(xml, 'forward')?.attrs.mode ?? (child(xml, 'forward') ? 'nat' : 'isolated');
    } catch {
      // the definition is informative only; a network without readable XML is still listed
    }
    out.push({
      name,
      uuid: info.get('uuid') ?? null,
      active: yes(info.get('active')),
      persistent: yes(info.get('persistent')),
      autostart: yes(info.get('autostart')),
      bridge: info.get('bridge') ?? null,
      forward_mode: forwardMode,
    });
  }
  return out;
}

export async function listPools(hv: LibvirtHypervisor): Promise<InventoryPool[]> {
  const names = nonEmptyLines(await hv.virsh.run(['pool-list', '--all', '--name']));
  const out: InventoryPool[] = [];
  for (const name of names) {
    const info = parseVirshInfo(await hv.virsh.run(['pool-info', name, '--bytes']));
    let type: string | null = null;
    let path: string | null = null;
    try {
      const xml = parseXml(await hv.virsh.run(['pool-dumpxml', name]));
      type = xml.attrs.type ?? null;
      path = textAt(xml, 'target', 'path') ?? null;
    } catch {
      // as for networks: list the pool even when its XML cannot be read
    }
    out.push({
      name,
      uuid: info.get('uuid') ?? null,
      type,
      active: yes(info.get('state')),
      autostart: yes(info.get('autostart')),
      path,
      capacity_bytes: bytesOrNull(info.get('capacity')),
      allocation_bytes: bytesOrNull(info.get('allocation')),
      available_bytes: bytesOrNull(info.get('available')),
    });
  }
  return out;
}

async function storageDirectories(pools: InventoryPool[], vms: InventoryVm[]): Promise<InventoryDirectory[]> {
  const candidates = new Set<string>();
  for (const p of pools) if (p.type === 'dir' && p.path) candidates.add(p.path);
  candidates.add(LIBVIRT_IMAGES_DIR);
  for (const vm of vms) {
    for (const d of vm.disks) if (d.source_type === 'file' && d.source) candidates.add(dirname(d.source));
  }
  const out: InventoryDirectory[] = [];
  for (const path of [...candidates].sort()) {
    try {
      const s = await statfs(path);
      out.push({ path, total_bytes: s.blocks * s.bsize, available_bytes: s.bavail * s.bsize });
    } catch {
      // a directory that does not exist on this host is no place to restore to
    }
  }
  return out;
}
