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
 *
 * What libvirt 9.0 + QEMU 7.2 (Debian 12) do, verified by test/hypervisor.test.ts:
 * - Pull backup exports are named after the disk target (`vda`); an incremental disk also carries
 *   the meta context `qemu:dirty-bitmap:backup-<target>`; a full one only `base:allocation`.
 * - `backupmode`/`incremental` per disk work: one job can export some disks in full (raw disks, new
 *   disks, broken bitmaps) and others incrementally.
 * - libvirt creates the scratch files (qcow2, owned by libvirt-qemu, 0600) and deletes them when the
 *   job ends; QEMU creates the NBD socket (owned by libvirt-qemu, 0775): root can connect.
 * - A pull backup never finishes by itself; `domjobabort` ends it (then `domjobinfo --completed`
 *   says "Operation canceled": that is the normal end of a pull backup).
 * - A second `backup-begin` while a job runs blocks 30 s on libvirt's state lock before failing;
 *   `LibvirtBackups.begin` asks `domjobinfo` first and fails at once with BACKUP_JOB_ACTIVE.
 * - Checkpoints need a running domain ("cannot create checkpoint for inactive domain"); raw disks
 *   cannot carry one. All checkpoint bitmaps stay enabled: bitmap X = every write since X.
 * - A running domain's bitmaps live in QEMU; they reach the qcow2 header when QEMU closes the image
 *   (shutdown/destroy), so `qemu-img info` lists them only for shut-off domains.
 * - `undefine` of a running domain succeeds and leaves it running as a transient domain.
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
