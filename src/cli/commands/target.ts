import { type Command, InvalidArgumentError } from 'commander';
import type { TargetBackend } from '../../target/backend.js';
import { cleanupUnfinished } from '../../target/cleanup.js';
import { scanTarget, type TargetScan } from '../../target/scan.js';
import { Target } from '../../target/target.js';
import { type VerifyReport, verifyTarget } from '../../target/verify.js';
import { openBackendWithFlags, type S3Flags, withS3Flags } from '../target-options.js';

/**
 * `lifeboat target ...`: offline tools that work on a backup target with no controller at all.
 * TARGET is a directory or s3://bucket/prefix; S3 settings come from the flags or the AWS_* variables.
 */

async function withBackend<T>(
  location: string,
  flags: S3Flags,
  fn: (b: TargetBackend) => Promise<T>,
): Promise<T> {
  const backend = await openBackendWithFlags(location, flags);
  try {
    return await fn(backend);
  } finally {
    await backend.close();
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function printScan(scan: TargetScan): void {
  const out: string[] = [];
  const v = scan.target.formatVersion;
  out.push(`target ${scan.target.targetId} at ${scan.location} (format ${v.major}.${v.minor})`);
  if (scan.workloads.length === 0) out.push('  no workloads');
  for (const w of scan.workloads) {
    const labels = w.workload?.labels ?? {};
    const who = [
      labels['project.name'] && `project ${labels['project.name']}`,
      labels['owner.name'] && `owner ${labels['owner.name']}`,
    ]
      .filter(Boolean)
      .join(', ');
    out.push(
      `workload ${w.id} "${w.workload?.name ?? '?'}"${who ? ` (${who})` : ''}: ${w.snapshots.length} snapshot(s)`,
    );
    if (w.lease?.active)
      out.push(
        `  lease held by ${w.lease.owner.installationId} on ${w.lease.owner.host} until ${w.lease.expiresAt}`,
      );
    for (const s of w.snapshots) {
      const parent = s.parentSnapshotId ? ` parent ${s.parentSnapshotId}` : '';
      const chain = s.chainHealthy ? 'chain ok' : `CHAIN BROKEN: ${s.problems.join('; ')}`;
      out.push(
        `  ${s.id}  ${s.type.padEnd(11)} ${s.finishedAt}  ${formatBytes(s.sizes.storedBytes).padStart(10)}  ${s.status}${parent}  ${chain}`,
      );
      for (const vm of s.vms) {
        const disks = vm.disks.map((d) => `${d.name} ${d.mode} ${formatBytes(d.virtualSize)}`).join(', ');
        out.push(`      vm ${vm.id} ${vm.name}: ${disks}`);
      }
    }
    for (const u of w.unfinished) {
      out.push(
        `  unfinished ${u.id}: ${u.objects} object(s), ${formatBytes(u.bytes)}, last written ${u.lastModified}`,
      );
    }
    for (const p of w.problems) out.push(`  problem: ${p}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

function printVerify(r: VerifyReport): void {
  const out = [
    `verified ${r.snapshots} snapshot(s), ${r.checkedFiles} file(s), ${formatBytes(r.checkedBytes)} at ${r.location}`,
  ];
  for (const f of r.findings) out.push(`  ${f.kind}: ${f.message}`);
  out.push(r.findings.length === 0 ? 'no problems found' : `${r.findings.length} problem(s) found`);
  process.stdout.write(`${out.join('\n')}\n`);
}

function parseMinutes(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('not a number of minutes');
  return n;
}

export function registerTargetCommands(program: Command): void {
  const target = program
    .command('target')
    .description('offline tools for backup targets (a directory or s3://bucket/prefix)');

  withS3Flags(
    target.command('init').argument('<target>').description('make an empty location a Lifeboat target'),
  ).action(async (location: string, flags: S3Flags) => {
    await withBackend(location, flags, async (b) => {
      const t = await Target.init(b);
      process.stdout.write(`target ${t.root.targetId} at ${t.location}\n`);
    });
  });

  withS3Flags(
    target
      .command('scan')
      .argument('<target>')
      .description('list workloads, snapshots, VMs and disks on a target, with chain health')
      .option('--workload <id>', 'only this workload')
      .option('--json', 'machine-readable output'),
  ).action(async (location: string, flags: S3Flags & { workload?: string; json?: boolean }) => {
    const scan = await withBackend(location, flags, (b) => scanTarget(b, { workloadId: flags.workload }));
    if (flags.json) process.stdout.write(`${JSON.stringify(scan, null, 2)}\n`);
    else printScan(scan);
  });

  withS3Flags(
    target
      .command('verify')
      .argument('<target>')
      .description(
        're-read every image and metadata file and compare with the checksums; exits 1 on findings',
      )
      .option('--workload <id>', 'only this workload')
      .option('--json', 'machine-readable output'),
  ).action(async (location: string, flags: S3Flags & { workload?: string; json?: boolean }) => {
    const report = await withBackend(location, flags, (b) => verifyTarget(b, { workloadId: flags.workload }));
    if (flags.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else printVerify(report);
    if (report.findings.length > 0) process.exitCode = 1;
  });

  withS3Flags(
    target
      .command('cleanup')
      .argument('<target>')
      .description('remove unfinished snapshots (no snapshot.json) of writers that are gone')
      .option('--older-than <minutes>', 'only folders untouched this long', parseMinutes, 60)
      .option('--workload <id>', 'only this workload')
      .option('--dry-run', 'only say what would be removed')
      .option('--json', 'machine-readable output'),
  ).action(
    async (
      location: string,
      flags: S3Flags & { olderThan: number; workload?: string; dryRun?: boolean; json?: boolean },
    ) => {
      const report = await withBackend(location, flags, (b) =>
        cleanupUnfinished(b, {
          olderThanMs: flags.olderThan * 60_000,
          workloadId: flags.workload,
          dryRun: flags.dryRun,
        }),
      );
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const verb = flags.dryRun ? 'would remove' : 'removed';
      for (const r of report.removed) {
        process.stdout.write(
          `${verb} ${r.workloadId}/${r.snapshotId} (${r.objects} object(s), ${formatBytes(r.bytes)})\n`,
        );
      }
      for (const s of report.skipped)
        process.stdout.write(`kept ${s.workloadId}${s.snapshotId ? `/${s.snapshotId}` : ''}: ${s.reason}\n`);
      process.stdout.write(
        `${report.removed.length} unfinished snapshot(s) ${verb}, ${report.staleUploads} stale upload(s) removed\n`,
      );
    },
  );
}
