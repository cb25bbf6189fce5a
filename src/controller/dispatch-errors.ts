import { LifeboatError } from '../errors.js';

/** Stable codes of the controller's task plumbing. */
export type DispatchErrorCode =
  | 'DISPATCH_WAIT_TIMEOUT' // a job did not finish within the time a caller was willing to wait
  | 'DISPATCH_HOST_OFFLINE' // work for a host whose datamover has not been heard from recently
  | 'DISPATCH_JOB_FAILED' // a job a caller waited for ended failed or cancelled (message says why)
  | 'DISPATCH_CLOSED'; // the controller is shutting down

export class DispatchError extends LifeboatError {
  declare readonly code: DispatchErrorCode;
  constructor(
    code: DispatchErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}
