import type { CheckpointDiskSpec } from '../hypervisor/checkpoint-xml.js';
import type { DomainDescription } from '../hypervisor/domain-description.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { readQcow2Bitmaps } from '../hypervisor/qcow2-bitmaps.js';
import { QemuNbdExport } from '../hypervisor/qemu-nbd.js';
import { checkpointXmlForSaving, deleteCheckpoint, offlineCheckpointXml } from './backup-checkpoints.js';
import type { JournalFile } from './backup-journal.js';
import { type BackupPlan, fallBackToFull } from './backup-plan.js';
import { addQcow2Bitmap } from './backup-qcow2-bitmaps.js';
import type { BackupSource, DiskExport } from './backup-source.js';

export interface OfflineSourceOptions {
  hv: LibvirtHypervisor;
  domain: string;
  description: DomainDescription;
  /** Mutated: disks whose bitmap is missing or inconsistent fall back to full. */
  plan: BackupPlan;
  newCheckpoint: string;
  journal: JournalFile;
}

/**
 * A shut-off domain: each disk is served by its own read-only `qemu-nbd` (the top image; qemu-nbd
 * opens the backing chain), with the parent's checkpoint bitmap as a dirty-bitmap context for
 * incremental disks.
 *
 * The new checkpoint of a shut-off domain: libvirt 9 cannot create one (it refuses for inactive
 * domains), so Lifeboat adds an enabled persistent bitmap named after the checkpoint to every
 * qcow2 image with `qemu-img bitmap --add` BEFORE the exports start — nothing writes to the
 * images in between, so the bitmap starts exactly at the content being backed up — and once every
 * disk is copied it redefines the checkpoint in libvirt from XML naming those bitmaps. When the
 * domain starts, QEMU loads the bitmaps and records writes into them; the next backup (running or
 * not) is an incremental from that checkpoint like any other. qemu-nbd holds the images' locks
 * meanwhile, so the domain cannot start half-way through.
 */
export async function startOfflineExports(opts: OfflineSourceOptions): Promise<BackupSource> {
  const { hv, domain, plan } = opts;
  for (const d of plan.disks) {
    if (d.mode !== 'incremental') continue;
    const bitmaps = await readQcow2Bitmaps(d.path!).catch(() => []);
    const b = bitmaps.find((x) => x.name === d.sinceCheckpoint);
    if (!b) fallBackToFull(d, `disk ${d.target}: the image has no bitmap ${d.sinceCheckpoint}: full backup`);
    else if (b.inconsistent)
      fallBackToFull(
        d,
        `disk ${d.target}: bitmap ${d.sinceCheckpoint} is inconsistent (QEMU stopped without saving it): full backup`,
      );
    else if (!b.enabled)
      fallBackToFull(d, `disk ${d.target}: bitmap ${d.sinceCheckpoint} is disabled: full backup`);
  }

  const tracked = plan.disks.filter((d) => d.tracksChanges && d.path);
  const images = plan.disks.filter((d) => d.path).map((d) => ({ path: d.path!, format: d.format }));
  const exports = new Map<string, DiskExport>();
  const servers: QemuNbdExport[] = [];
  const stopAll = async () => {
    for (const s of servers.splice(0)) await s.stop();
  };
  try {
    for (const d of tracked) {
      await opts.journal.update((j) => {
        j.offlineBitmaps.push({ image: d.path!, name: opts.newCheckpoint });
      });
      await addQcow2Bitmap(d.path!, opts.newCheckpoint);
    }
    for (const d of plan.disks) {
      const server = await QemuNbdExport.start({
        image: d.path!,
        format: d.format,
        bitmaps: d.mode === 'incremental' ? [d.sinceCheckpoint!] : [],
        exportName: d.target,
      });
      servers.push(server);
      await opts.journal.update((j) => {
        j.qemuNbd.push({ pid: server.pid, socket: server.socketPath });
      });
      exports.set(d.target, {
        uri: server.uri,
        dirtyBitmap: d.mode === 'incremental' ? d.sinceCheckpoint : undefined,
      });
    }
  } catch (err) {
    await stopAll();
    await removeBitmaps();
    throw err;
  }

  const planned = new Set(tracked.map((d) => d.target));
  const checkpointDisks: CheckpointDiskSpec[] = opts.description.disks.map((d) => ({
    target: d.target,
    checkpoint: planned.has(d.target) ? 'bitmap' : 'no',
  }));
  async function removeBitmaps(): Promise<void> {
    if (tracked.length > 0) await deleteCheckpoint(hv, domain, opts.newCheckpoint, { images });
  }
  return {
    kind: 'qemu-nbd',
    exports,
    checkpoint: tracked.length > 0 ? opts.newCheckpoint : undefined,
    close: stopAll,
    async commitCheckpoint() {
      if (tracked.length === 0) return null;
      await hv.checkpoints.redefine(
        domain,
        offlineCheckpointXml(opts.newCheckpoint, checkpointDisks, new Date()),
      );
      return checkpointXmlForSaving(await hv.checkpoints.dumpXml(domain, opts.newCheckpoint));
    },
    discardCheckpoint: removeBitmaps,
  };
}
