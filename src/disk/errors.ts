import { LifeboatError } from '../errors.js';

/** Stable codes of the disk layer. Malformed input is always one of these, never a crash. */
export type DiskErrorCode =
  | 'DISK_IO' // the underlying file could not be read or written
  | 'DISK_NOT_FOUND' // an image or backing file does not exist
  | 'QCOW2_BAD_MAGIC' // not a qcow2 image
  | 'QCOW2_MALFORMED' // a header field, table or entry is out of bounds or inconsistent
  | 'QCOW2_UNSUPPORTED' // a real qcow2 feature we refuse on purpose (encryption, external data file, zstd...)
  | 'CHAIN_LOOP' // a backing chain refers back to itself
  | 'CHAIN_TOO_DEEP' // more layers than any sane chain has
  | 'DISK_RANGE' // a read or write outside the virtual size
  | 'DISK_READ_ONLY'; // a write to an image opened read-only

export class DiskError extends LifeboatError {
  declare readonly code: DiskErrorCode;
  constructor(
    code: DiskErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}
