/**
 * A backup the test kills: runs backupDomain and, once the disks are exported (libvirt job or
 * qemu-nbd running, checkpoint made, lease held, journal written), prints EXPORTS-READY and waits
 * forever for the SIGKILL. Usage: node --import tsx backup-child.ts '{"domain":..,"targetDir":..,"scratchDir":..}'
 */
import { backupDomain } from '../../src/datamover/backup.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt.js';
import { FsBackend } from '../../src/target/fs-backend.js';
import { Target } from '../../src/target/target.js';

const args = JSON.parse(process.argv[2] ?? '{}') as { domain: string; targetDir: string; scratchDir: string };
const target = await Target.open(await FsBackend.open(args.targetDir));
await backupDomain({
  hypervisor: new LibvirtHypervisor({ uri: process.env.LIBVIRT_DEFAULT_URI }),
  domain: args.domain,
  target,
  scratchDir: args.scratchDir,
  afterExportsReady: async () => {
    process.stdout.write('EXPORTS-READY\n');
    await new Promise(() => {});
  },
});
