import type { Command } from 'commander';
// The datamover handlers of workload snapshots and restores (`serve`'s local datamover, `datamover`).
import '../../datamover/handlers/index.js';
import { registerAdminCommands } from './admin.js';
import { registerDatamoverCommand } from './datamover.js';
import { registerDemoVmCommands } from './demo-vm.js';
import { registerHostCommands } from './host.js';
import { registerImageConvertCommands } from './image-convert.js';
import { registerImageInspectCommands } from './image-inspect.js';
import { registerImportCommands } from './import.js';
import { registerJobCommands } from './job.js';
import { registerRestoreCommands } from './restore.js';
import { registerRestoreControllerCommands } from './restore-controller.js';
import { registerServeCommand } from './serve.js';
import { registerSnapshotCommands } from './snapshot.js';
import { registerTargetCommands } from './target.js';
import { registerVmBackupCommand } from './vm-backup.js';
import { registerVmRestoreCommand } from './vm-restore.js';
import { registerWorkloadCommands } from './workload.js';

/** One line per command group; each group lives in its own file beside this one. */
export function registerCommands(program: Command): void {
  const image = program.command('image').description('offline tools for disk images (qcow2, raw)');
  registerImageInspectCommands(image);
  registerImageConvertCommands(image);
  registerTargetCommands(program);
  registerAdminCommands(program);
  registerServeCommand(program);
  registerDatamoverCommand(program);
  registerHostCommands(program);
  registerJobCommands(program);
  registerDemoVmCommands(program);
  registerWorkloadCommands(program);
  registerSnapshotCommands(program);
  registerRestoreControllerCommands(registerRestoreCommands(program));
  registerImportCommands(program);
  // `vm` is shared (vm backup, vm restore): whoever registers first creates the group.
  const vm =
    program.commands.find((c) => c.name() === 'vm') ??
    program.command('vm').description('back up and restore libvirt domains on this host');
  registerVmBackupCommand(vm);
  registerVmRestoreCommand(vm);
}
