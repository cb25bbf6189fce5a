import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { BackupError } from './backup-errors.js';
import { removeQcow2Bitmap } from './backup-qcow2-bitmaps.js';

/**
 * What a running backup has set up on this host, written down before each step, so that a backup
 * killed half-way (SIGKILL, power loss) leaves nothing behind for long: the next backup of the same
 * domain (or `recoverInterruptedBackup`) reads the journal of the dead run and undoes it — aborts
 * its libvirt backup job, kills its qemu-nbd processes, removes scratch files and bitmaps — before
 * it starts. The journal lives in the scratch directory (host-local state, never on the target).
 */
export interface BackupJournal {
  version: 1;
  owner: { pid: number; startTicks: string; host: string };
  domainUuid: string;
  domain: string;
  startedAt: string;
  /** The checkpoint this run creates; deleted on recovery unless a committed snapshot recorded it. */
  newCheckpoint: string;
  /** libvirt pull backup: its private directory (NBD socket, scratch files). */
  pullJob?: { jobDir: string; scratchFiles: string[] };
  /** qemu-nbd exports of a shut-off domain. */
  qemuNbd: { pid: number; socket: string }[];
  /** Bitmaps added with qemu-img to a shut-off domain's images. */
  offlineBitmaps: { image: string; name: string }[];
  /** The target side, for callers that own the lease (CLI): the unfinished snapshot to remove. */
  target?: {
    location: string;
    workloadId: string;
    snapshotId: string;
    leaseToken?: string;
    /** This run acquired the lease itself (standalone backup): a later run may release it. */
    ownsLease?: boolean;
  };
}

export function journalPath(scratchDir: string, domainUuid: string): string {
  return join(scratchDir, `lifeboat-backup-${domainUuid}.json`);
}

/** The kernel's start time of a process: with the PID, it tells a live owner from a reused PID. */
async function processStartTicks(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

async function processCmdline(pid: number): Promise<string | undefined> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
  } catch {
    return undefined;
  }
}

export class JournalFile {
  private constructor(
    readonly path: string,
    readonly doc: BackupJournal,
  ) {}

  static async create(
    scratchDir: string,
    init: Omit<BackupJournal, 'version' | 'owner' | 'startedAt' | 'qemuNbd' | 'offlineBitmaps'>,
  ): Promise<JournalFile> {
    const owner = {
      pid: process.pid,
      startTicks: (await processStartTicks(process.pid)) ?? '',
      host: hostname(),
    };
    const j = new JournalFile(journalPath(scratchDir, init.domainUuid), {
      version: 1,
      owner,
      startedAt: new Date().toISOString(),
      qemuNbd: [],
      offlineBitmaps: [],
      ...init,
    });
    await j.save();
    return j;
  }

  /** Applies a change and writes the journal (temp file + rename: never half written). */
  async update(change: (doc: BackupJournal) => void): Promise<void> {
    change(this.doc);
    await this.save();
  }

  private async save(): Promise<void> {
    const tmp = join(dirname(this.path), `.${process.pid}.${Date.now()}.journal-tmp`);
    await writeFile(tmp, JSON.stringify(this.doc, null, 2), { mode: 0o600 });
    await rename(tmp, this.path);
  }

  async remove(): Promise<void> {
    await rm(this.path, { force: true });
  }
}

export async function readJournal(path: string): Promise<BackupJournal | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as BackupJournal;
  } catch {
    return undefined;
  }
}

/** True when the process that wrote the journal still runs (same host, same PID and start time). */
export async function journalOwnerAlive(j: BackupJournal): Promise<boolean> {
  if (j.owner.host !== hostname()) return false;
  if (j.owner.pid === process.pid) return true;
  const ticks = await processStartTicks(j.owner.pid);
  return ticks !== undefined && ticks === j.owner.startTicks;
}

export interface RecoveredBackup {
  /** The dead run's checkpoint (the caller deletes it unless a committed snapshot recorded it). */
  newCheckpoint: string;
  target?: BackupJournal['target'];
  undone: string[];
}

/**
 * Undoes what a dead backup of this domain left on this host. Throws BACKUP_BUSY when the journal's
 * owner is still alive (another backup of the domain runs now). Returns undefined when there was
 * no journal.
 */
export async function recoverInterruptedBackup(
  hv: LibvirtHypervisor,
  scratchDir: string,
  domainUuid: string,
  opts: { keepCheckpoint?: string } = {},
): Promise<RecoveredBackup | undefined> {
  const path = journalPath(scratchDir, domainUuid);
  const j = await readJournal(path);
  if (!j) return undefined;
  // Our own process's journal is a finished run that never called finish(): nothing runs.
  if (j.owner.pid !== process.pid && (await journalOwnerAlive(j))) {
    throw new BackupError(
      'BACKUP_BUSY',
      `domain ${j.domain} is being backed up by process ${j.owner.pid} (since ${j.startedAt})`,
      { details: { pid: j.owner.pid } },
    );
  }
  const undone: string[] = [];
  for (const n of j.qemuNbd) {
    const cmd = await processCmdline(n.pid);
    // Only the qemu-nbd serving that socket: the PID may have been reused since.
    if (cmd?.includes('qemu-nbd') && cmd.includes(n.socket)) {
      process.kill(n.pid, 'SIGKILL');
      for (let i = 0; i < 50 && (await processCmdline(n.pid)) !== undefined; i++) await sleep(100);
      undone.push(`killed qemu-nbd ${n.pid}`);
    }
    await rm(dirname(n.socket), { recursive: true, force: true });
  }
  if (j.pullJob) {
    const { jobDir } = j.pullJob;
    try {
      if (await hv.backups.isJobActive(j.domain)) {
        const desc = await hv.backups.describe(j.domain).catch(() => undefined);
        const socket = desc?.server?.transport === 'unix' ? desc.server.socket : undefined;
        if (socket?.startsWith(`${jobDir}/`)) {
          await hv.backups.abort(j.domain);
          undone.push(`aborted the libvirt backup job of ${j.domain}`);
        }
      }
    } catch {
      // domain gone or not running: no job left to abort
    }
    for (const f of j.pullJob.scratchFiles) await rm(f, { force: true });
    await rm(jobDir, { recursive: true, force: true });
    undone.push(`removed ${jobDir}`);
  }
  for (const b of j.offlineBitmaps) {
    // The run may have died after its snapshot was committed: that snapshot's bitmap stays.
    if (b.name === opts.keepCheckpoint) continue;
    try {
      await removeQcow2Bitmap(b.image, b.name);
      undone.push(`removed bitmap ${b.name} from ${b.image}`);
    } catch {
      // already gone, or the domain runs now (its checkpoint prune removes it later)
    }
  }
  await rm(path, { force: true });
  return { newCheckpoint: j.newCheckpoint, target: j.target, undone };
}
