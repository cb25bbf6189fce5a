import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { LifeboatError } from '../../errors.js';
import { LifeboatClient, withClientOptions } from '../client.js';
import { formatBytes, printJson, progressBar, table, wantsJson, write } from '../format.js';
import { workloadIdOf } from './workload.js';

/** `lifeboat snapshot create|list|show|delete|cancel`. */

interface DiskOut {
  target_dev: string;
  type: string;
  virtual_size: number;
  stored_bytes: number;
  status: string;
  warnings: string[];
}
interface SnapshotOut {
  id: string;
  workload_id: string;
  job_id: string | null;
  type: string;
  parent_id: string | null;
  status: string;
  size_bytes: number;
  stored_bytes: number;
  progress_done: number;
  progress_total: number;
  warnings: string[];
  error: string | null;
  created_at: string;
  finished_at: string | null;
  vms?: Array<{ name: string; domain_uuid: string; disks: DiskOut[] }>;
}
interface JobOut {
  id: string;
  status: string;
  error: string | null;
}

function show(s: SnapshotOut): string {
  const lines = [
    `snapshot ${s.id}: ${s.type}, ${s.status}`,
    `  workload ${s.workload_id}${s.parent_id ? `, on ${s.parent_id}` : ''}`,
    `  created ${s.created_at}${s.finished_at ? `, finished ${s.finished_at}` : ''}`,
    `  size ${formatBytes(s.size_bytes)}, stored ${formatBytes(s.stored_bytes)}`,
  ];
  if (s.status === 'creating') lines.push(`  progress: ${progressBar(s.progress_done, s.progress_total)}`);
  if (s.error) lines.push(`  error: ${s.error}`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  for (const vm of s.vms ?? []) {
    lines.push(`  VM ${vm.name} (${vm.domain_uuid})`);
    for (const d of vm.disks) {
      lines.push(
        `    ${d.target_dev}  ${d.type}  ${formatBytes(d.virtual_size)}  stored ${formatBytes(d.stored_bytes)}  ${d.status}`,
      );
      for (const w of d.warnings) lines.push(`      warning: ${w}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Follows a snapshot with a live progress bar on stderr until it ends; non-zero exit unless available. */
async function waitForSnapshot(client: LifeboatClient, id: string, quiet: boolean): Promise<SnapshotOut> {
  const tty = process.stderr.isTTY;
  let last = '';
  for (;;) {
    const s = await client.get<SnapshotOut>(`/v1/snapshots/${id}`);
    if (!quiet) {
      const line = `snapshot ${id.slice(0, 8)} ${s.status} ${progressBar(s.progress_done, s.progress_total)}`;
      if (tty) process.stderr.write(`\r${line}\x1b[K`);
      else if (line !== last) process.stderr.write(`${line}\n`);
      last = line;
    }
    if (s.status !== 'creating') {
      if (!quiet && tty) process.stderr.write('\n');
      return s;
    }
    await sleep(500);
  }
}

export function registerSnapshotCommands(program: Command): void {
  const snapshot = withClientOptions(program.command('snapshot').description('snapshots of workloads'));

  snapshot
    .command('create <workload>')
    .description('snapshot every VM of a workload (incremental once a full exists)')
    .option('--full', 'a full snapshot even if an incremental is possible')
    .option('--name <name>', 'a label for the snapshot')
    .option('--wait', 'follow it with a live progress bar until it ends')
    .action(async (which: string, o: { full?: boolean; name?: string; wait?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const id = await workloadIdOf(client, which);
      const r = await client.post<{ snapshot: SnapshotOut; job: JobOut }>(`/v1/workloads/${id}/snapshots`, {
        full: o.full,
        name: o.name,
      });
      if (!o.wait) {
        if (wantsJson(cmd)) return printJson(r);
        return write(`snapshot ${r.snapshot.id} (${r.snapshot.type}) started: job ${r.job.id}\n`);
      }
      const s = await waitForSnapshot(client, r.snapshot.id, wantsJson(cmd));
      if (wantsJson(cmd)) printJson(s);
      else write(show(s));
      if (s.status !== 'available')
        throw new LifeboatError('SNAPSHOT_FAILED', `snapshot ${s.id} ${s.status}: ${s.error ?? ''}`);
    });

  snapshot
    .command('list [workload]')
    .description('snapshots of a workload (id or name), oldest first; all visible ones without it')
    .action(async (which: string | undefined, _o: unknown, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const workload = which ? await workloadIdOf(client, which) : undefined;
      const { items } = await client.get<{ items: SnapshotOut[] }>('/v1/snapshots', {
        workload_id: workload,
      });
      if (wantsJson(cmd)) return printJson(items);
      write(
        table(
          ['ID', 'TYPE', 'STATUS', 'CREATED', 'SIZE', 'STORED'],
          items.map((s) => [
            s.id,
            s.type,
            s.status,
            s.created_at,
            formatBytes(s.size_bytes),
            formatBytes(s.stored_bytes),
          ]),
        ),
      );
    });

  snapshot
    .command('show <snapshot>')
    .description('one snapshot, per VM and per disk')
    .option('--wait', 'follow it until it ends')
    .action(async (id: string, o: { wait?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      if (o.wait) await waitForSnapshot(client, id, wantsJson(cmd));
      const s = await client.get<SnapshotOut>(`/v1/snapshots/${id}`);
      if (wantsJson(cmd)) printJson(s);
      else write(show(s));
    });

  snapshot
    .command('delete <snapshot>')
    .description('delete a snapshot (data later snapshots need is merged into them, or kept)')
    .option('--wait', 'wait until the delete has finished')
    .action(async (id: string, o: { wait?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const { job } = await client.delete<{ job: JobOut }>(`/v1/snapshots/${id}`);
      let end = job;
      while (o.wait && !['succeeded', 'failed', 'cancelled'].includes(end.status)) {
        await sleep(500);
        end = await client.get<JobOut>(`/v1/jobs/${job.id}`);
      }
      if (wantsJson(cmd)) printJson(end);
      else
        write(`delete of snapshot ${id}: job ${job.id} ${end.status}${end.error ? `: ${end.error}` : ''}\n`);
      if (end.status === 'failed') throw new LifeboatError('SNAPSHOT_DELETE_FAILED', end.error ?? 'failed');
    });

  snapshot
    .command('cancel <snapshot>')
    .description('stop a snapshot being made (it ends failed, nothing stays on the target)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const job = await LifeboatClient.fromCommand(cmd).post<JobOut>(`/v1/snapshots/${id}/cancel`);
      if (wantsJson(cmd)) printJson(job);
      else write(`snapshot ${id}: job ${job.id} ${job.status}\n`);
    });
}
