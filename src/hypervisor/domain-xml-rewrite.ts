import { randomBytes } from 'node:crypto';
import { HypervisorError } from './errors.js';
import {
  child,
  childrenNamed,
  element,
  ensureChild,
  parseXml,
  removeChildren,
  serializeXml,
  type XmlElement,
} from './xml-tree.js';

/** Where a restored NIC is plugged. */
export type NicTarget =
  | { type: 'network'; network: string; portgroup?: string }
  | { type: 'bridge'; bridge: string }
  | { type: 'user' };

export interface DomainXmlRewrite {
  name: string;
  /** The new domain's UUID; omitted = let libvirt generate one. The saved UUID is never kept. */
  uuid?: string;
  /**
   * `generate` (default): every NIC gets a fresh random 52:54:00 MAC; `keep`: MACs stay (in-place
   * restore of a VM that no longer exists); a map old MAC -> new MAC sets them explicitly (NICs not
   * in the map get fresh ones).
   */
  macs?: 'generate' | 'keep' | Record<string, string>;
  /** Per disk target (`vda`): the restored image and its format. Disks not listed keep their source. */
  disks?: Record<string, { path: string; format: string; type?: 'file' | 'block' }>;
  /** Disk targets to leave out of the new domain (selective restore). */
  removeDisks?: string[];
  /**
   * Per NIC source name (libvirt network name, bridge name, or `user` for user-mode NICs): where the
   * restored NIC is plugged. NICs whose source is not listed stay as they were.
   */
  networks?: Record<string, NicTarget>;
  /**
   * UEFI variables file of the new domain. Omitted: the saved path is dropped and libvirt creates a
   * fresh one from the firmware template (the old file belongs to the old domain).
   */
  nvramPath?: string;
}

/** A random locally administered MAC in the 52:54:00 range QEMU/libvirt use. */
export function randomMac(): string {
  const b = randomBytes(3);
  return ['52', '54', '00', ...[...b].map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

/**
 * Things a live `dumpxml` carries that describe the running instance, not the definition: defining a
 * new domain with them is wrong (old IDs, aliases, backing-chain indexes, the old domain's paths).
 */
function stripRuntimeState(root: XmlElement): void {
  delete root.attrs.id;
  const walk = (el: XmlElement): void => {
    el.children = el.children.filter((c) => !(c.name === 'alias' && !c.attrs.name?.startsWith('ua-')));
    if (el.name === 'source') delete el.attrs.index;
    for (const c of el.children) walk(c);
  };
  walk(root);
  for (const label of childrenNamed(root, 'seclabel')) {
    // Dynamic labels are chosen at start; a stale one makes define fail or clash with the old VM.
    if (label.attrs.type === 'dynamic') {
      removeChildren(label, 'label');
      removeChildren(label, 'imagelabel');
    }
  }
  const devices = child(root, 'devices');
  for (const g of childrenNamed(devices, 'graphics')) {
    if (g.attrs.autoport === 'yes') delete g.attrs.port;
  }
  for (const ch of childrenNamed(devices, 'channel')) {
    // Auto-generated agent socket paths embed the old domain's name and ID.
    const src = child(ch, 'source');
    if (ch.attrs.type === 'unix' && src?.attrs.path?.includes('/channel/target/')) delete src.attrs.path;
  }
}

function remapDisk(disk: XmlElement, to: { path: string; format: string; type?: 'file' | 'block' }): void {
  const type = to.type ?? 'file';
  disk.attrs.type = type;
  const driver = ensureChild(disk, 'driver');
  driver.attrs.type = to.format;
  if (!driver.attrs.name) driver.attrs.name = 'qemu';
  const source = element('source', type === 'file' ? { file: to.path } : { dev: to.path });
  const i = disk.children.findIndex((c) => c.name === 'source');
  if (i >= 0) disk.children[i] = source;
  else disk.children.splice(disk.children.indexOf(driver) + 1, 0, source);
  // The old backing chain describes the old image; libvirt re-detects the new one.
  removeChildren(disk, 'backingStore');
}

function nicSourceName(nic: XmlElement): string | undefined {
  if (nic.attrs.type === 'user') return 'user';
  const src = child(nic, 'source');
  return src?.attrs.network ?? src?.attrs.bridge ?? src?.attrs.dev;
}

function plugNic(nic: XmlElement, to: NicTarget): void {
  nic.attrs.type = to.type;
  // Interface details tied to the old network (target dev names, port IDs, virtualport) go too.
  nic.children = nic.children.filter((c) => !['source', 'target', 'virtualport'].includes(c.name));
  const at = Math.min(1, nic.children.length);
  if (to.type === 'network') {
    const attrs: Record<string, string> = { network: to.network };
    if (to.portgroup) attrs.portgroup = to.portgroup;
    nic.children.splice(at, 0, element('source', attrs));
  } else if (to.type === 'bridge') {
    nic.children.splice(at, 0, element('source', { bridge: to.bridge }));
  }
}

/**
 * A NEW domain XML from a saved one: same everything (CPU, memory, firmware, devices, features)
 * except what the options change. The saved tree is edited, never re-templated, so whatever the
 * domain had and Lifeboat does not understand survives the restore.
 */
export function rewriteDomainXml(savedXml: string, change: DomainXmlRewrite): string {
  const root = parseXml(savedXml);
  if (root.name !== 'domain')
    throw new HypervisorError('INVALID_XML', `expected <domain>, found <${root.name}>`);
  stripRuntimeState(root);

  ensureChild(root, 'name').text = change.name;
  if (change.uuid) ensureChild(root, 'uuid').text = change.uuid;
  else removeChildren(root, 'uuid');

  const os = child(root, 'os');
  const nvram = child(os, 'nvram');
  if (nvram) {
    if (change.nvramPath) nvram.text = change.nvramPath;
    else delete nvram.text;
  }

  const devices = child(root, 'devices');
  if (devices) {
    const drop = new Set(change.removeDisks ?? []);
    const known = new Set<string>();
    devices.children = devices.children.filter((c) => {
      if (c.name !== 'disk') return true;
      const dev = child(c, 'target')?.attrs.dev;
      if (dev) known.add(dev);
      return !(dev && drop.has(dev));
    });
    for (const [target, to] of Object.entries(change.disks ?? {})) {
      const disk = childrenNamed(devices, 'disk').find((d) => child(d, 'target')?.attrs.dev === target);
      if (!disk) {
        throw new HypervisorError('INVALID_ARGUMENT', `domain has no disk '${target}' to remap`, {
          details: { disks: [...known] },
        });
      }
      remapDisk(disk, to);
    }

    const macs = change.macs ?? 'generate';
    const macMap = new Map(
      typeof macs === 'object' ? Object.entries(macs).map(([k, v]) => [k.toLowerCase(), v] as const) : [],
    );
    for (const nic of childrenNamed(devices, 'interface')) {
      const to = change.networks?.[nicSourceName(nic) ?? ''];
      if (to) plugNic(nic, to);
      if (macs === 'keep') continue;
      const mac = ensureChild(nic, 'mac');
      const old = mac.attrs.address?.toLowerCase();
      mac.attrs.address = (old && macMap.get(old)) || randomMac();
      // <mac> first keeps the element order libvirt itself writes.
      nic.children = [mac, ...nic.children.filter((c) => c !== mac)];
    }
  }
  return serializeXml(root);
}
