import { LifeboatError } from '../errors.js';

/** Stable codes of the cloud drivers (control-plane views of hypervisor hosts). */
export type CloudErrorCode =
  | 'CLOUD_HOST_OFFLINE' // the host's datamover has not been heard from: nothing can run there now
  | 'CLOUD_INVENTORY_FAILED' // the host could not list its VMs/networks/storage (message says why)
  | 'CLOUD_INVENTORY_TIMEOUT' // the host's datamover did not answer in time
  | 'CLOUD_DEMO_VM_FAILED'; // the demo VM could not be created

export class CloudError extends LifeboatError {
  declare readonly code: CloudErrorCode;
  constructor(
    code: CloudErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}
