import { TargetError } from './errors.js';

interface S3LikeError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const AUTH_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'Forbidden',
  'ExpiredToken',
  'InvalidToken',
  'CredentialsProviderError',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'EAI_AGAIN',
]);

export function s3Status(err: unknown): number | undefined {
  return (err as S3LikeError)?.$metadata?.httpStatusCode;
}

/** Maps an S3 SDK failure to a typed target error; `what` names the bucket/key for the message. */
export function s3Error(what: string, err: unknown): TargetError {
  if (err instanceof TargetError) return err;
  const e = (err ?? {}) as S3LikeError;
  const code = e.Code ?? e.name ?? e.code ?? '';
  const status = s3Status(err);
  const detail = e.message && e.message !== 'UnknownError' ? e.message : code || `HTTP ${status}`;
  if (code === 'NoSuchBucket')
    return new TargetError('TARGET_NO_BUCKET', `${what}: bucket does not exist`, { cause: err });
  if (AUTH_CODES.has(code) || status === 403 || status === 401) {
    return new TargetError('TARGET_AUTH', `${what}: access refused (${code || status})`, { cause: err });
  }
  if (code === 'NoSuchKey' || code === 'NotFound' || status === 404) {
    return new TargetError('TARGET_NOT_FOUND', `${what}: not found`, { cause: err });
  }
  if (NETWORK_CODES.has(e.code ?? '') || NETWORK_CODES.has(code)) {
    return new TargetError('TARGET_UNREACHABLE', `${what}: endpoint unreachable (${e.code ?? code})`, {
      cause: err,
    });
  }
  return new TargetError('TARGET_IO', `${what}: ${detail}`, { cause: err });
}
