import type { Command } from 'commander';
import type { TargetBackend } from '../target/backend.js';
import { openBackend } from '../target/open-target.js';

/**
 * How the offline commands (`target ...`, `restore --from-target`, `vm backup`, `vm restore`) take a
 * TARGET on the command line: a directory or s3://bucket/prefix, with the S3 settings from these
 * flags or, when a flag is absent, the AWS_* variables (so every command takes the same flags
 * with the same defaults).
 */
export interface S3Flags {
  endpoint?: string;
  accessKey?: string;
  secretKey?: string;
  region?: string;
}

export function withS3Flags(cmd: Command): Command {
  return cmd
    .option(
      '--endpoint <url>',
      'S3 endpoint (Ceph RGW, MinIO); default $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL',
    )
    .option('--access-key <id>', 'S3 access key; default $AWS_ACCESS_KEY_ID')
    .option('--secret-key <secret>', 'S3 secret key; default $AWS_SECRET_ACCESS_KEY')
    .option('--region <name>', 'S3 region; default $AWS_REGION');
}

/** Opens the backend of a TARGET given with the flags above (`create`: make a missing directory). */
export function openBackendWithFlags(
  location: string,
  flags: S3Flags,
  options: { create?: boolean } = {},
): Promise<TargetBackend> {
  return openBackend(location, {
    endpoint: flags.endpoint,
    accessKeyId: flags.accessKey,
    secretAccessKey: flags.secretKey,
    region: flags.region,
    ...options,
  });
}
