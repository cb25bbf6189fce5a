import type { Command } from 'commander';
import { LifeboatError } from '../../errors.js';
import { LifeboatClient, withClientOptions } from '../client.js';
import { printJson, table, wantsJson, write } from '../format.js';

/**
 * `lifeboat workload create|list|show|modify|delete`: groups of VMs backed up together. VMs are
 * named `HOST:VM` (host name or id, VM name or libvirt UUID); `HOST:VM:vdb,vdc` also excludes disks.
 */

interface WorkloadVmOut {
  id: string;
  host_id: string;
  /** Absent from older controllers: the id is shown then. */
  host_name?: string | null;
  domain_uuid: string;
  name: string;
  excluded_disks: string[];
}
export interface WorkloadOut {
  id: string;
  project_id: string;
  owner_user_id: string | null;
  name: string;
  description: string;
  target_id: string | null;
  locked_by_job_id: string | null;
  created_at: string;
  project_name?: string | null;
  owner_name?: string | null;
  target_name?: string | null;
  vms?: WorkloadVmOut[];
}
interface HostOut {
  id: string;
  name: string;
}
interface ProjectOut {
  id: string;
  name: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const collect = (v: string, prev: string[] = []) => [...prev, v];

async function hostIdOf(client: LifeboatClient, host: string): Promise<string> {
  if (UUID.test(host)) return host;
  const { items } = await client.get<{ items: HostOut[] }>('/v1/hosts');
  const hit = items.find((h) => h.name === host);
  if (!hit) throw new LifeboatError('NOT_FOUND', `no host named ${host} (lifeboat host list)`);
  return hit.id;
}

export async function projectIdOf(client: LifeboatClient, project: string | undefined): Promise<string> {
  const { items } = await client.get<{ items: ProjectOut[] }>('/v1/projects');
  if (!project) {
    if (items.length === 1) return items[0].id;
    if (items.length === 0) {
      throw new LifeboatError(
        'VALIDATION',
        'no project exists yet: create one with `lifeboat admin project create NAME`',
      );
    }
    throw new LifeboatError(
      'VALIDATION',
      `name the project with --project (${items.map((p) => p.name).join(', ')})`,
    );
  }
  const hit = items.find((p) => p.id === project || p.name === project);
  if (!hit) throw new LifeboatError('NOT_FOUND', `project ${project} not found`);
  return hit.id;
}

/** `HOST:VM[:disk,disk]` → the API's VM reference. */
async function vmRef(client: LifeboatClient, spec: string) {
  const [host, vm, excluded] = spec.split(':');
  if (!host || !vm)
    throw new LifeboatError('VALIDATION', `--vm ${spec}: expected HOST:VM or HOST:VM:vdb,vdc`);
  return {
    host_id: await hostIdOf(client, host),
    ...(UUID.test(vm) ? { uuid: vm } : { name: vm }),
    ...(excluded ? { excluded_disks: excluded.split(',').filter(Boolean) } : {}),
  };
}

/** A workload id, or a name the caller can see. */
export async function workloadIdOf(client: LifeboatClient, which: string): Promise<string> {
  if (UUID.test(which)) return which;
  const { items } = await client.get<{ items: WorkloadOut[] }>('/v1/workloads', { limit: 1000 });
  const hits = items.filter((w) => w.name === which);
  if (hits.length !== 1) {
    throw new LifeboatError(
      'NOT_FOUND',
      hits.length ? `several workloads are named ${which}: use the id` : `workload ${which} not found`,
    );
  }
  return hits[0].id;
}

function show(w: WorkloadOut): string {
  const lines = [
    `workload ${w.name} (${w.id})`,
    `  project: ${w.project_name ?? w.project_id}   owner: ${w.owner_name ?? w.owner_user_id ?? '-'}   target: ${w.target_name ?? w.target_id ?? '-'}`,
  ];
  if (w.description) lines.push(`  ${w.description}`);
  if (w.locked_by_job_id) lines.push(`  busy with job ${w.locked_by_job_id}`);
  lines.push(`  VMs (${w.vms?.length ?? 0}):`);
  for (const v of w.vms ?? []) {
    lines.push(
      `    ${v.name}  ${v.domain_uuid}  host ${v.host_name ?? v.host_id}${v.excluded_disks.length ? `  excluded: ${v.excluded_disks.join(',')}` : ''}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export function registerWorkloadCommands(program: Command): void {
  const workload = withClientOptions(
    program.command('workload').description('workloads: groups of VMs backed up together'),
  );

  workload
    .command('create <name>')
    .description('create a workload of VMs (--vm HOST:VM, repeatable)')
    .option('--project <project>', 'project name or id (default: your only project)')
    .option('--vm <HOST:VM[:excluded,disks]>', 'a VM by host and name or UUID (repeatable)', collect)
    .option('--description <text>')
    .option('--target <id>', 'backup target id (default: the only one the project may use)')
    .action(
      async (
        name: string,
        o: { project?: string; vm?: string[]; description?: string; target?: string },
        cmd: Command,
      ) => {
        const client = LifeboatClient.fromCommand(cmd);
        const vms = [];
        for (const spec of o.vm ?? []) vms.push(await vmRef(client, spec));
        const w = await client.post<WorkloadOut>('/v1/workloads', {
          project_id: await projectIdOf(client, o.project),
          name,
          description: o.description,
          target_id: o.target,
          vms,
        });
        if (wantsJson(cmd)) printJson(w);
        else write(show(w));
      },
    );

  workload
    .command('list')
    .description('workloads you can see')
    .option('--project <project>', 'only this project (name or id)')
    .action(async (o: { project?: string }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const project = o.project ? await projectIdOf(client, o.project) : undefined;
      const { items } = await client.get<{ items: WorkloadOut[] }>('/v1/workloads', {
        project_id: project,
        limit: 1000,
      });
      if (wantsJson(cmd)) return printJson(items);
      write(
        table(
          ['ID', 'NAME', 'PROJECT', 'BUSY'],
          items.map((w) => [w.id, w.name, w.project_id, w.locked_by_job_id ? 'yes' : '']),
        ),
      );
    });

  workload
    .command('show <workload>')
    .description('one workload (id or name) with its VMs')
    .action(async (which: string, _o: unknown, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const w = await client.get<WorkloadOut>(`/v1/workloads/${await workloadIdOf(client, which)}`);
      if (wantsJson(cmd)) printJson(w);
      else write(show(w));
    });

  workload
    .command('modify <workload>')
    .description('rename, add/remove VMs, exclude disks; admins: --project/--owner move it')
    .option('--name <name>')
    .option('--description <text>')
    .option('--add-vm <HOST:VM[:excluded,disks]>', 'add a VM (repeatable)', collect)
    .option('--remove-vm <vm>', 'remove a VM by name, UUID or id (repeatable)', collect)
    .option(
      '--exclude <VM:disk,disk>',
      'the disks of a VM not to back up ("VM:" for none; repeatable)',
      collect,
    )
    .option('--project <project>', 'move to this project (admins)')
    .option('--owner <user>', 'new owner, user name or id (admins)')
    .action(
      async (
        which: string,
        o: {
          name?: string;
          description?: string;
          addVm?: string[];
          removeVm?: string[];
          exclude?: string[];
          project?: string;
          owner?: string;
        },
        cmd: Command,
      ) => {
        const client = LifeboatClient.fromCommand(cmd);
        const id = await workloadIdOf(client, which);
        const addVms = [];
        for (const spec of o.addVm ?? []) addVms.push(await vmRef(client, spec));
        const w = await client.request<WorkloadOut>('PATCH', `/v1/workloads/${id}`, {
          name: o.name,
          description: o.description,
          add_vms: addVms.length ? addVms : undefined,
          remove_vms: o.removeVm,
          exclude_disks: o.exclude?.map((e) => {
            const [vm, disks = ''] = e.split(':');
            return { vm, disks: disks.split(',').filter(Boolean) };
          }),
          project_id: o.project ? await projectIdOf(client, o.project) : undefined,
          owner: o.owner,
        });
        if (wantsJson(cmd)) printJson(w);
        else write(show(w));
      },
    );

  workload
    .command('delete <workload>')
    .description('delete a workload; --with-data also deletes its backups on the target')
    .option('--with-data', 'delete its snapshots on the target too (otherwise they stay, importable)')
    .action(async (which: string, o: { withData?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const id = await workloadIdOf(client, which);
      await client.request('DELETE', `/v1/workloads/${id}?delete_data=${o.withData ? 'true' : 'false'}`);
      if (wantsJson(cmd)) printJson({ deleted: id, data_deleted: o.withData === true });
      else
        write(
          `deleted workload ${id}${o.withData ? ' and its backups' : ' (its backups stay on the target)'}\n`,
        );
    });
}
