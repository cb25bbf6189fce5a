import { join } from 'node:path';
import type { Command } from 'commander';
import {
  type BackupDomainResult,
  backupDomain,
  DEFAULT_SCRATCH_DIR,
  type DiskProgress,
} from '../../datamover/backup.js';
import { BackupError } from '../../datamover/backup-errors.js';
import { LibvirtHypervisor } from '../../hypervisor/libvirt.js';
import { TargetError } from '../../target/errors.js';
import { vmsPrefix } from '../../target/layout.js';
import { Target } from '../../target/target.js';
import { openBackendWithFlags, type S3Flags, withS3Flags } from '../target-options.js';
import { cancelOnInterrupt, collect } from './restore.js';
import { formatBytes } from './target.js';

/**
 * `lifeboat vm backup DOMAIN --to TARGET`: backs one libvirt domain of this host up into a workload
 * on a target, with no controller. Incremental (changed blocks since the previous snapshot's
 * checkpoint) whenever the workload has a previous snapshot; `--full` forces a full one.
 */
interface VmBackupFlags extends S3Flags {
  to: string;
  full?: boolean;
  workload?: string;
  excludeDisk?: string[];
  scratchDir: string;
  connect?: string;
  json?: boolean;
  quiet?: boolean;
}

function progressPrinter(quiet: boolean | undefined): ((p: DiskProgress) => void) | undefined {
  if (quiet) return undefined;
  const tty = process.stderr.isTTY;
  const last = new Map<string, number>();
  return (p) => {
    const pct = p.bytesTotal > 0 ? Math.floor((p.bytesDone * 100) / p.bytesTotal) : 100;
    const step = tty ? pct : pct - (pct % 10);
    if (last.get(p.disk) === step) return;
    last.set(p.disk, step);
    const line = `backup ${p.disk}: ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} (${pct}%)`;
    process.stderr.write(tty ? `\r${line}${pct === 100 ? '\n' : ''}` : `${line}\n`);
  };
}

async function openOrInitTarget(
  location: string,
  flags: S3Flags,
): Promise<{ target: Target; created: boolean }> {
  const backend = await openBackendWithFlags(location, flags, { create: true });
  try {
    try {
      return { target: await Target.open(backend), created: false };
    } catch (err) {
      if (!(err instanceof TargetError && err.code === 'TARGET_NOT_INITIALIZED')) throw err;
      return { target: await Target.init(backend), created: true };
    }
  } catch (err) {
    await backend.close();
    throw err;
  }
}

function printResult(r: BackupDomainResult, location: string): void {
  const out: string[] = [];
  const parent = r.parentSnapshotId ? `, parent ${r.parentSnapshotId}` : '';
  out.push(
    `snapshot ${r.snapshotId} (${r.type}${parent}) of domain ${r.vm.name} in workload ${r.workloadId}`,
  );
  if (!location.includes('://'))
    out.push(`  folder ${join(location, vmsPrefix(r.workloadId, r.snapshotId), r.vm.vmId)}`);
  for (const d of r.vm.disks) {
    out.push(
      `  ${d.target.padEnd(5)} ${d.mode.padEnd(11)} copied ${formatBytes(d.copiedBytes).padStart(10)}  stored ${formatBytes(d.storedBytes).padStart(10)}  (virtual ${formatBytes(d.virtualSize)}, allocated ${formatBytes(d.allocatedBytes)})${d.note ? `  ${d.note}` : ''}`,
    );
  }
  for (const s of r.vm.skipped) out.push(`  ${s.target.padEnd(5)} skipped: ${s.reason}`);
  const f = r.vm.freeze;
  out.push(
    r.vm.state === 'shutoff'
      ? '  consistency: domain shut off'
      : f && !f.skipped
        ? `  consistency: filesystems frozen (${f.frozenFilesystems})`
        : `  consistency: crash-consistent (freeze skipped: ${f?.skipped ? f.reason : 'not attempted'})`,
  );
  const total = r.vm.disks.reduce((n, d) => n + d.storedBytes, 0);
  out.push(`  stored ${formatBytes(total)} in total`);
  for (const w of r.vm.warnings) out.push(`warning: ${w.message}`);
  for (const p of r.problems) out.push(`warning: ${p}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export function registerVmBackupCommand(vm: Command): void {
  withS3Flags(
    vm
      .command('backup')
      .description(
        'back up a libvirt domain of this host into a workload on a target (incremental by default)',
      )
      .argument('<domain>', 'domain name or UUID')
      .requiredOption('--to <target>', 'target: a directory or s3://bucket/prefix (initialized when empty)')
      .option('--full', 'full backup even when an incremental is possible')
      .option('--workload <id>', 'workload id on the target (default vm-<domain UUID>, created on first use)')
      .option('--exclude-disk <target>', 'leave this disk out (vdb...; repeatable)', collect)
      .option(
        '--scratch-dir <dir>',
        'host directory for scratch files, NBD sockets and the crash journal',
        DEFAULT_SCRATCH_DIR,
      )
      .option('--connect <uri>', 'libvirt URI (default $LIBVIRT_DEFAULT_URI or qemu:///system)')
      .option('--json', 'print the result as JSON')
      .option('-q, --quiet', 'no progress on stderr'),
  ).action(async (domain: string, flags: VmBackupFlags) => {
    const hv = new LibvirtHypervisor({ uri: flags.connect ?? process.env.LIBVIRT_DEFAULT_URI });
    // Asked before the target is touched: an unknown domain must not initialize a target.
    if (!(await hv.domains.exists(domain))) {
      throw new BackupError('BACKUP_DOMAIN_NOT_FOUND', `no domain ${domain} on ${hv.uri}`);
    }
    const { target, created } = await openOrInitTarget(flags.to, flags);
    if (created && !flags.quiet) process.stderr.write(`initialized a new target at ${target.location}\n`);
    const cancel = cancelOnInterrupt();
    try {
      const r = await backupDomain({
        hypervisor: hv,
        domain,
        target,
        workloadId: flags.workload,
        full: flags.full,
        excludeDisks: flags.excludeDisk,
        scratchDir: flags.scratchDir,
        onProgress: progressPrinter(flags.quiet || flags.json),
        signal: cancel.signal,
      });
      if (flags.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      else printResult(r, flags.to);
    } finally {
      cancel.dispose();
      await target.backend.close();
    }
  });
}
