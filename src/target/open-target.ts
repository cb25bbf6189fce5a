import type { TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { FsBackend } from './fs-backend.js';
import { S3Backend } from './s3-backend.js';

export interface OpenTargetOptions {
  /** S3 endpoint (RGW, MinIO); default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself. */
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Filesystem targets: create the directory when missing. */
  create?: boolean;
}

/**
 * Opens a target's backend from a location: a directory path (or file:// URL) or
 * `s3://bucket[/prefix]`. Credentials come from the options or the AWS_* variables, never the URL.
 */
export async function openBackend(location: string, opts: OpenTargetOptions = {}): Promise<TargetBackend> {
  if (location.startsWith('s3://')) {
    const rest = location.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1);
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new TargetError('TARGET_BAD_URL', `${location}: bad bucket name ${JSON.stringify(bucket)}`);
    }
    const accessKeyId = opts.accessKeyId ?? process.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = opts.secretAccessKey ?? process.env.AWS_SECRET_ACCESS_KEY;
    return S3Backend.open({
      bucket,
      prefix,
      endpoint: opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL,
      region: opts.region,
      accessKeyId,
      secretAccessKey,
      sessionToken: opts.accessKeyId === undefined ? process.env.AWS_SESSION_TOKEN : undefined,
    });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !location.startsWith('file://')) {
    throw new TargetError(
      'TARGET_BAD_URL',
      `${location}: unsupported target URL (use a path or s3://bucket/prefix)`,
    );
  }
  const path = location.startsWith('file://') ? new URL(location).pathname : location;
  return FsBackend.open(path, { create: opts.create });
}
