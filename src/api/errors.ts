import { CONTROLLER_HTTP_STATUS } from '../controller/errors.js';
import { LifeboatError } from '../errors.js';

/** Stable codes the API answers with, beside those of the layers below (CATALOG_NOT_FOUND...). */
export type ApiErrorCode =
  | 'UNAUTHORIZED' // no, unknown, revoked or expired bearer token
  | 'FORBIDDEN' // authenticated, but the role does not allow it
  | 'NOT_FOUND' // no such route or resource (or one the caller may not know exists)
  | 'VALIDATION' // a body, query or path parameter does not match its schema
  | 'BAD_REQUEST' // malformed request (bad JSON, wrong content type)
  | 'CONFLICT' // the request clashes with the current state
  | 'INTERNAL'; // a bug: the details are in the server log, never in the answer

export class ApiError extends LifeboatError {
  declare readonly code: ApiErrorCode;
  constructor(
    code: ApiErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

/**
 * HTTP status for every code any layer may raise through the API. Codes not listed are server-side
 * failures (500) — their message is still ours, written for people, so it is safe to show.
 */
const STATUS_BY_CODE: Record<string, number> = {
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  VALIDATION: 400,
  BAD_REQUEST: 400,
  CONFLICT: 409,
  INTERNAL: 500,
  CATALOG_NOT_FOUND: 404,
  CATALOG_CONFLICT: 409,
  CATALOG_IN_USE: 409,
  CATALOG_LOCKED: 409,
  CATALOG_BAD_TRANSITION: 409,
  CATALOG_LEASE_LOST: 409,
  CATALOG_URL_INVALID: 400,
  CATALOG_INVALID_NAME: 400,
  CLOUD_HOST_OFFLINE: 409,
  CLOUD_INVENTORY_FAILED: 502,
  CLOUD_INVENTORY_TIMEOUT: 504,
  DISPATCH_WAIT_TIMEOUT: 504,
  DISPATCH_JOB_FAILED: 502,
  DISPATCH_CLOSED: 503,
  ...CONTROLLER_HTTP_STATUS,
};

export function httpStatusOf(code: string): number {
  return STATUS_BY_CODE[code] ?? (code.endsWith('_NOT_FOUND') ? 404 : 500);
}

/** Every error answer has this body. */
export interface ErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export const notFound = (what: string, id: string) =>
  new ApiError('NOT_FOUND', `${what} ${id} not found`, { details: { resource: what, id } });
