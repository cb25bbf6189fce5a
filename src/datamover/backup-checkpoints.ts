import { buildCheckpointXml, type CheckpointDiskSpec } from '../hypervisor/checkpoint-xml.js';
import { HypervisorError } from '../hypervisor/errors.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { readQcow2Bitmaps } from '../hypervisor/qcow2-bitmaps.js';
import { element, parseXml, removeChildren, serializeXml } from '../hypervisor/xml-tree.js';
import { isLifeboatCheckpoint } from './backup-plan.js';
import { removeQcow2Bitmap } from './backup-qcow2-bitmaps.js';

/**
 * Keeps libvirt checkpoints in step with the snapshots on the target: the checkpoint made with a
 * snapshot is recorded in its vm.json (name + XML); the next backup starts from it; once that next
 * snapshot is committed the older checkpoint is deleted (libvirt drops its bitmaps). A checkpoint
 * libvirt lost (domain undefined and defined again, VM moved to another host) is redefined from
 * the saved XML.
 */

/**
 * The XML to save with a snapshot, for a later `redefine`: without the embedded domain and without
 * `<parent>` — the parent is deleted once the next snapshot commits, and a redefine naming a
 * checkpoint that no longer exists would be refused.
 */
export function checkpointXmlForSaving(xml: string): string {
  const root = parseXml(xml);
  removeChildren(root, 'parent');
  removeChildren(root, 'domain');
  return serializeXml(root);
}

/** XML for a checkpoint made outside libvirt (shut-off domain: `qemu-img bitmap`), to redefine. */
export function offlineCheckpointXml(
  name: string,
  disks: readonly CheckpointDiskSpec[],
  createdAt: Date,
): string {
  const root = parseXml(buildCheckpointXml(name, disks, 'made by Lifeboat on a shut-off domain'));
  // libvirt keeps the creation time it is given on redefine; without one it would read as 1970.
  root.children.splice(1, 0, element('creationTime', {}, [], String(Math.floor(createdAt.getTime() / 1000))));
  for (const d of root.children.find((c) => c.name === 'disks')?.children ?? []) {
    if (d.attrs.checkpoint === 'bitmap') d.attrs.bitmap = name;
  }
  return serializeXml(root);
}

export type CheckpointAvailability =
  | { state: 'known' }
  | { state: 'redefined'; validated: boolean }
  | { state: 'lost'; reason: string };

/**
 * Makes sure libvirt knows checkpoint `name`, redefining it from `savedXml` when it does not. On a
 * running domain libvirt can check that the bitmaps exist (`--redefine-validate`); when that fails
 * the checkpoint is still redefined without the check, so that the backup job itself tells which
 * disk's bitmap is broken (the others stay incremental).
 */
export async function ensureCheckpointKnown(
  hv: LibvirtHypervisor,
  domain: string,
  name: string,
  savedXml: string | null,
  running: boolean,
): Promise<CheckpointAvailability> {
  if (await hv.checkpoints.exists(domain, name)) return { state: 'known' };
  if (!savedXml) return { state: 'lost', reason: `checkpoint ${name} is gone and no XML was saved for it` };
  if (running) {
    try {
      await hv.checkpoints.redefine(domain, savedXml, { validate: true });
      return { state: 'redefined', validated: true };
    } catch {
      // fall through: redefine without validation, let the backup job name the broken disk
    }
  }
  try {
    await hv.checkpoints.redefine(domain, savedXml);
    return { state: 'redefined', validated: false };
  } catch (err) {
    return {
      state: 'lost',
      reason: `checkpoint ${name} is gone and could not be redefined: ${messageOf(err)}`,
    };
  }
}

export interface DeleteCheckpointOptions {
  /** Image paths of the disks (shut-off domains: their bitmaps are removed with qemu-img). */
  images: readonly { path: string; format: string }[];
}

/**
 * Deletes a checkpoint and its bitmaps. libvirt 9 deletes bitmaps only on a running domain; on a
 * shut-off one the metadata goes with `--metadata` and the bitmaps with `qemu-img bitmap --remove`.
 * A checkpoint whose bitmaps are already gone (or broken) still loses its metadata.
 */
export async function deleteCheckpoint(
  hv: LibvirtHypervisor,
  domain: string,
  name: string,
  opts: DeleteCheckpointOptions,
): Promise<void> {
  const state = await hv.domains.state(domain);
  const running = state === 'running' || state === 'paused';
  const known = await hv.checkpoints.exists(domain, name);
  if (running) {
    if (known) {
      try {
        await hv.checkpoints.delete(domain, name);
        return;
      } catch (err) {
        if (err instanceof HypervisorError && err.code === 'CHECKPOINT_NOT_FOUND') return;
        // A broken bitmap can make the full delete fail; forget the metadata at least.
        await hv.checkpoints.delete(domain, name, { metadataOnly: true }).catch(() => {});
      }
    }
    return;
  }
  if (known) await hv.checkpoints.delete(domain, name, { metadataOnly: true }).catch(ignoreNotFound);
  for (const img of opts.images) {
    if (img.format !== 'qcow2') continue;
    const bitmaps = await readQcow2Bitmaps(img.path).catch(() => []);
    if (bitmaps.some((b) => b.name === name)) await removeQcow2Bitmap(img.path, name);
  }
}

/** Deletes every Lifeboat checkpoint of the domain except those in `keep`; returns the names deleted. */
export async function pruneLifeboatCheckpoints(
  hv: LibvirtHypervisor,
  domain: string,
  keep: ReadonlySet<string>,
  opts: DeleteCheckpointOptions,
): Promise<{ deleted: string[]; failed: { name: string; reason: string }[] }> {
  const deleted: string[] = [];
  const failed: { name: string; reason: string }[] = [];
  const names = await hv.checkpoints.names(domain);
  // Children first: libvirt re-parents them anyway, but this order never leaves an orphan behind.
  for (const name of [...names].reverse()) {
    if (!isLifeboatCheckpoint(name) || keep.has(name)) continue;
    try {
      await deleteCheckpoint(hv, domain, name, opts);
      deleted.push(name);
    } catch (err) {
      failed.push({ name, reason: messageOf(err) });
    }
  }
  // Bitmaps of shut-off images whose checkpoint metadata is already gone (a run killed between the
  // two steps) are found on the images themselves.
  const state = await hv.domains.state(domain);
  if (state === 'shutoff') {
    for (const img of opts.images) {
      if (img.format !== 'qcow2') continue;
      for (const b of await readQcow2Bitmaps(img.path).catch(() => [])) {
        if (!isLifeboatCheckpoint(b.name) || keep.has(b.name) || names.includes(b.name)) continue;
        try {
          await removeQcow2Bitmap(img.path, b.name);
          if (!deleted.includes(b.name)) deleted.push(b.name);
        } catch (err) {
          failed.push({ name: b.name, reason: messageOf(err) });
        }
      }
    }
  }
  return { deleted, failed };
}

function ignoreNotFound(err: unknown): void {
  if (err instanceof HypervisorError && err.code === 'CHECKPOINT_NOT_FOUND') return;
  throw err;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
