import {
  buildCheckpointXml,
  type CheckpointDiskSpec,
  type CheckpointInfo,
  parseCheckpointXml,
} from './checkpoint-xml.js';
import type { DomainDescription } from './domain-description.js';
import { HypervisorError } from './errors.js';
import type { Virsh } from './virsh.js';

/**
 * Which disks of a domain can carry a checkpoint bitmap: writable qcow2 disks. Raw images cannot
 * hold a persistent bitmap (libvirt: "checkpoint for disk vdb unsupported for storage type raw"),
 * cdroms and read-only or shared disks are not backed up incrementally.
 */
export function checkpointDisksFor(domain: DomainDescription): CheckpointDiskSpec[] {
  return domain.disks.map((d) => ({
    target: d.target,
    checkpoint:
      d.device === 'disk' && d.format === 'qcow2' && !d.readonly && !d.shareable && d.source.type !== 'none'
        ? 'bitmap'
        : 'no',
  }));
}

/**
 * libvirt checkpoints of one domain. In libvirt 9 / QEMU 7.2 every checkpoint is a persistent dirty
 * bitmap named after the checkpoint in each included qcow2 image, and ALL of them stay active: bitmap
 * X holds every write since checkpoint X (not just until the next one), so an incremental since X
 * needs only bitmap X. Checkpoints can only be created while the domain runs.
 */
export class LibvirtCheckpoints {
  constructor(private readonly virsh: Virsh) {}

  /** Creates a checkpoint (the domain must be running). Freeze the guest around this, not longer. */
  async create(
    domain: string,
    name: string,
    disks: readonly CheckpointDiskSpec[],
    options: { description?: string } = {},
  ): Promise<CheckpointInfo> {
    const xml = buildCheckpointXml(name, disks, options.description);
    await this.virsh.runWithXmlFiles([xml], ([file]) => ['checkpoint-create', domain, file!]);
    return this.get(domain, name);
  }

  /** Checkpoint names, parents before children. */
  async names(domain: string): Promise<string[]> {
    const out = await this.virsh.run(['checkpoint-list', domain, '--name', '--topological']);
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0);
  }

  async list(domain: string): Promise<CheckpointInfo[]> {
    const names = await this.names(domain);
    return Promise.all(names.map((n) => this.get(domain, n)));
  }

  async get(domain: string, name: string): Promise<CheckpointInfo> {
    return parseCheckpointXml(await this.dumpXml(domain, name));
  }

  /**
   * The checkpoint's XML, as saved for a later `redefine`. Without `withDomain` it leaves out the
   * domain definition libvirt embeds (redefine accepts both in libvirt 9).
   */
  async dumpXml(domain: string, name: string, options: { withDomain?: boolean } = {}): Promise<string> {
    const args = ['checkpoint-dumpxml', domain, name];
    if (!options.withDomain) args.push('--no-domain');
    return this.virsh.run(args);
  }

  async exists(domain: string, name: string): Promise<boolean> {
    try {
      await this.dumpXml(domain, name);
      return true;
    } catch (err) {
      if (err instanceof HypervisorError && err.code === 'CHECKPOINT_NOT_FOUND') return false;
      throw err;
    }
  }

  /**
   * Deletes a checkpoint. By default libvirt also removes (merges) its bitmap in the images;
   * `metadataOnly` forgets the checkpoint but leaves the bitmaps (e.g. before undefine, or when the
   * bitmaps are gone already). `children`: the checkpoint and all its descendants.
   */
  async delete(
    domain: string,
    name: string,
    options: { metadataOnly?: boolean; children?: boolean } = {},
  ): Promise<void> {
    const args = ['checkpoint-delete', domain, name];
    if (options.metadataOnly) args.push('--metadata');
    if (options.children) args.push('--children');
    await this.virsh.run(args);
  }

  /**
   * Re-creates checkpoint metadata from saved XML (after a domain was undefined and defined again,
   * or on another host), leaving the images alone. `validate` makes libvirt check the bitmaps really
   * exist in the images, so a broken checkpoint is caught here rather than in the next backup.
   */
  async redefine(domain: string, xml: string, options: { validate?: boolean } = {}): Promise<CheckpointInfo> {
    const info = parseCheckpointXml(xml);
    await this.virsh.runWithXmlFiles([xml], ([file]) => [
      'checkpoint-create',
      domain,
      file!,
      '--redefine',
      ...(options.validate ? ['--redefine-validate'] : []),
    ]);
    return this.get(domain, info.name);
  }
}
