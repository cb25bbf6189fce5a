import { type Command, Option } from 'commander';
import { restoreDomain } from '../../datamover/restore-domain.js';
import { RestoreError } from '../../datamover/restore-errors.js';
import { restoreInPlace } from '../../datamover/restore-in-place.js';
import { parseNetworkMap, parseNicTarget } from '../../datamover/restore-plan.js';
import { findVm } from '../../datamover/restore-source.js';
import { LibvirtHypervisor } from '../../hypervisor/libvirt.js';
import { type S3Flags, withS3Flags } from '../target-options.js';
import { cancelOnInterrupt, collect, openBackupSelection, progressPrinter } from './restore.js';
import { formatBytes } from './target.js';

/**
 * `lifeboat vm restore BACKUP ...`: one VM of a snapshot on this host's libvirt, as a new domain
 * (`--name`) or written back over an existing shut-off domain (`--in-place`). Runs on the
 * hypervisor host itself, like the datamover; no controller needed.
 */
interface VmRestoreFlags extends S3Flags {
  workload?: string;
  snapshot?: string;
  vm?: string;
  name?: string;
  inPlace?: string;
  dir: string;
  format: 'qcow2' | 'raw';
  networkMap?: string[];
  defaultNetwork?: string;
  disk?: string[];
  start?: boolean;
  connect?: string;
  json?: boolean;
  quiet?: boolean;
}

export function registerVmRestoreCommand(vm: Command): void {
  withS3Flags(
    vm
      .command('restore')
      .description(
        'restore a VM from a snapshot: as a new domain (--name) or over a shut-off one (--in-place)',
      )
      .argument(
        '<backup>',
        'target (directory or s3://bucket/prefix), or a snapshot/VM folder on a directory target',
      )
      .option('--workload <id>', 'workload id on the target (default: the only one)')
      .option('--snapshot <id>', 'snapshot id or "latest" (default latest)')
      .option('--vm <name|id>', 'which VM of the snapshot (needed when it holds several)')
      .option('--name <domain>', 'name of the NEW domain')
      .option('--in-place <domain>', 'write the snapshot back over the disks of this SHUT-OFF domain')
      .option('--dir <dir>', 'directory for the new disk images', '/var/lib/libvirt/images')
      .addOption(
        new Option('--format <format>', 'new disk image format').choices(['qcow2', 'raw']).default('qcow2'),
      )
      .option(
        '--network-map <old=new>',
        'plug NICs of network/bridge OLD into NEW (network:N, bridge:B, user; repeatable)',
        collect,
      )
      .option('--default-network <new>', 'where NICs go whose network does not exist on this host')
      .option('--disk <target>', 'restore only this disk (vda...; repeatable)', collect)
      .option('--start', 'start the new domain')
      .option('--connect <uri>', 'libvirt URI (default $LIBVIRT_DEFAULT_URI or qemu:///system)')
      .option('--json', 'print the result as JSON')
      .option('-q, --quiet', 'no progress on stderr'),
  ).action(async (backup: string, flags: VmRestoreFlags) => {
    if (!flags.name === !flags.inPlace) {
      throw new RestoreError(
        'RESTORE_BAD_OPTION',
        'give either --name NEW (a new domain) or --in-place DOMAIN',
      );
    }
    if (flags.inPlace && (flags.start || flags.networkMap || flags.defaultNetwork)) {
      throw new RestoreError(
        'RESTORE_BAD_OPTION',
        '--start, --network-map and --default-network apply to a new domain only',
      );
    }
    const networkMap = parseNetworkMap(flags.networkMap ?? []);
    const defaultNetwork = flags.defaultNetwork ? parseNicTarget(flags.defaultNetwork) : undefined;
    const hv = new LibvirtHypervisor({ uri: flags.connect ?? process.env.LIBVIRT_DEFAULT_URI });
    const sel = await openBackupSelection(backup, flags);
    const cancel = cancelOnInterrupt();
    try {
      const vmMeta = await findVm(sel.target, sel.snapshot, sel.vm);
      const onProgress = progressPrinter(flags.quiet || flags.json);
      if (flags.inPlace) {
        const r = await restoreInPlace({
          backend: sel.backend,
          vm: vmMeta,
          hypervisor: hv,
          domain: flags.inPlace,
          disks: flags.disk,
          onProgress,
          signal: cancel.signal,
        });
        if (flags.json) return void process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        const out = [`restored snapshot ${sel.snapshot.id} of ${vmMeta.name} over domain ${r.domain}`];
        for (const d of r.disks) {
          out.push(
            `  ${d.targetDev}: ${d.path} (${formatBytes(d.dataBytes)} written, ${formatBytes(d.zeroedBytes)} zeroed)`,
          );
        }
        if (r.untouched.length > 0) out.push(`  left as they were: ${r.untouched.join(', ')}`);
        if (r.deletedCheckpoints.length > 0) {
          out.push(
            `  deleted ${r.deletedCheckpoints.length} checkpoint(s): the next backup of ${r.domain} is a full one`,
          );
        }
        process.stdout.write(`${out.join('\n')}\n`);
        return;
      }
      const r = await restoreDomain({
        backend: sel.backend,
        vm: vmMeta,
        hypervisor: hv,
        name: flags.name!,
        dir: flags.dir,
        format: flags.format,
        networkMap,
        defaultNetwork,
        disks: flags.disk,
        start: flags.start,
        onProgress,
        signal: cancel.signal,
      });
      if (flags.json)
        return void process.stdout.write(`${JSON.stringify({ ...r, xml: undefined }, null, 2)}\n`);
      const out = [
        `restored ${vmMeta.name} from snapshot ${sel.snapshot.id} as domain ${r.name} (${r.uuid})${r.started ? ', started' : ''}`,
      ];
      for (const d of r.disks)
        out.push(`  ${d.targetDev}: ${d.path} (${d.format}, ${formatBytes(d.dataBytes)} of data)`);
      for (const s of r.skipped) out.push(`  ${s.target}: ${s.reason}`);
      process.stdout.write(`${out.join('\n')}\n`);
    } finally {
      cancel.dispose();
      await sel.backend.close();
    }
  });
}
