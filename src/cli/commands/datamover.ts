import { hostname } from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import { loadTaskHandlers } from '../../datamover/all-handlers.js';
import { DatamoverService } from '../../datamover/service.js';
import { LifeboatError } from '../../errors.js';
import { stderrLog, untilSignal } from '../log.js';
import { lifeboatVersion } from '../version.js';

interface DatamoverCliOptions {
  controller?: string;
  token?: string;
  name?: string;
  address?: string;
  libvirtUri?: string;
  concurrency: number;
  quiet?: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0 || n > 64) throw new InvalidArgumentError('a whole number from 1 to 64');
  return n;
}

export function registerDatamoverCommand(program: Command): void {
  program
    .command('datamover')
    .description(
      "run this host's datamover: pull tasks from the controller and run them against the local libvirt",
    )
    .option('--controller <url>', 'controller URL (default: $LIFEBOAT_URL)')
    .option(
      '--token <token>',
      'token of the datamover user or an admin (default: $LIFEBOAT_DATAMOVER_TOKEN, $LIFEBOAT_TOKEN)',
    )
    .option('--name <host>', 'name of this host in the catalog (default: the hostname)')
    .option('--address <address>', 'how people reach this host (default: the hostname)')
    .option('--libvirt-uri <uri>', 'libvirt connection (default: qemu:///system)')
    .option('--concurrency <n>', 'tasks run at the same time', positiveInt, 2)
    .option('--quiet', 'log only warnings and errors')
    .action(async (o: DatamoverCliOptions) => {
      const controllerUrl = o.controller || process.env.LIFEBOAT_URL;
      const token = o.token || process.env.LIFEBOAT_DATAMOVER_TOKEN || process.env.LIFEBOAT_TOKEN;
      if (!controllerUrl)
        throw new LifeboatError('DATAMOVER_NO_CONTROLLER', 'no controller: pass --controller URL');
      if (!token)
        throw new LifeboatError(
          'DATAMOVER_NO_TOKEN',
          'no token: pass --token (a token of the datamover user)',
        );
      const log = stderrLog('lifeboat datamover', { quiet: o.quiet });
      const service = new DatamoverService({
        controllerUrl,
        token,
        name: o.name ?? hostname(),
        address: o.address,
        libvirtUri: o.libvirtUri,
        concurrency: o.concurrency,
        version: lifeboatVersion(),
        handlers: loadTaskHandlers(),
        log,
      }).start();
      log('info', `datamover ${service.name} (${service.owner}) pulling from ${controllerUrl}`);
      const stopped = untilSignal().then(async (signal) => {
        log('info', `${signal}: stopping (running tasks are abandoned and reported failed)`);
        await service.stop();
      });
      // Ends on a signal, or on a fatal error of the pull loop (a refused token...).
      await Promise.race([stopped, service.done()]);
      await service.stop();
    });
}
