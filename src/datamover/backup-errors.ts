import { LifeboatError } from '../errors.js';

/** Stable codes of the backup half of the datamover. */
export type BackupErrorCode =
  | 'BACKUP_DOMAIN_NOT_FOUND' // no domain with that name or UUID on this host
  | 'BACKUP_DOMAIN_STATE' // the domain is in a state we cannot back up (crashed, suspended to disk...)
  | 'BACKUP_NO_DISKS' // nothing left to back up (every disk excluded or unreadable)
  | 'BACKUP_BAD_ARGUMENT' // an option that can never work (unknown disk to exclude, bad id)
  | 'BACKUP_BUSY' // another backup of this domain is running on this host
  | 'BACKUP_CANCELLED' // the caller's AbortSignal fired; everything was cleaned up
  | 'BACKUP_DISK_FAILED'; // reading or writing one disk failed (the cause says why)

export class BackupError extends LifeboatError {
  declare readonly code: BackupErrorCode;
  constructor(
    code: BackupErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

/** The error to throw when `signal` fired: BACKUP_CANCELLED, with the signal's reason as cause. */
export function cancelledError(signal: AbortSignal | undefined, what: string): BackupError {
  return new BackupError('BACKUP_CANCELLED', `${what} was cancelled`, { cause: signal?.reason });
}
