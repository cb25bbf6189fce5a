import { existsSync, statSync } from 'node:fs';
import { type Command, Option } from 'commander';
import type { RestoreProgress } from '../../datamover/restore-domain.js';
import { RestoreError } from '../../datamover/restore-errors.js';
import { findSnapshot, locateBackupFolder, openTargetForRestore } from '../../datamover/restore-source.js';
import { restoreSnapshotToDirectory } from '../../datamover/restore-to-directory.js';
import type { TargetBackend } from '../../target/backend.js';
import type { SnapshotMeta } from '../../target/metadata/schemas.js';
import type { Target } from '../../target/target.js';
import { openBackendWithFlags, type S3Flags, withS3Flags } from '../target-options.js';
import { formatBytes } from './target.js';

/**
 * `lifeboat restore`: a command group. Today its own action is the offline disaster-recovery
 * restore (`--from-target`): a snapshot's VMs written to a directory from nothing but the target.
 * Controller restores (`restore create|list|show|plan`) become subcommands of the same group; the
 * group's options are positional (only before a subcommand name), so they never clash.
 */

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** The snapshot a BACKUP argument (plus --workload/--snapshot/--vm) names. */
export interface BackupSelection {
  backend: TargetBackend;
  target: Target;
  snapshot: SnapshotMeta;
  /** Set when the argument was a VM folder, or --vm was given. */
  vm?: string;
}

/**
 * Resolves BACKUP: a target (directory or s3://bucket/prefix) with --workload [--snapshot] [--vm],
 * or a workload/snapshot/VM folder on a filesystem target (as `vm backup` prints it). Without
 * --workload a target holding exactly one workload restores that one.
 */
export async function openBackupSelection(
  backup: string,
  flags: S3Flags & { workload?: string; snapshot?: string; vm?: string },
): Promise<BackupSelection> {
  let location = backup;
  let workloadId = flags.workload;
  let snapshotSel = flags.snapshot;
  let vm = flags.vm;
  if (!backup.includes('://') && existsSync(backup) && statSync(backup).isDirectory()) {
    const folder = await locateBackupFolder(backup);
    if (folder) {
      const clash = (what: string, given: string | undefined, found: string | undefined) => {
        if (given !== undefined && found !== undefined && given !== found) {
          throw new RestoreError(
            'RESTORE_BAD_OPTION',
            `${backup} is ${what} ${found}, but --${what} ${given} was given`,
          );
        }
      };
      clash('workload', workloadId, folder.workloadId);
      clash('snapshot', snapshotSel, folder.snapshotId);
      clash('vm', vm, folder.vmId);
      location = folder.root;
      workloadId = folder.workloadId;
      snapshotSel = folder.snapshotId ?? snapshotSel;
      vm = folder.vmId ?? vm;
    } else if (!existsSync(`${backup}/lifeboat-target.json`)) {
      throw new RestoreError(
        'RESTORE_NOT_A_BACKUP',
        `${backup} is not a backup: neither a Lifeboat target nor a workload, snapshot or VM folder on one`,
      );
    }
  } else if (!backup.includes('://') && !existsSync(backup)) {
    throw new RestoreError('RESTORE_NOT_A_BACKUP', `${backup}: no such directory`);
  }
  const backend = await openBackendWithFlags(location, flags);
  try {
    const target = await openTargetForRestore(backend);
    if (workloadId === undefined) {
      const ids = await target.listWorkloadIds();
      if (ids.length !== 1) {
        throw new RestoreError(
          'RESTORE_BAD_OPTION',
          `${target.location} holds ${ids.length} workloads (${ids.join(', ') || 'none'}); choose one with --workload`,
        );
      }
      workloadId = ids[0]!;
    }
    const snapshot = await findSnapshot(target, workloadId, snapshotSel ?? 'latest');
    return { backend, target, snapshot, vm };
  } catch (err) {
    await backend.close();
    throw err;
  }
}

/** Progress on stderr, rewritten in place on a terminal, every 10 % otherwise. */
export function progressPrinter(quiet: boolean | undefined) {
  if (quiet) return undefined;
  const tty = process.stderr.isTTY;
  let last = -1;
  return (p: RestoreProgress) => {
    const pct = p.bytesTotal > 0 ? Math.floor((p.bytesDone * 100) / p.bytesTotal) : 100;
    const step = tty ? pct : pct - (pct % 10);
    if (step === last) return;
    last = step;
    const line = `restore ${p.vmId}/${p.disk}: ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} (${pct}%)`;
    process.stderr.write(tty ? `\r${line}${pct === 100 ? '\n' : ''}` : `${line}\n`);
  };
}

/** SIGINT cancels the restore cleanly (partial output removed) instead of killing the process. */
export function cancelOnInterrupt(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', onSigint) };
}

interface FromTargetFlags extends S3Flags {
  fromTarget?: string;
  workload?: string;
  snapshot?: string;
  to?: string;
  format: 'raw' | 'qcow2';
  vm?: string[];
  json?: boolean;
  quiet?: boolean;
}

export function registerRestoreCommands(program: Command): Command {
  // commander stops at a subcommand name only when every ancestor parses positionally too. The
  // program has no options of its own (only --help), so this changes nothing for other commands.
  program.enablePositionalOptions();
  const restore = withS3Flags(
    program
      .command('restore')
      .description('restore from backups; --from-target: offline DR restore of a snapshot into a directory')
      .enablePositionalOptions()
      .option(
        '--from-target <target>',
        'the backup target: a directory or s3://bucket/prefix (no controller needed)',
      )
      .option('--workload <id>', 'workload id on the target (default: the only one)')
      .option('--snapshot <id>', 'snapshot id or "latest"', 'latest')
      .option('--to <dir>', 'output directory: one folder per VM with its disks and definitions')
      .addOption(
        new Option('--format <format>', 'disk image format').choices(['raw', 'qcow2']).default('raw'),
      )
      .option('--vm <id|name>', 'only this VM (repeatable); default every VM', collect)
      .option('--json', 'print the result as JSON')
      .option('-q, --quiet', 'no progress on stderr'),
  );
  restore.action(async (flags: FromTargetFlags, cmd: Command) => {
    if (!flags.fromTarget) {
      cmd.help({ error: true });
      return;
    }
    if (!flags.to) throw new RestoreError('RESTORE_BAD_OPTION', '--to DIR is required with --from-target');
    const sel = await openBackupSelection(flags.fromTarget, { ...flags, vm: undefined });
    const cancel = cancelOnInterrupt();
    try {
      const vms = flags.vm ?? (sel.vm ? [sel.vm] : undefined);
      const r = await restoreSnapshotToDirectory({
        target: sel.target,
        snapshot: sel.snapshot,
        dir: flags.to,
        format: flags.format,
        vms,
        onProgress: progressPrinter(flags.quiet || flags.json),
        signal: cancel.signal,
      });
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify(r, (k, v) => (k === 'savedXml' || k === 'restoredXml' ? undefined : v), 2)}\n`,
        );
        return;
      }
      const out = [`restored snapshot ${r.snapshotId} of workload ${r.workloadId} to ${r.dir}`];
      for (const vm of r.vms) {
        out.push(`  vm ${vm.name} (${vm.id}): ${vm.dir}`);
        for (const d of vm.disks)
          out.push(`    ${d.targetDev}: ${d.path} (${formatBytes(d.dataBytes)} of data)`);
        out.push(`    define with: virsh define ${vm.dir}/domain-restored.xml`);
      }
      process.stdout.write(`${out.join('\n')}\n`);
    } finally {
      cancel.dispose();
      await sel.backend.close();
    }
  });
  return restore;
}
