import { LifeboatError } from '../errors.js';

/** Stable codes of the target layer. */
export type TargetErrorCode =
  | 'TARGET_NOT_FOUND' // the target, or an object on it, does not exist
  | 'TARGET_NOT_INITIALIZED' // the location exists but holds no lifeboat-target.json
  | 'TARGET_AUTH' // the S3 credentials were refused
  | 'TARGET_NO_BUCKET' // the S3 bucket does not exist
  | 'TARGET_UNREACHABLE' // the S3 endpoint does not answer
  | 'TARGET_IO' // any other read/write failure
  | 'TARGET_FORMAT_VERSION' // a metadata file of a newer major format version than this build reads
  | 'TARGET_METADATA_INVALID' // a metadata file is not valid JSON, fails its schema or its checksum
  | 'TARGET_LEASE_HELD' // another installation holds the workload's lease
  | 'TARGET_LEASE_LOST' // our lease expired or was taken over while we were writing
  | 'TARGET_BAD_KEY' // a key or id with path tricks (.., absolute, empty segment, odd characters)
  | 'TARGET_BAD_URL' // a target URL we cannot parse
  | 'TARGET_EXISTS' // something we were about to create is already there
  | 'TARGET_STATE'; // an operation out of order (writing to a committed snapshot, closed writer...)

export class TargetError extends LifeboatError {
  declare readonly code: TargetErrorCode;
  constructor(
    code: TargetErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

export function isTargetError(err: unknown, code?: TargetErrorCode): err is TargetError {
  return err instanceof TargetError && (code === undefined || err.code === code);
}
