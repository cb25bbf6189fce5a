import type { Command } from 'commander';
import { createDemoVm, DEMO_VM_NAME, deleteDemoVm } from '../../cloud/libvirt/demo-vm.js';
import { LibvirtHypervisor } from '../../hypervisor/libvirt.js';
import { DEFAULT_LIBVIRT_URI } from '../../hypervisor/virsh.js';
import { formatBytes, printJson, write } from '../format.js';

interface DemoOptions {
  name: string;
  dir?: string;
  start: boolean;
  libvirtUri?: string;
  ifMissing?: boolean;
  json?: boolean;
}

export function registerDemoVmCommands(program: Command): void {
  const demo = program
    .command('demo-vm')
    .description('a tiny demo VM (TCG, no OS, two small disks with data) to try Lifeboat on');

  demo
    .command('create')
    .description('create and start the demo VM on the local libvirt')
    .option('--name <name>', 'domain name', DEMO_VM_NAME)
    .option('--dir <dir>', 'directory for its disks (default /var/lib/libvirt/images/<name>)')
    .option('--no-start', 'define it without starting it')
    .option('--libvirt-uri <uri>', 'libvirt connection', DEFAULT_LIBVIRT_URI)
    .option('--if-missing', 'do nothing when a domain of that name exists')
    .option('--json', 'print JSON')
    .action(async (o: DemoOptions) => {
      const hv = new LibvirtHypervisor({ uri: o.libvirtUri });
      if (o.ifMissing && (await hv.domains.exists(o.name))) {
        if (o.json) return printJson({ name: o.name, created: false });
        return write(`demo VM ${o.name} exists already\n`);
      }
      const vm = await createDemoVm(hv, { name: o.name, dir: o.dir, start: o.start });
      if (o.json) return printJson({ ...vm, created: true });
      write(
        `created demo VM ${vm.name} (${vm.uuid})${o.start ? ', running' : ''}\n` +
          vm.disks.map((d) => `  ${d.target}: ${d.format} ${formatBytes(d.sizeBytes)} ${d.path}\n`).join(''),
      );
    });

  demo
    .command('delete')
    .description('destroy and undefine the demo VM and delete its disks')
    .option('--name <name>', 'domain name', DEMO_VM_NAME)
    .option('--dir <dir>', 'directory of its disks (default /var/lib/libvirt/images/<name>)')
    .option('--libvirt-uri <uri>', 'libvirt connection', DEFAULT_LIBVIRT_URI)
    .action(async (o: DemoOptions) => {
      await deleteDemoVm(new LibvirtHypervisor({ uri: o.libvirtUri }), o.name, o.dir);
      write(`deleted demo VM ${o.name}\n`);
    });
}
