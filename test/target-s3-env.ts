import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { OpenTargetOptions } from '../src/target/open-target.js';

/** The RGW test service's variables (scripts/services/rgw.sh); missing ones fail the test. */
export function s3Env(): Required<
  Pick<OpenTargetOptions, 'endpoint' | 'accessKeyId' | 'secretAccessKey' | 'region'>
> {
  const need = (name: string): string => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set: start scripts/services/rgw.sh and load its rgw.env`);
    return v;
  };
  return {
    endpoint: need('LIFEBOAT_TEST_S3_ENDPOINT'),
    accessKeyId: need('LIFEBOAT_TEST_S3_ACCESS_KEY'),
    secretAccessKey: need('LIFEBOAT_TEST_S3_SECRET_KEY'),
    region: need('LIFEBOAT_TEST_S3_REGION'),
  };
}

/** Creates a bucket with a unique name and returns it. */
export async function newBucket(tag: string): Promise<string> {
  const env = s3Env();
  const client = new S3Client({
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
  });
  const bucket = `lb-${tag}-${randomBytes(4).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return bucket;
}
