import { join } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { parseCatalogUrl } from '../../catalog/open.js';
import { startController } from '../../controller/server.js';
import { loadTaskHandlers } from '../../datamover/all-handlers.js';
import { stderrLog, untilSignal } from '../log.js';
import { lifeboatVersion } from '../version.js';
import { defaultCatalogUrl, lifeboatHome } from './admin.js';

export const DEFAULT_LISTEN = '127.0.0.1:7780';

export function defaultTargetLocation(): string {
  return process.env.LIFEBOAT_TARGET || join(lifeboatHome(), 'target');
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('not a positive whole number');
  return n;
}

/** Test and tuning knobs that have no business on the command line of operators. */
function envMs(name: string): number | undefined {
  const v = process.env[name];
  if (!v) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

interface ServeOptions {
  db?: string;
  target?: string;
  listen: string;
  localDatamover: boolean;
  hostName?: string;
  libvirtUri?: string;
  leaseSeconds?: number;
  logRequests?: boolean;
  quiet?: boolean;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'run the controller: REST API, catalog, job plumbing and (by default) a datamover for this host',
    )
    .option(
      '--db <url>',
      'catalog: SQLite path or postgres:// URL (default: $LIFEBOAT_DB or ~/.lifeboat/lifeboat.db)',
    )
    .option(
      '--target <location>',
      'default backup target: a directory or s3://bucket/prefix (default: ~/.lifeboat/target)',
    )
    .option('--listen <host:port>', 'address of the REST API', DEFAULT_LISTEN)
    .option('--no-local-datamover', 'do not run a datamover for this host inside the controller')
    .option('--host-name <name>', 'name of this host in the catalog (default: the hostname)')
    .option('--libvirt-uri <uri>', 'libvirt of the local datamover (default: qemu:///system)')
    .option(
      '--lease-seconds <n>',
      'task lease: a datamover silent this long loses its task (default 60)',
      positiveInt,
    )
    .option('--log-requests', 'log every HTTP request (JSON lines on stdout)')
    .option('--quiet', 'log only warnings and errors')
    .action(async (o: ServeOptions) => {
      const dbUrl = o.db ?? defaultCatalogUrl();
      const target = o.target ?? defaultTargetLocation();
      const log = stderrLog('lifeboat serve', { quiet: o.quiet });
      const controller = await startController({
        db: dbUrl,
        target,
        listen: o.listen,
        localDatamover: o.localDatamover,
        hostName: o.hostName,
        libvirtUri: o.libvirtUri,
        leaseMs: o.leaseSeconds ? o.leaseSeconds * 1000 : envMs('LIFEBOAT_TASK_LEASE_MS'),
        sweepIntervalMs: envMs('LIFEBOAT_SWEEP_INTERVAL_MS'),
        claimWaitMs: envMs('LIFEBOAT_CLAIM_WAIT_MS'),
        handlers: loadTaskHandlers(),
        version: lifeboatVersion(),
        logRequests: o.logRequests,
        log,
      });
      const location = parseCatalogUrl(dbUrl);
      const catalogText = location.dialect === 'sqlite' ? `SQLite ${location.target}` : 'PostgreSQL';
      process.stdout.write(
        [
          `Lifeboat ${lifeboatVersion()} is running at ${controller.url}`,
          `  catalog: ${catalogText}`,
          `  target:  ${controller.target.url} (${controller.target.name})`,
          `  local datamover: ${controller.localDatamover ? `host ${controller.localDatamover.name}` : 'off'}`,
          '',
        ].join('\n'),
      );
      if (controller.firstAdmin) {
        process.stdout.write(
          [
            `First start: created the admin user "${controller.firstAdmin.userName}" in the project "default". Its token is shown this once`,
            'and stored nowhere in clear (make more with `lifeboat admin token create --user admin`):',
            '',
            `  export LIFEBOAT_URL=${controller.url}`,
            `  export LIFEBOAT_TOKEN=${controller.firstAdmin.token}`,
            '',
            'Then try: npx lifeboat host list; npx lifeboat host vms HOST; npx lifeboat workload create NAME --vm HOST:VM',
            '',
          ].join('\n'),
        );
      } else {
        process.stdout.write(
          `Use your admin token: export LIFEBOAT_URL=${controller.url} LIFEBOAT_TOKEN=...\n`,
        );
      }
      const signal = await untilSignal();
      log('info', `${signal}: shutting down`);
      await controller.close();
      log('info', 'stopped');
    });
}
