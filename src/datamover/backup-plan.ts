import type { DomainDescription, DomainDisk } from '../hypervisor/domain-description.js';
import { parseDomainXml } from '../hypervisor/domain-xml.js';
import type { VmMeta } from '../target/metadata/schemas.js';
import { BackupError } from './backup-errors.js';

/**
 * What to do with each disk of a domain, decided before anything touches the hypervisor: full or
 * incremental (since which checkpoint), whether the disk can carry a bitmap for the next
 * incremental, and why an incremental was not possible. Pure: tested without libvirt.
 */

/** The checkpoint (and the bitmap of the same name in each image) made with snapshot `snapshotId`. */
export const CHECKPOINT_PREFIX = 'lifeboat-';
export function checkpointNameFor(snapshotId: string): string {
  return `${CHECKPOINT_PREFIX}${snapshotId}`;
}
export function isLifeboatCheckpoint(name: string): boolean {
  return name.startsWith(CHECKPOINT_PREFIX);
}

export interface BackupWarning {
  code: string;
  message: string;
  disk?: string;
}

export interface DiskPlan {
  /** Guest device (`vda`): the disk's name on the target and libvirt's key in checkpoints/backups. */
  target: string;
  disk: DomainDisk;
  /** Path for a shut-off read through qemu-nbd (file and block sources). */
  path?: string;
  /** Image format QEMU opens it with (`qcow2`, `raw`). */
  format: string;
  mode: 'full' | 'incremental';
  /** For an incremental: the checkpoint whose bitmap holds the changes since the parent snapshot. */
  sinceCheckpoint?: string;
  /** The disk gets a bitmap in the new checkpoint (writable qcow2 only: raw images cannot hold one). */
  tracksChanges: boolean;
  /** Why this disk is full although an incremental was asked for; becomes a snapshot warning. */
  fallbackWarning: string | null;
  /** Why a disk is always full (raw: no changed block tracking); informational, not a warning. */
  note?: string;
}

export interface BackupPlan {
  disks: DiskPlan[];
  /** Disks left out on purpose (excluded) or because they hold nothing to back up (empty cdrom). */
  skipped: { target: string; reason: string }[];
  /** Disks that cannot be read at all (unsupported source); the snapshot records them. */
  warnings: BackupWarning[];
}

export interface PlanInput {
  domain: DomainDescription;
  /** `running` reads through libvirt's pull backup (any source type); `shutoff` through qemu-nbd. */
  state: 'running' | 'shutoff';
  excludeDisks?: readonly string[];
  /** The previous committed snapshot's record of this VM; null for a full backup. */
  parentVm: VmMeta | null;
}

function sourcePathOf(disk: DomainDisk): string | undefined {
  return disk.source.type === 'file' || disk.source.type === 'block' ? disk.source.path : undefined;
}

function sourceLabel(disk: DomainDisk): string {
  const s = disk.source;
  if (s.type === 'file' || s.type === 'block') return s.path;
  if (s.type === 'volume') return `${s.pool}/${s.volume}`;
  if (s.type === 'network') return `${s.protocol}:${s.name ?? ''}`;
  return s.type;
}

export function planBackup(input: PlanInput): BackupPlan {
  const { domain, state } = input;
  const exclude = new Set(input.excludeDisks ?? []);
  for (const x of exclude) {
    if (!domain.disks.some((d) => d.target === x)) {
      throw new BackupError(
        'BACKUP_BAD_ARGUMENT',
        `cannot exclude disk ${x}: domain ${domain.name} has ${domain.disks.map((d) => d.target).join(', ') || 'no disks'}`,
      );
    }
  }
  const parentDisks = new Map((input.parentVm?.disks ?? []).map((d) => [d.name, d]));
  const parentSources = new Map<string, string>();
  if (input.parentVm) {
    try {
      for (const d of parseDomainXml(input.parentVm.domainXml).disks)
        parentSources.set(d.target, sourceLabel(d));
    } catch {
      // An unreadable saved definition only costs the "disk replaced" check.
    }
  }

  const plan: BackupPlan = { disks: [], skipped: [], warnings: [] };
  for (const disk of domain.disks) {
    const target = disk.target;
    if (exclude.has(target)) {
      plan.skipped.push({ target, reason: 'excluded' });
      continue;
    }
    if (disk.device === 'cdrom' || disk.device === 'floppy') {
      plan.skipped.push({ target, reason: `${disk.device}: removable media are not backed up` });
      continue;
    }
    if (disk.source.type === 'none' || disk.source.type === 'other') {
      plan.skipped.push({ target, reason: 'no source Lifeboat can read' });
      continue;
    }
    const path = sourcePathOf(disk);
    if (state === 'shutoff' && path === undefined) {
      plan.warnings.push({
        code: 'DISK_NOT_READABLE',
        message: `disk ${target} (${sourceLabel(disk)}) of a shut-off domain cannot be read: only file and block sources are; start the domain to back it up`,
        disk: target,
      });
      continue;
    }
    const format = disk.format ?? 'raw';
    const tracksChanges = format === 'qcow2' && !disk.readonly && !disk.shareable;
    const p: DiskPlan = { target, disk, path, format, mode: 'full', tracksChanges, fallbackWarning: null };
    if (!tracksChanges) {
      p.note = disk.readonly
        ? 'read-only disk: no changed block tracking, always full'
        : disk.shareable
          ? 'shareable disk: no changed block tracking, always full'
          : `${format} image: no changed block tracking (only qcow2 holds dirty bitmaps), always full`;
    }
    plan.disks.push(p);
    if (!input.parentVm) continue;

    const prev = parentDisks.get(target);
    if (!prev) {
      p.note ??= 'new disk since the previous snapshot: full';
      continue;
    }
    const fallback = (message: string) => {
      p.fallbackWarning = message;
    };
    if (prev.virtualSize !== disk.sizeBytes && disk.sizeBytes !== undefined) {
      fallback(`disk ${target} was resized (${prev.virtualSize} -> ${disk.sizeBytes} bytes): full backup`);
      continue;
    }
    const prevSource = parentSources.get(target);
    if (prevSource !== undefined && prevSource !== sourceLabel(disk)) {
      fallback(`disk ${target} was replaced (${prevSource} -> ${sourceLabel(disk)}): full backup`);
      continue;
    }
    if (!tracksChanges) continue;
    if (!prev.checkpointName) {
      fallback(`the previous snapshot recorded no checkpoint for disk ${target}: full backup`);
      continue;
    }
    p.mode = 'incremental';
    p.sinceCheckpoint = prev.checkpointName;
  }
  if (plan.disks.length === 0) {
    const why = [
      ...plan.skipped.map((s) => `${s.target}: ${s.reason}`),
      ...plan.warnings.map((w) => w.message),
    ];
    throw new BackupError(
      'BACKUP_NO_DISKS',
      `domain ${domain.name} has no disk to back up${why.length ? ` (${why.join('; ')})` : ''}`,
    );
  }
  return plan;
}

/** Turns a disk into a full backup, recording why (runtime fallbacks: broken bitmap, lost checkpoint). */
export function fallBackToFull(p: DiskPlan, message: string): void {
  if (p.mode === 'full') return;
  p.mode = 'full';
  p.sinceCheckpoint = undefined;
  p.fallbackWarning = message;
}

/** Snapshot warnings of a plan: unreadable disks and every disk that fell back to full. */
export function planWarnings(plan: BackupPlan): BackupWarning[] {
  return [
    ...plan.warnings,
    ...plan.disks
      .filter((d) => d.fallbackWarning !== null)
      .map((d) => ({ code: 'INCREMENTAL_FALLBACK_FULL', message: d.fallbackWarning!, disk: d.target })),
  ];
}
