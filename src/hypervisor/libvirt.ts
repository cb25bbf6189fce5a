import { GuestAgent } from './guest-agent.js';
import { LibvirtBackups } from './libvirt-backups.js';
import { LibvirtCheckpoints } from './libvirt-checkpoints.js';
import { LibvirtDomains } from './libvirt-domains.js';
import { Virsh, type VirshOptions } from './virsh.js';

export type { BackupExport, NbdServerSpec, PullBackupDiskSpec } from './backup-xml.js';
export type { CheckpointDiskSpec, CheckpointInfo } from './checkpoint-xml.js';
export type { DomainDescription, DomainDisk, DomainNic } from './domain-description.js';
export type { FreezeResult } from './guest-agent.js';
export type { BeginPullBackupOptions, PullBackupJob } from './libvirt-backups.js';
export { nbdExportUri } from './libvirt-backups.js';
export { checkpointDisksFor } from './libvirt-checkpoints.js';
export type { DomainState, DomainSummary } from './libvirt-domains.js';

/**
 * One libvirt connection (through `virsh -c URI`), split by concept: domain lifecycle, checkpoints,
 * pull backups, guest agent. The datamover and the libvirt cloud driver hold one of these.
 */
export class LibvirtHypervisor {
  readonly virsh: Virsh;
  readonly domains: LibvirtDomains;
  readonly checkpoints: LibvirtCheckpoints;
  readonly backups: LibvirtBackups;
  readonly guestAgent: GuestAgent;

  constructor(options: VirshOptions = {}) {
    this.virsh = new Virsh(options);
    this.domains = new LibvirtDomains(this.virsh);
    this.checkpoints = new LibvirtCheckpoints(this.virsh);
    this.backups = new LibvirtBackups(this.virsh);
    this.guestAgent = new GuestAgent(this.virsh);
  }

  get uri(): string {
    return this.virsh.uri;
  }
}
