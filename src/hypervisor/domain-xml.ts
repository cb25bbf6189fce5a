import type {
  DiskDeviceKind,
  DiskSource,
  DomainDescription,
  DomainDisk,
  DomainNic,
  DomainOs,
} from './domain-description.js';
import { HypervisorError } from './errors.js';
import { child, childrenNamed, descend, parseXml, textAt, type XmlElement } from './xml-tree.js';

export type { DomainDescription, DomainDisk, DomainNic } from './domain-description.js';
export { type DomainXmlRewrite, type NicTarget, rewriteDomainXml } from './domain-xml-rewrite.js';

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1000,
  k: 1024,
  kib: 1024,
  mb: 1000 ** 2,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1000 ** 4,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** A libvirt scaled integer (`<memory unit='KiB'>65536</memory>`) in bytes; libvirt's default unit is KiB. */
export function scaledToBytes(value: string, unit = 'KiB'): number {
  const factor = UNIT_BYTES[unit.toLowerCase()];
  const n = Number(value.trim());
  if (factor === undefined || !Number.isFinite(n)) {
    throw new HypervisorError('INVALID_XML', `bad size '${value}' in unit '${unit}'`);
  }
  return n * factor;
}

function sizeOf(el: XmlElement | undefined): number | undefined {
  if (!el?.text) return undefined;
  return scaledToBytes(el.text, el.attrs.unit);
}

const yes = (v: string | undefined): boolean => v === 'yes';

function parseOs(os: XmlElement | undefined): DomainOs {
  const type = child(os, 'type');
  const loader = child(os, 'loader');
  const nvram = child(os, 'nvram');
  return {
    type: type?.text ?? 'hvm',
    arch: type?.attrs.arch,
    machine: type?.attrs.machine,
    firmware: os?.attrs.firmware,
    loader: loader
      ? {
          path: loader.text,
          type: loader.attrs.type,
          readonly: yes(loader.attrs.readonly),
          secure: yes(loader.attrs.secure),
        }
      : undefined,
    nvram: nvram ? { path: nvram.text, template: nvram.attrs.template } : undefined,
    bootDevices: childrenNamed(os, 'boot')
      .map((b) => b.attrs.dev)
      .filter((d): d is string => d !== undefined),
  };
}

function parseDiskSource(disk: XmlElement): DiskSource {
  const type = disk.attrs.type ?? 'file';
  const src = child(disk, 'source');
  if (type === 'file') return src?.attrs.file ? { type: 'file', path: src.attrs.file } : { type: 'none' };
  if (type === 'block') return src?.attrs.dev ? { type: 'block', path: src.attrs.dev } : { type: 'none' };
  if (type === 'network' && src) {
    return {
      type: 'network',
      protocol: src.attrs.protocol ?? 'unknown',
      name: src.attrs.name,
      hosts: childrenNamed(src, 'host').map((h) => ({ name: h.attrs.name, port: h.attrs.port })),
    };
  }
  if (type === 'volume' && src?.attrs.pool && src.attrs.volume) {
    return { type: 'volume', pool: src.attrs.pool, volume: src.attrs.volume };
  }
  return { type: 'other', xmlType: type };
}

function parseDisk(disk: XmlElement): DomainDisk {
  const target = child(disk, 'target');
  if (!target?.attrs.dev) throw new HypervisorError('INVALID_XML', 'domain disk without <target dev=...>');
  const boot = child(disk, 'boot')?.attrs.order;
  return {
    target: target.attrs.dev,
    bus: target.attrs.bus,
    device: (disk.attrs.device ?? 'disk') as DiskDeviceKind,
    source: parseDiskSource(disk),
    format: child(disk, 'driver')?.attrs.type,
    readonly: child(disk, 'readonly') !== undefined,
    shareable: child(disk, 'shareable') !== undefined,
    serial: textAt(disk, 'serial'),
    bootOrder: boot === undefined ? undefined : Number(boot),
  };
}

function parseNic(nic: XmlElement): DomainNic {
  const src = child(nic, 'source');
  return {
    mac: child(nic, 'mac')?.attrs.address,
    type: nic.attrs.type ?? 'unknown',
    source: src?.attrs.network ?? src?.attrs.bridge ?? src?.attrs.dev,
    model: child(nic, 'model')?.attrs.type,
    portgroup: src?.attrs.portgroup,
  };
}

/** Reads a domain XML (`virsh dumpxml`, live or `--inactive`) into a DomainDescription. */
export function parseDomainXml(xml: string): DomainDescription {
  const root = parseXml(xml);
  if (root.name !== 'domain')
    throw new HypervisorError('INVALID_XML', `expected <domain>, found <${root.name}>`);
  const name = textAt(root, 'name');
  if (!name) throw new HypervisorError('INVALID_XML', 'domain XML without <name>');
  const devices = child(root, 'devices');
  const memory = sizeOf(child(root, 'memory'));
  if (memory === undefined) throw new HypervisorError('INVALID_XML', `domain ${name}: no <memory>`);
  const vcpu = child(root, 'vcpu');
  return {
    name,
    uuid: textAt(root, 'uuid'),
    type: root.attrs.type ?? 'kvm',
    memoryBytes: memory,
    currentMemoryBytes: sizeOf(child(root, 'currentMemory')),
    vcpus: vcpu?.text ? Number(vcpu.text) : 1,
    os: parseOs(child(root, 'os')),
    disks: childrenNamed(devices, 'disk').map(parseDisk),
    nics: childrenNamed(devices, 'interface').map(parseNic),
    hasGuestAgentChannel: childrenNamed(devices, 'channel').some(
      (c) => descend(c, 'target')?.attrs.name === 'org.qemu.guest_agent.0',
    ),
  };
}
