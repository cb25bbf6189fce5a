import type { ChainReader } from '../disk/qcow2/chain.js';
import type { DomainDisk } from '../hypervisor/domain-description.js';
import { parseDomainXml } from '../hypervisor/domain-xml.js';
import { HypervisorError } from '../hypervisor/errors.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { readQcow2Bitmaps } from '../hypervisor/qcow2-bitmaps.js';
import type { TargetBackend } from '../target/backend.js';
import type { VmDiskMeta, VmMeta } from '../target/metadata/schemas.js';
import { removeQcow2Bitmap } from './backup-qcow2-bitmaps.js';
import type { RestoreProgress } from './restore-domain.js';
import { abortedError, RestoreError } from './restore-errors.js';
import { writeDiskInPlace } from './restore-in-place-copy.js';
import { type InPlaceTarget, NbdInPlaceTarget, RawFileInPlaceTarget } from './restore-in-place-target.js';
import { openBackupDisk } from './restore-source.js';

export interface RestoreInPlaceOptions {
  backend: TargetBackend;
  vm: VmMeta;
  hypervisor: LibvirtHypervisor;
  /** The existing domain (name or UUID) whose disks are overwritten. It must be shut off. */
  domain: string;
  /** Target devices (or disk names) to restore; default every backed-up disk. */
  disks?: readonly string[];
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface InPlaceDiskResult {
  targetDev: string;
  path: string;
  format: 'qcow2' | 'raw';
  dataBytes: number;
  zeroedBytes: number;
}

export interface RestoreInPlaceResult {
  domain: string;
  disks: InPlaceDiskResult[];
  /** Domain disks the backup does not hold (or not selected): left as they are. */
  untouched: string[];
  /** Checkpoints removed after the write: their bitmaps no longer describe the data. */
  deletedCheckpoints: string[];
}

interface Pairing {
  saved: VmDiskMeta;
  disk: DomainDisk;
  path: string;
  format: 'qcow2' | 'raw';
}

function pairDisks(
  domainDisks: readonly DomainDisk[],
  saved: readonly VmDiskMeta[],
  select?: readonly string[],
) {
  const chosen = saved.filter((s) => !select || select.includes(s.targetDev) || select.includes(s.name));
  for (const want of select ?? []) {
    if (!saved.some((s) => s.targetDev === want || s.name === want)) {
      throw new RestoreError('RESTORE_DISK_NOT_FOUND', `disk ${want} is not in the backup`);
    }
  }
  const pairs: Pairing[] = [];
  for (const s of chosen) {
    const d = domainDisks.find((x) => x.target === s.targetDev);
    if (!d) {
      throw new RestoreError(
        'RESTORE_DISK_NOT_FOUND',
        `the domain has no disk ${s.targetDev} to restore ${s.name} into (it has: ${domainDisks.map((x) => x.target).join(', ')})`,
      );
    }
    if (d.source.type !== 'file' && d.source.type !== 'block') {
      throw new RestoreError(
        'RESTORE_DISK_UNSUPPORTED',
        `disk ${d.target}: ${d.source.type} sources cannot be restored in place`,
      );
    }
    const format = d.format ?? 'raw';
    if (format !== 'qcow2' && format !== 'raw') {
      throw new RestoreError(
        'RESTORE_DISK_UNSUPPORTED',
        `disk ${d.target}: format ${format} cannot be restored in place`,
      );
    }
    if (d.readonly || d.device !== 'disk') {
      throw new RestoreError(
        'RESTORE_DISK_UNSUPPORTED',
        `disk ${d.target} is a read-only ${d.device}; not restored in place`,
      );
    }
    pairs.push({ saved: s, disk: d, path: d.source.path, format });
  }
  const untouched = domainDisks
    .filter((d) => d.device === 'disk' && !pairs.some((p) => p.disk.target === d.target))
    .map((d) => d.target);
  return { pairs, untouched };
}

/**
 * Writes a snapshot back over the disks of an existing, SHUT-OFF domain, matched by target device.
 * qcow2 disks are written through a read-write qemu-nbd export (QEMU's driver keeps the image
 * consistent, its backing file and cluster size untouched); raw disks are written directly, holes
 * punched where the snapshot reads as zeros. Each disk ends up equal to the snapshot byte for byte.
 *
 * Sizes must match exactly: a disk grown or shrunk since the snapshot is refused (resize it back
 * first, or restore as a new domain). Every disk is opened and checked before any is written.
 *
 * Afterwards every checkpoint of the domain is deleted and every persistent bitmap is removed from
 * the restored qcow2 images: the bitmaps counted writes since some earlier point, and the restore
 * rewrote the disks behind them, so the next backup of each restored disk must be a full one (with
 * neither checkpoint nor bitmap left, it is). Disks that were not restored keep their bitmaps.
 */
export async function restoreInPlace(opts: RestoreInPlaceOptions): Promise<RestoreInPlaceResult> {
  const { hypervisor: hv, vm, signal } = opts;
  const what = `in-place restore of ${opts.domain}`;
  if (!(await hv.domains.exists(opts.domain))) {
    throw new RestoreError('RESTORE_DOMAIN_NOT_FOUND', `no domain ${opts.domain} on ${hv.uri}`);
  }
  const state = await hv.domains.state(opts.domain);
  if (state !== 'shutoff') {
    throw new RestoreError(
      'RESTORE_DOMAIN_RUNNING',
      `domain ${opts.domain} is ${state}; shut it off before an in-place restore`,
    );
  }
  const desc = parseDomainXml(await hv.domains.dumpXml(opts.domain, { inactive: true }));
  const { pairs, untouched } = pairDisks(desc.disks, vm.disks, opts.disks);

  const targets: InPlaceTarget[] = [];
  const chains: ChainReader[] = [];
  const results: InPlaceDiskResult[] = [];
  let ok = false;
  try {
    for (const p of pairs) {
      targets.push(
        p.format === 'qcow2'
          ? await NbdInPlaceTarget.open(p.path, 'qcow2')
          : await RawFileInPlaceTarget.open(p.path),
      );
      const t = targets[targets.length - 1]!;
      if (t.size !== p.saved.virtualSize) {
        throw new RestoreError(
          'RESTORE_DISK_SIZE_MISMATCH',
          `disk ${p.disk.target} (${p.path}) is ${t.size} bytes now, the snapshot's is ${p.saved.virtualSize}; resize it to ${p.saved.virtualSize} bytes first or restore as a new domain`,
          { details: { target: p.disk.target, current: t.size, snapshot: p.saved.virtualSize } },
        );
      }
      chains.push(await openBackupDisk(opts.backend, vm, p.saved));
    }
    const totals = await Promise.all(
      chains.map(async (c) =>
        (await c.extents()).reduce((n, e) => n + (e.kind === 'data' ? e.length : 0), 0),
      ),
    );
    const bytesTotal = totals.reduce((a, b) => a + b, 0);
    let before = 0;
    for (const [i, p] of pairs.entries()) {
      if (signal?.aborted) throw abortedError(signal, what);
      const r = await writeDiskInPlace(chains[i]!, targets[i]!, {
        signal,
        onProgress: (done, total) =>
          opts.onProgress?.({
            vmId: vm.id,
            disk: p.saved.name,
            targetDev: p.disk.target,
            diskBytesDone: done,
            diskBytesTotal: total,
            bytesDone: before + done,
            bytesTotal,
          }),
      });
      before += r.dataBytes;
      results.push({ targetDev: p.disk.target, path: p.path, format: p.format, ...r });
    }
    ok = true;
  } catch (err) {
    if (signal?.aborted && !(err instanceof RestoreError)) throw abortedError(signal, what);
    throw err;
  } finally {
    await Promise.all(chains.map((c) => c.close().catch(() => {})));
    // Only a finished write is made durable; after a failure the disks are in between anyway.
    await Promise.all(targets.map((t) => (ok ? t.close() : t.abort())));
  }
  const deletedCheckpoints = await deleteAllCheckpoints(hv, opts.domain);
  for (const r of results) if (r.format === 'qcow2') await removeAllBitmaps(r.path);
  return { domain: opts.domain, disks: results, untouched, deletedCheckpoints };
}

/**
 * Removes every persistent bitmap from a restored qcow2 image. Deleting the checkpoints is not
 * enough: on a shut-off domain libvirt can only forget their metadata, and a later backup could
 * redefine a checkpoint from the XML saved on the target and find its bitmap still in the image.
 * With the bitmaps gone, such a redefine fails validation and that disk's next backup is a full.
 */
export async function removeAllBitmaps(image: string): Promise<void> {
  for (const b of await readQcow2Bitmaps(image, { format: 'qcow2' })) await removeQcow2Bitmap(image, b.name);
}

/**
 * Deletes every checkpoint of a domain, leaves first, each with its bitmaps; a checkpoint whose
 * bitmaps cannot be removed (already gone, or on a disk not restored) is forgotten metadata-only.
 */
export async function deleteAllCheckpoints(hv: LibvirtHypervisor, domain: string): Promise<string[]> {
  const names = await hv.checkpoints.names(domain);
  const deleted: string[] = [];
  for (const name of [...names].reverse()) {
    try {
      await hv.checkpoints.delete(domain, name);
    } catch (err) {
      if (err instanceof HypervisorError && err.code === 'CHECKPOINT_NOT_FOUND') continue;
      await hv.checkpoints.delete(domain, name, { metadataOnly: true });
    }
    deleted.push(name);
  }
  return deleted;
}
