import { LifeboatError } from '../errors.js';

/** Stable codes of the datamover service (the process that pulls tasks from the controller). */
export type DatamoverServiceErrorCode =
  | 'DATAMOVER_CONTROLLER_UNREACHABLE' // no answer, a connection error or a 5xx: retried with backoff
  | 'DATAMOVER_CONTROLLER_REFUSED' // a 4xx the datamover cannot fix by retrying (bad token, bad request)
  | 'DATAMOVER_HOST_UNKNOWN' // the controller forgot this host (deleted, or a fresh catalog): register again
  | 'DATAMOVER_LEASE_LOST' // the task was reaped or given to someone else: drop the work
  | 'DATAMOVER_NO_HANDLER' // a task kind this datamover has no handler for
  | 'DATAMOVER_HANDLER_FAILED' // a handler threw something that is not a LifeboatError (a bug)
  | 'DATAMOVER_TASK_CANCELLED' // the job was cancelled; the handler was aborted
  | 'DATAMOVER_STOPPING' // the datamover is shutting down and abandoned the task
  | 'DATAMOVER_BAD_ANSWER'; // the controller answered something that does not match the protocol

export class DatamoverServiceError extends LifeboatError {
  declare readonly code: DatamoverServiceErrorCode;
  constructor(
    code: DatamoverServiceErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

export function isDatamoverServiceError(
  err: unknown,
  code?: DatamoverServiceErrorCode,
): err is DatamoverServiceError {
  return err instanceof DatamoverServiceError && (code === undefined || err.code === code);
}

/** Worth retrying later: the controller may be restarting or the network flapping. */
export function isRetryable(err: unknown): boolean {
  return isDatamoverServiceError(err, 'DATAMOVER_CONTROLLER_UNREACHABLE');
}
