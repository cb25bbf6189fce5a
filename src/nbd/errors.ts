import { LifeboatError } from '../errors.js';

/** Stable codes of the NBD layer. Anything a server or the network does wrong ends as one of these. */
export type NbdErrorCode =
  | 'NBD_PROTOCOL' // the server broke the protocol (bad magic, unknown handle, malformed chunk...)
  | 'NBD_DISCONNECTED' // the connection ended while a handshake or request was under way
  | 'NBD_SHORT_READ' // a read reply claimed success without covering the whole range
  | 'NBD_SERVER_ERROR' // the server answered a request with an error (details: errno, errnoName)
  | 'NBD_UNSUPPORTED' // the server lacks something we need (oldstyle, TLS required, no such command)
  | 'NBD_EXPORT_NOT_FOUND' // the export name is unknown to the server
  | 'NBD_OPTION_REFUSED' // the server refused a handshake option with an error reply
  | 'NBD_META_CONTEXT_NOT_FOUND' // a metadata context (e.g. a dirty bitmap) was not negotiated
  | 'NBD_CONNECT' // the socket could not be opened
  | 'NBD_TIMEOUT' // the handshake did not finish in time
  | 'NBD_BAD_URI' // an NBD URI we cannot parse
  | 'NBD_RANGE' // a request outside the export, or unaligned where alignment is required
  | 'NBD_CLOSED'; // a request on a client that was closed

export class NbdError extends LifeboatError {
  declare readonly code: NbdErrorCode;
  constructor(
    code: NbdErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }

  /** For NBD_SERVER_ERROR: the errno name the server sent (EIO, ENOSPC, ...). */
  get errnoName(): string | undefined {
    const name = this.details?.errnoName;
    return typeof name === 'string' ? name : undefined;
  }
}
