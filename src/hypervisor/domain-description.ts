/**
 * What Lifeboat needs to know about a libvirt domain to back it up and rebuild it. Produced from the
 * domain XML by `parseDomainXml`; sizes come from `virsh domblkinfo` (the XML has none).
 */
export interface DomainDescription {
  name: string;
  uuid?: string;
  /** libvirt domain type: `kvm`, or `qemu` for TCG. */
  type: string;
  memoryBytes: number;
  currentMemoryBytes?: number;
  vcpus: number;
  os: DomainOs;
  disks: DomainDisk[];
  nics: DomainNic[];
  /** The domain has a virtio channel named org.qemu.guest_agent.0 (whether an agent answers is another matter). */
  hasGuestAgentChannel: boolean;
}

export interface DomainOs {
  /** `hvm` for full virtualization. */
  type: string;
  arch?: string;
  machine?: string;
  /** `<os firmware='efi'>` auto-selection, when used. */
  firmware?: string;
  loader?: { path?: string; type?: string; readonly: boolean; secure: boolean };
  nvram?: { path?: string; template?: string };
  bootDevices: string[];
}

export type DiskDeviceKind = 'disk' | 'cdrom' | 'floppy' | 'lun';

export type DiskSource =
  | { type: 'file'; path: string }
  | { type: 'block'; path: string }
  | { type: 'network'; protocol: string; name?: string; hosts: { name?: string; port?: string }[] }
  | { type: 'volume'; pool: string; volume: string }
  /** An empty CD-ROM drive, or a source type Lifeboat does not read (dir, nvme, vhostuser). */
  | { type: 'none' | 'other'; xmlType?: string };

export interface DomainDisk {
  /** Guest device name (`vda`, `sdb`): libvirt's key for a disk in checkpoints and backups. */
  target: string;
  bus?: string;
  device: DiskDeviceKind;
  source: DiskSource;
  /** Driver format: `qcow2`, `raw`, ... */
  format?: string;
  readonly: boolean;
  shareable: boolean;
  /** Virtual size in bytes (`virsh domblkinfo` Capacity), when known. */
  sizeBytes?: number;
  /** Bytes allocated on the host (`domblkinfo` Allocation), when known. */
  allocationBytes?: number;
  serial?: string;
  bootOrder?: number;
}

export interface DomainNic {
  mac?: string;
  /** `network`, `bridge`, `user`, `direct`, ... */
  type: string;
  /** Network name (type network), bridge name (type bridge), device (type direct). */
  source?: string;
  model?: string;
  portgroup?: string;
}
