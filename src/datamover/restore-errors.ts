import { LifeboatError } from '../errors.js';

/** Stable codes of restores (datamover layer). The CLI prints `lifeboat: CODE: message`. */
export type RestoreErrorCode =
  | 'RESTORE_NOT_A_BACKUP' // a path that is neither a target nor a snapshot/VM folder on one
  | 'RESTORE_WORKLOAD_NOT_FOUND' // no such workload on the target
  | 'RESTORE_SNAPSHOT_NOT_FOUND' // no committed snapshot with that id (or none at all for "latest")
  | 'RESTORE_VM_NOT_FOUND' // the snapshot holds no VM with that name or id
  | 'RESTORE_VM_AMBIGUOUS' // the snapshot holds several VMs and none was chosen (or a name matches several)
  | 'RESTORE_DISK_NOT_FOUND' // a disk asked for is not in the backup, or not in the domain (in-place)
  | 'RESTORE_DISK_SIZE_MISMATCH' // in-place: the domain's disk is now larger or smaller than in the snapshot
  | 'RESTORE_DISK_UNSUPPORTED' // in-place: a disk source Lifeboat cannot write (network, volume, ...)
  | 'RESTORE_DOMAIN_EXISTS' // a new restore would clash with an existing domain name
  | 'RESTORE_DOMAIN_NOT_FOUND' // in-place: the domain to write over does not exist
  | 'RESTORE_DOMAIN_RUNNING' // in-place: the domain is not shut off
  | 'RESTORE_NETWORK_NOT_FOUND' // a NIC's network (after mapping) does not exist on this host
  | 'RESTORE_OUTPUT_EXISTS' // an output file is already there (never overwritten)
  | 'RESTORE_START_FAILED' // the domain was defined but did not start
  | 'RESTORE_ABORTED' // cancelled through the AbortSignal; partial output was removed
  | 'RESTORE_BAD_OPTION'; // an option value that can never work (bad network map, format...)

export class RestoreError extends LifeboatError {
  declare readonly code: RestoreErrorCode;
  constructor(
    code: RestoreErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

export function isRestoreError(err: unknown, code?: RestoreErrorCode): err is RestoreError {
  return err instanceof RestoreError && (code === undefined || err.code === code);
}

/** The error to throw when `signal` fired: a RestoreError, whatever reason the signal carries. */
export function abortedError(signal: AbortSignal | undefined, what: string): RestoreError {
  return new RestoreError('RESTORE_ABORTED', `${what} was cancelled`, { cause: signal?.reason });
}
