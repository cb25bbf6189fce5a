import type { Command } from 'commander';
import { isUuid } from '../../catalog/ids.js';
import { LifeboatError } from '../../errors.js';
import { LifeboatClient, withClientOptions } from '../client.js';
import { formatBytes, printJson, table, wantsJson, write } from '../format.js';

interface HostOut {
  id: string;
  name: string;
  address: string;
  status: string;
  version: string | null;
  capabilities: Record<string, unknown>;
  last_heartbeat_at: string | null;
}

interface VmOut {
  name: string;
  uuid: string;
  state: string;
  vcpus: number;
  memory_bytes: number;
  disks: Array<{ target: string; format: string | null; size_bytes: number | null; source: string | null }>;
  networks: string[];
  nics: Array<{ type: string; source: string | null }>;
}

interface NetworkOut {
  name: string;
  active: boolean;
  autostart: boolean;
  bridge: string | null;
  forward_mode: string | null;
}

interface StorageOut {
  pools: Array<{
    name: string;
    type: string | null;
    active: boolean;
    path: string | null;
    available_bytes: number | null;
  }>;
  directories: Array<{ path: string; total_bytes: number; available_bytes: number }>;
}

/** A host named by id or by name. */
async function resolveHost(client: LifeboatClient, idOrName: string): Promise<HostOut> {
  if (isUuid(idOrName)) return client.get<HostOut>(`/v1/hosts/${idOrName}`);
  const { items } = await client.get<{ items: HostOut[] }>('/v1/hosts');
  const host = items.find((h) => h.name === idOrName);
  if (!host) throw new LifeboatError('NOT_FOUND', `host ${idOrName} not found (see lifeboat host list)`);
  return host;
}

function ago(iso: string | null): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

export function registerHostCommands(program: Command): void {
  const host = withClientOptions(
    program.command('host').description('hypervisor hosts, their VMs, networks and storage'),
  );

  host
    .command('list')
    .description('hosts whose datamovers registered')
    .action(async (_o: unknown, cmd: Command) => {
      const { items } = await LifeboatClient.fromCommand(cmd).get<{ items: HostOut[] }>('/v1/hosts');
      if (wantsJson(cmd)) return printJson(items);
      if (items.length === 0)
        return write(
          'no hosts yet: start `lifeboat datamover` on a host (lifeboat serve runs one for its own)\n',
        );
      write(
        table(
          ['NAME', 'STATUS', 'ADDRESS', 'VERSION', 'LAST SEEN', 'ID'],
          items.map((h) => [h.name, h.status, h.address, h.version ?? '-', ago(h.last_heartbeat_at), h.id]),
        ),
      );
    });

  host
    .command('show')
    .description('one host')
    .argument('<host>', 'host name or id')
    .action(async (idOrName: string, _o: unknown, cmd: Command) => {
      const h = await resolveHost(LifeboatClient.fromCommand(cmd), idOrName);
      if (wantsJson(cmd)) return printJson(h);
      write(
        `${h.name} (${h.id})\n  status: ${h.status}, last seen ${ago(h.last_heartbeat_at)}\n  address: ${h.address}\n` +
          `  version: ${h.version ?? '-'}\n  libvirt: ${String(h.capabilities.libvirt_uri ?? '-')}\n` +
          `  task kinds: ${((h.capabilities.task_kinds as string[] | undefined) ?? []).join(', ') || '-'}\n`,
      );
    });

  host
    .command('vms')
    .description("the host's VMs (libvirt domains)")
    .argument('<host>', 'host name or id')
    .option('--refresh', 'ask the host now')
    .action(async (idOrName: string, o: { refresh?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const h = await resolveHost(client, idOrName);
      const { items } = await client.get<{ items: VmOut[] }>(`/v1/hosts/${h.id}/vms`, { refresh: o.refresh });
      if (wantsJson(cmd)) return printJson(items);
      if (items.length === 0) return write(`host ${h.name} has no VMs (try: lifeboat demo-vm create)\n`);
      write(
        table(
          ['NAME', 'STATE', 'VCPUS', 'MEMORY', 'DISKS', 'NETWORKS', 'UUID'],
          items.map((v) => [
            v.name,
            v.state,
            String(v.vcpus),
            formatBytes(v.memory_bytes),
            v.disks.map((d) => `${d.target}:${formatBytes(d.size_bytes)}`).join(' ') || '-',
            v.nics.map((n) => (n.source ? `${n.type}:${n.source}` : n.type)).join(' ') || '-',
            v.uuid,
          ]),
        ),
      );
    });

  host
    .command('networks')
    .description("the host's libvirt networks")
    .argument('<host>', 'host name or id')
    .option('--refresh', 'ask the host now')
    .action(async (idOrName: string, o: { refresh?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const h = await resolveHost(client, idOrName);
      const { items } = await client.get<{ items: NetworkOut[] }>(`/v1/hosts/${h.id}/networks`, {
        refresh: o.refresh,
      });
      if (wantsJson(cmd)) return printJson(items);
      write(
        table(
          ['NAME', 'ACTIVE', 'AUTOSTART', 'FORWARD', 'BRIDGE'],
          items.map((n) => [
            n.name,
            n.active ? 'yes' : 'no',
            n.autostart ? 'yes' : 'no',
            n.forward_mode ?? '-',
            n.bridge ?? '-',
          ]),
        ),
      );
    });

  host
    .command('storage')
    .description("the host's storage pools and directories, with free space")
    .argument('<host>', 'host name or id')
    .option('--refresh', 'ask the host now')
    .action(async (idOrName: string, o: { refresh?: boolean }, cmd: Command) => {
      const client = LifeboatClient.fromCommand(cmd);
      const h = await resolveHost(client, idOrName);
      const s = await client.get<StorageOut>(`/v1/hosts/${h.id}/storage`, { refresh: o.refresh });
      if (wantsJson(cmd)) return printJson(s);
      const rows = [
        ...s.pools.map((p) => [
          `pool ${p.name}`,
          p.type ?? '-',
          p.active ? 'active' : 'inactive',
          formatBytes(p.available_bytes),
          p.path ?? '-',
        ]),
        ...s.directories.map((d) => ['directory', 'dir', '-', formatBytes(d.available_bytes), d.path]),
      ];
      write(table(['KIND', 'TYPE', 'STATE', 'FREE', 'PATH'], rows));
    });
}
