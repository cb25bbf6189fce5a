import { LifeboatError } from '../errors.js';

/** Stable codes of the controller layer (workloads, snapshots, restores, import). */
export type ControllerErrorCode =
  | 'CONTROLLER_NO_TARGET' // the workload has no backup target and none could be chosen
  | 'CONTROLLER_VM_UNKNOWN' // a VM named by name could not be found on its host
  | 'CONTROLLER_WORKLOAD_EMPTY' // a snapshot of a workload without VMs
  | 'CONTROLLER_VMS_EXIST' // a one-click restore while the original VMs still exist
  | 'CONTROLLER_PLAN_INVALID' // a restore plan that does not fit its snapshot
  | 'CONTROLLER_SNAPSHOT_STATE' // the snapshot is not in a state that allows this (restore a failed one...)
  | 'CONTROLLER_SNAPSHOT_NEEDED' // a delete would lose data later snapshots need and cannot merge
  | 'CONTROLLER_ALREADY_IMPORTED' // the workload is already in the catalog
  | 'CONTROLLER_TARGET_LEASE'; // another installation is writing the workload on the target

export class ControllerError extends LifeboatError {
  declare readonly code: ControllerErrorCode;
  constructor(
    code: ControllerErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

/** HTTP statuses of the codes above (the API's table takes them from here). */
export const CONTROLLER_HTTP_STATUS: Record<ControllerErrorCode, number> = {
  CONTROLLER_NO_TARGET: 400,
  CONTROLLER_VM_UNKNOWN: 400,
  CONTROLLER_WORKLOAD_EMPTY: 409,
  CONTROLLER_VMS_EXIST: 409,
  CONTROLLER_PLAN_INVALID: 400,
  CONTROLLER_SNAPSHOT_STATE: 409,
  CONTROLLER_SNAPSHOT_NEEDED: 409,
  CONTROLLER_ALREADY_IMPORTED: 409,
  CONTROLLER_TARGET_LEASE: 409,
};
