import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Command, Option } from 'commander';
import { LifeboatError } from '../../errors.js';
import { LifeboatClient, withClientOptions } from '../client.js';
import { printJson, progressBar, table, wantsJson, write } from '../format.js';

/**
 * `lifeboat restore create|list|show|plan`: restores through the controller. These are
 * subcommands of the `restore` group, whose own action is the offline `--from-target` restore.
 */

interface RestoreOut {
  id: string;
  snapshot_id: string;
  job_id: string | null;
  kind: string;
  status: string;
  progress_done: number;
  progress_total: number;
  error: string | null;
  created_at: string;
  finished_at: string | null;
  plan: Record<string, unknown>;
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

function show(r: RestoreOut): string {
  const lines = [
    `restore ${r.id} (${r.kind}) of snapshot ${r.snapshot_id}: ${r.status}`,
    `  progress: ${progressBar(r.progress_done, r.progress_total)}`,
    `  created ${r.created_at}${r.finished_at ? `, finished ${r.finished_at}` : ''}${r.job_id ? `, job ${r.job_id}` : ''}`,
  ];
  if (r.error) lines.push(`  error: ${r.error}`);
  return `${lines.join('\n')}\n`;
}

export function registerRestoreControllerCommands(restore: Command): void {
  withClientOptions(
    restore
      .command('create <snapshot>')
      .description(
        'restore a snapshot: everything as it was (default), with a plan (--plan FILE), or --in-place',
      )
      .option('--plan <file>', 'a restore plan (JSON, as `restore plan` prints it): a selective restore')
      .option('--in-place', 'write the data back over the existing VMs (they are shut off first)')
      .option('--wait', 'follow it with a progress bar until it ends'),
  ).action(
    async (snapshot: string, o: { plan?: string; inPlace?: boolean; wait?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      let plan: unknown;
      if (o.plan) {
        try {
          plan = JSON.parse(await readFile(o.plan, 'utf8'));
        } catch (err) {
          throw new LifeboatError('VALIDATION', `--plan ${o.plan}: ${(err as Error).message}`);
        }
      }
      const kind = o.inPlace ? 'in_place' : plan ? 'selective' : 'one_click';
      const r = await client.post<{ restore: RestoreOut }>('/v1/restores', {
        snapshot_id: snapshot,
        kind,
        plan,
      });
      let out = r.restore;
      while (o.wait && !TERMINAL.has(out.status)) {
        await sleep(500);
        out = await client.get<RestoreOut>(`/v1/restores/${out.id}`);
        if (!wantsJson(cmd))
          process.stderr.write(
            `restore ${out.id.slice(0, 8)} ${out.status} ${progressBar(out.progress_done, out.progress_total)}\n`,
          );
      }
      if (wantsJson(cmd)) printJson(out);
      else write(show(out));
      if (out.status === 'failed') throw new LifeboatError('RESTORE_FAILED', out.error ?? 'failed');
    },
  );

  withClientOptions(
    restore.command('list').description('restores, newest first').option('--snapshot <id>'),
  ).action(async (o: { snapshot?: string }, cmd: Command) => {
    const { items } = await LifeboatClient.fromCommand(cmd).get<{ items: RestoreOut[] }>('/v1/restores', {
      snapshot_id: o.snapshot,
    });
    if (wantsJson(cmd)) return printJson(items);
    write(
      table(
        ['ID', 'KIND', 'STATUS', 'SNAPSHOT', 'CREATED'],
        items.map((r) => [r.id, r.kind, r.status, r.snapshot_id, r.created_at]),
      ),
    );
  });

  withClientOptions(
    restore.command('show <restore>').description('one restore, with its plan in --json'),
  ).action(async (id: string, _o: unknown, cmd: Command) => {
    const r = await LifeboatClient.fromCommand(cmd).get<RestoreOut>(`/v1/restores/${id}`);
    if (wantsJson(cmd)) printJson(r);
    else write(show(r));
  });

  withClientOptions(
    restore
      .command('plan <snapshot>')
      .description('print a complete restore plan (JSON) to edit and give to `restore create --plan`')
      .addOption(new Option('--kind <kind>').choices(['selective', 'in_place']).default('selective')),
  ).action(async (snapshot: string, o: { kind: string }, cmd: Command) => {
    const plan = await LifeboatClient.fromCommand(cmd).get<unknown>(
      `/v1/snapshots/${snapshot}/restore-plan`,
      { kind: o.kind },
    );
    printJson(plan);
  });
}
