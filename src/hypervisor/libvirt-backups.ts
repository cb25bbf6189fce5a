import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BackupExport,
  type BackupJobDescription,
  buildPullBackupXml,
  type NbdServerSpec,
  type PullBackupDiskSpec,
  parseBackupXml,
} from './backup-xml.js';
import { buildCheckpointXml, type CheckpointDiskSpec } from './checkpoint-xml.js';
import { HypervisorError } from './errors.js';
import type { Virsh } from './virsh.js';

/** Errors of domjobabort/domjobinfo that mean "there is no job to end". */
const JOB_GONE: readonly string[] = ['NO_BACKUP_JOB', 'DOMAIN_NOT_RUNNING', 'DOMAIN_NOT_FOUND'];

export interface BeginPullBackupOptions {
  /**
   * Disks to export, with per-disk incremental overrides. Disks of the domain not listed are left
   * out (libvirt's default would be to export them all).
   */
  disks: ReadonlyArray<Omit<PullBackupDiskSpec, 'scratchFile'>>;
  /** Checkpoint to export the changes since (per-disk `incremental` overrides it); omitted = full. */
  incremental?: string;
  /**
   * Checkpoint to create at the very instant the backup starts (same QEMU transaction), so the next
   * incremental starts exactly where this backup's point-in-time view ends.
   */
  checkpoint?: { name: string; disks: readonly CheckpointDiskSpec[]; description?: string };
  /**
   * A directory where QEMU (user libvirt-qemu) can write: a private per-job directory is made in
   * it for the NBD socket and the scratch files. It and its parents must be traversable by QEMU.
   */
  workDir: string;
  /** Put the scratch files somewhere else (a bigger filesystem); default: the job directory. */
  scratchDir?: string;
  /** Serve NBD on TCP instead of a UNIX socket in the job directory. */
  tcp?: { host: string; port: number };
}

/** A running pull-mode backup: what a reader needs to connect, and what to clean up afterwards. */
export interface PullBackupJob {
  domain: string;
  server: NbdServerSpec;
  /** The exports QEMU serves, one per backed-up disk (libvirt 9 names them after the target: `vda`). */
  exports: BackupExport[];
  /** The checkpoint created together with the backup, if any. */
  checkpoint?: string;
  jobDir: string;
  scratchFiles: string[];
}

/** NBD URI of one export, as `qemu-img`, `nbdinfo` and `nbdcopy` take it. */
export function nbdExportUri(server: NbdServerSpec, exportName: string): string {
  if (server.transport === 'unix') return `nbd+unix:///${exportName}?socket=${server.socket}`;
  return `nbd://${server.host}:${server.port}/${exportName}`;
}

export interface DomainJobInfo {
  /** `None` when no job runs; a pull backup shows `Unbounded`. */
  type: string;
  operation?: string;
  fields: Record<string, string>;
}

export function parseDomjobinfo(text: string): DomainJobInfo {
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    fields[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return { type: fields['Job type'] ?? 'None', operation: fields.Operation, fields };
}

/**
 * Pull-mode backups (`virsh backup-begin`): QEMU serves a point-in-time view of each disk over NBD
 * while the guest keeps running; blocks the guest overwrites are first copied to a scratch file.
 * A pull backup never completes on its own: the reader finishes and calls `end` (domjobabort).
 */
export class LibvirtBackups {
  constructor(private readonly virsh: Virsh) {}

  async jobInfo(domain: string): Promise<DomainJobInfo> {
    return parseDomjobinfo(await this.virsh.run(['domjobinfo', domain]));
  }

  async isJobActive(domain: string): Promise<boolean> {
    return (await this.jobInfo(domain)).type !== 'None';
  }

  /** `backup-dumpxml` of the running backup: export names and bitmap contexts. */
  async describe(domain: string): Promise<BackupJobDescription> {
    return parseBackupXml(await this.virsh.run(['backup-dumpxml', domain]));
  }

  async begin(domain: string, options: BeginPullBackupOptions): Promise<PullBackupJob> {
    // A second backup-begin on a domain with a job waits 30 s for libvirt's state lock before it
    // fails; asking first turns that into an immediate, clear error.
    const job = await this.jobInfo(domain);
    if (job.type !== 'None') {
      throw new HypervisorError(
        'BACKUP_JOB_ACTIVE',
        `domain ${domain} already runs a ${job.operation ?? ''} job`,
        {
          details: { job: job.fields },
        },
      );
    }
    const jobDir = await mkdtemp(join(options.workDir, 'backup-'));
    // QEMU runs as another user and must create the socket and scratch files here.
    await chmod(jobDir, 0o777);
    const scratchDir = options.scratchDir ?? jobDir;
    const server: NbdServerSpec = options.tcp
      ? { transport: 'tcp', host: options.tcp.host, port: options.tcp.port }
      : { transport: 'unix', socket: join(jobDir, 'nbd.sock') };
    const scratchFiles: string[] = [];
    const disks: PullBackupDiskSpec[] = options.disks.map((d) => {
      if (!d.backup) return { ...d };
      const scratchFile = join(scratchDir, `${domainFileName(domain)}.${d.target}.scratch.qcow2`);
      scratchFiles.push(scratchFile);
      return { ...d, scratchFile };
    });
    const backupXml = buildPullBackupXml({ server, incremental: options.incremental, disks });
    const docs = [backupXml];
    if (options.checkpoint) {
      docs.push(
        buildCheckpointXml(options.checkpoint.name, options.checkpoint.disks, options.checkpoint.description),
      );
    }
    let started = false;
    try {
      await this.virsh.runWithXmlFiles(docs, ([b, c]) => ['backup-begin', domain, b!, ...(c ? [c] : [])]);
      started = true;
      const desc = await this.describe(domain);
      return {
        domain,
        server: desc.server ?? server,
        exports: desc.exports,
        checkpoint: options.checkpoint?.name,
        jobDir,
        scratchFiles,
      };
    } catch (err) {
      // A job that started but cannot be described is of no use to anyone: stop it, keep the error.
      if (started) await this.abort(domain).catch(() => {});
      for (const f of scratchFiles) await rm(f, { force: true });
      await rm(jobDir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Ends a pull backup (also the way to abort one): stops the job, waits until libvirt reports no
   * job, then removes scratch files and the job directory. A checkpoint created with the backup
   * stays — delete it explicitly if the backup's data was not kept. Safe to call twice.
   */
  async end(job: PullBackupJob, options: { timeoutMs?: number } = {}): Promise<void> {
    try {
      await this.abort(job.domain, options);
    } finally {
      for (const f of job.scratchFiles) await rm(f, { force: true });
      await rm(job.jobDir, { recursive: true, force: true });
    }
  }

  /**
   * `domjobabort`, then waits for the job to be gone. No error when there is no job, or when the
   * domain is not running or does not exist any more (its job died with it).
   */
  async abort(domain: string, options: { timeoutMs?: number } = {}): Promise<void> {
    try {
      await this.virsh.run(['domjobabort', domain]);
    } catch (err) {
      if (!(err instanceof HypervisorError && JOB_GONE.includes(err.code))) throw err;
    }
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      let active: boolean;
      try {
        active = await this.isJobActive(domain);
      } catch (err) {
        if (err instanceof HypervisorError && JOB_GONE.includes(err.code)) return;
        throw err;
      }
      if (!active) return;
      if (Date.now() > deadline) {
        throw new HypervisorError('VIRSH_TIMEOUT', `backup job of ${domain} still active after domjobabort`);
      }
      await sleep(200);
    }
  }
}

/** Domain names may hold characters unfit for file names; scratch files only need to be recognisable. */
function domainFileName(domain: string): string {
  return domain.replace(/[^A-Za-z0-9._-]/g, '_');
}
