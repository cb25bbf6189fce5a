import { registerTaskHandler } from '../task-handlers.js';
import { RESTORE_VM_TASK, SNAPSHOT_VM_TASK } from './payloads.js';
import { restoreVmHandler } from './restore-vm.js';
import { snapshotVmHandler } from './snapshot-vm.js';

/**
 * The datamover handlers of the controller's task kinds, added to the default registry on import
 * (`lifeboat serve` and `lifeboat datamover` import this through the CLI's command list).
 */
export function registerDomainTaskHandlers(): void {
  registerTaskHandler(SNAPSHOT_VM_TASK, snapshotVmHandler);
  registerTaskHandler(RESTORE_VM_TASK, restoreVmHandler);
}

registerDomainTaskHandlers();
