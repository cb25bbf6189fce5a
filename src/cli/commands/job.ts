import { setTimeout as sleep } from 'node:timers/promises';
import { type Command, InvalidArgumentError } from 'commander';
import { LifeboatError } from '../../errors.js';
import { LifeboatClient, withClientOptions } from '../client.js';
import { formatBytes, printJson, progressBar, table, wantsJson, write } from '../format.js';

interface JobOut {
  id: string;
  kind: string;
  status: string;
  progress_done: number;
  progress_total: number;
  resource_type: string | null;
  resource_id: string | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  messages: Array<{ at: string; level: string; text: string }>;
}

interface TaskOut {
  id: string;
  kind: string;
  status: string;
  host_id: string | null;
  attempts: number;
  max_attempts: number;
  progress_done: number;
  progress_total: number;
  error: string | null;
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

function showJob(job: JobOut & { tasks?: TaskOut[] }): string {
  const lines = [
    `job ${job.id} (${job.kind}): ${job.status}`,
    `  progress: ${progressBar(job.progress_done, job.progress_total)}`,
    `  created ${job.created_at}${job.started_at ? `, started ${job.started_at}` : ''}${job.finished_at ? `, finished ${job.finished_at}` : ''}`,
  ];
  if (job.resource_type) lines.push(`  on: ${job.resource_type} ${job.resource_id}`);
  if (job.error) lines.push(`  error: ${job.error}`);
  if (job.tasks?.length) {
    lines.push('  tasks:');
    for (const t of job.tasks) {
      lines.push(
        `    ${t.id} ${t.kind} ${t.status} attempt ${t.attempts}/${t.max_attempts} ${formatBytes(t.progress_done)}/${formatBytes(t.progress_total)}${t.error ? ` — ${t.error}` : ''}`,
      );
    }
  }
  if (job.messages.length) {
    lines.push('  messages:');
    for (const m of job.messages.slice(-20)) lines.push(`    ${m.at} ${m.level}: ${m.text}`);
  }
  return `${lines.join('\n')}\n`;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('a number of seconds');
  return n;
}

export function registerJobCommands(program: Command): void {
  const job = withClientOptions(
    program.command('job').description('jobs: what Lifeboat is doing and has done'),
  );

  job
    .command('list')
    .description('jobs, newest first')
    .option('--status <status>', 'only jobs in this state')
    .option('--kind <kind>', 'only jobs of this kind')
    .option('--limit <n>', 'at most this many', '50')
    .action(async (o: { status?: string; kind?: string; limit: string }, cmd: Command) => {
      const { items } = await LifeboatClient.fromCommand(cmd).get<{ items: JobOut[] }>('/v1/jobs', {
        status: o.status,
        kind: o.kind,
        limit: o.limit,
      });
      if (wantsJson(cmd)) return printJson(items);
      write(
        table(
          ['ID', 'KIND', 'STATUS', 'PROGRESS', 'CREATED', 'ERROR'],
          items.map((j) => [
            j.id,
            j.kind,
            j.status,
            j.progress_total > 0 ? `${Math.floor((100 * j.progress_done) / j.progress_total)}%` : '-',
            j.created_at,
            j.error ?? '',
          ]),
        ),
      );
    });

  job
    .command('show')
    .description('one job with its tasks, progress and messages')
    .argument('<id>', 'job id')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const j = await LifeboatClient.fromCommand(cmd).get<JobOut & { tasks: TaskOut[] }>(
        `/v1/jobs/${encodeURIComponent(id)}`,
      );
      if (wantsJson(cmd)) return printJson(j);
      write(showJob(j));
    });

  job
    .command('cancel')
    .description(
      'ask a job to stop (queued: cancelled now; running: its datamovers stop at their next report)',
    )
    .argument('<id>', 'job id')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const j = await LifeboatClient.fromCommand(cmd).post<JobOut>(
        `/v1/jobs/${encodeURIComponent(id)}/cancel`,
      );
      if (wantsJson(cmd)) return printJson(j);
      write(`job ${j.id}: ${j.status}\n`);
    });

  job
    .command('wait')
    .description('wait for a job to finish, showing its progress; exits non-zero unless it succeeded')
    .argument('<id>', 'job id')
    .option('--timeout <seconds>', 'give up after this long', seconds)
    .action(async (id: string, o: { timeout?: number }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const deadline = o.timeout ? Date.now() + o.timeout * 1000 : Number.POSITIVE_INFINITY;
      const tty = process.stderr.isTTY;
      for (;;) {
        const j = await client.get<JobOut & { tasks: TaskOut[] }>(`/v1/jobs/${encodeURIComponent(id)}`);
        if (tty)
          process.stderr.write(
            `\r${j.status.padEnd(10)} ${progressBar(j.progress_done, j.progress_total)}   `,
          );
        if (TERMINAL.has(j.status)) {
          if (tty) process.stderr.write('\n');
          if (wantsJson(cmd)) printJson(j);
          else write(showJob(j));
          if (j.status !== 'succeeded') {
            throw new LifeboatError(
              'JOB_NOT_SUCCEEDED',
              `job ${j.id} ${j.status}${j.error ? `: ${j.error}` : ''}`,
            );
          }
          return;
        }
        if (Date.now() > deadline)
          throw new LifeboatError('JOB_WAIT_TIMEOUT', `job ${id} is still ${j.status}`);
        await sleep(1000);
      }
    });
}
