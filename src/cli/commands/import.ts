import type { Command } from 'commander';
import { LifeboatClient, withClientOptions } from '../client.js';
import { printJson, table, wantsJson, write } from '../format.js';
import { projectIdOf } from './workload.js';

/** `lifeboat import list|run`: disaster recovery, the workloads of a target into this catalog (admins). */

interface ImportableOut {
  id: string;
  name: string;
  owner: string | null;
  project: string | null;
  vms: Array<{ id: string; name: string }>;
  snapshot_count: number;
  last_snapshot_at: string | null;
  problems: string[];
}

export function registerImportCommands(program: Command): void {
  const imp = withClientOptions(
    program.command('import').description('disaster recovery: import workloads found on a target'),
  );

  imp
    .command('list')
    .description('workloads on the target that this catalog does not know')
    .option('--target <id>', 'target id (default: the only one)')
    .action(async (o: { target?: string }, cmd: Command) => {
      const r = await LifeboatClient.fromCommand(cmd).get<{ items: ImportableOut[] }>('/v1/import', {
        target_id: o.target,
      });
      if (wantsJson(cmd)) return printJson(r.items);
      write(
        table(
          ['ID', 'NAME', 'OWNER', 'PROJECT', 'VMS', 'SNAPSHOTS', 'LAST SNAPSHOT'],
          r.items.map((w) => [
            w.id,
            w.name,
            w.owner ?? '-',
            w.project ?? '-',
            w.vms.map((v) => v.name).join(','),
            String(w.snapshot_count),
            w.last_snapshot_at ?? '-',
          ]),
        ),
      );
      for (const w of r.items) for (const p of w.problems) write(`warning: ${w.name}: ${p}\n`);
    });

  imp
    .command('run [workload...]')
    .description('import the workloads named (ids), or all of them, into a project with an owner')
    .option('--project <project>', 'project name or id (default: your only project)')
    .option('--owner <user>', 'new owner (user name or id; default: you)')
    .option('--target <id>', 'target id (default: the only one)')
    .action(async (ids: string[], o: { project?: string; owner?: string; target?: string }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const r = await client.post<{
        items: Array<{ id: string; name: string; imported_snapshots: number; notes: string[] }>;
      }>('/v1/import', {
        target_id: o.target,
        workload_ids: ids.length ? ids : undefined,
        project_id: await projectIdOf(client, o.project),
        owner: o.owner,
      });
      if (wantsJson(cmd)) return printJson(r.items);
      for (const w of r.items) {
        write(`imported ${w.name} (${w.id}): ${w.imported_snapshots} snapshot(s)\n`);
        for (const n of w.notes) write(`  note: ${n}\n`);
      }
    });
}
