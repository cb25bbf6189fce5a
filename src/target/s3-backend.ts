import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { ByteSink, RandomAccessFile } from '../disk/io.js';
import type { ObjectInfo, ObjectVersion, TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { assertKey, assertPrefix } from './keys.js';
import { s3Error, s3Status } from './s3-errors.js';
import { S3UploadSink } from './s3-upload-sink.js';

export interface S3BackendOptions {
  bucket: string;
  /** Key prefix inside the bucket ('' or without leading/trailing '/'). */
  prefix?: string;
  /** e.g. http://127.0.0.1:7480 for RGW/MinIO; absent = AWS. Path-style addressing when set. */
  endpoint?: string;
  region?: string;
  /** Both or neither; neither = the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY...). */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  partSize?: number;
  partConcurrency?: number;
  /** Keys per ListObjectsV2 page (default 1000, the S3 maximum). */
  pageSize?: number;
}

// The SDK warns once per process about Node 20 on stderr; it is noise in CLI output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** A target in an S3 bucket under an optional prefix (AWS, Ceph RGW, MinIO...). */
export class S3Backend implements TargetBackend {
  readonly bucket: string;
  private readonly base: string;
  private readonly client: S3Client;
  private readonly opts: S3BackendOptions;

  private constructor(opts: S3BackendOptions) {
    this.opts = opts;
    this.bucket = opts.bucket;
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix !== '') assertKey(prefix);
    this.base = prefix === '' ? '' : `${prefix}/`;
    this.client = new S3Client({
      endpoint: opts.endpoint,
      forcePathStyle: opts.endpoint !== undefined,
      region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      credentials:
        opts.accessKeyId !== undefined && opts.secretAccessKey !== undefined
          ? {
              accessKeyId: opts.accessKeyId,
              secretAccessKey: opts.secretAccessKey,
              sessionToken: opts.sessionToken,
            }
          : undefined,
      // Ceph RGW and older S3 servers do not know the SDK's newer default CRC32 checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      // A full or wedged server (RGW blocks writes when its OSDs are full) must fail, not hang forever.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
    });
  }

  /** Connects and checks the bucket: TARGET_NO_BUCKET, TARGET_AUTH or TARGET_UNREACHABLE up front. */
  static async open(opts: S3BackendOptions): Promise<S3Backend> {
    const b = new S3Backend(opts);
    try {
      await b.client.send(new HeadBucketCommand({ Bucket: b.bucket }));
    } catch (err) {
      await b.close();
      // HeadBucket has no body, so a missing bucket is a bare 404.
      if (s3Status(err) === 404) {
        throw new TargetError('TARGET_NO_BUCKET', `s3://${b.bucket}: bucket does not exist`, { cause: err });
      }
      throw s3Error(`s3://${b.bucket}`, err);
    }
    return b;
  }

  get location(): string {
    return `s3://${this.bucket}/${this.base}`;
  }

  private full(key: string): string {
    assertKey(key);
    return this.base + key;
  }

  private what(key: string): string {
    return `s3://${this.bucket}/${this.base}${key}`;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const page of this.listPages(prefix)) {
      for (const o of page.Contents ?? []) {
        const key = (o.Key ?? '').slice(this.base.length);
        if (!isValidKey(key)) continue;
        yield { key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
    }
  }

  async *listFolders(prefix: string): AsyncIterable<string> {
    for await (const page of this.listPages(prefix, '/')) {
      for (const cp of page.CommonPrefixes ?? []) {
        const name = (cp.Prefix ?? '').slice(this.base.length + prefix.length).replace(/\/$/, '');
        if (isValidKey(name) && !name.includes('/')) yield name;
      }
    }
  }

  /** Every ListObjectsV2 page under `prefix` (with `delimiter`: grouped into CommonPrefixes). */
  private async *listPages(prefix: string, delimiter?: string): AsyncIterable<ListObjectsV2CommandOutput> {
    assertPrefix(prefix);
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.base + prefix,
            Delimiter: delimiter,
            ContinuationToken: token,
            MaxKeys: this.opts.pageSize,
          }),
        );
      } catch (err) {
        throw s3Error(this.what(prefix), err);
      }
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
      return { key, size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0) };
    } catch (err) {
      if (s3Status(err) === 404) return undefined;
      throw s3Error(this.what(key), err);
    }
  }

  async openRead(key: string): Promise<RandomAccessFile> {
    const info = await this.stat(key);
    if (!info) throw new TargetError('TARGET_NOT_FOUND', `${this.what(key)}: not found`);
    return new S3RangeReader(this.client, this.bucket, this.full(key), info.size, this.what(key));
  }

  async readAll(key: string): Promise<Buffer> {
    return (await this.get(key)).bytes;
  }

  private async get(key: string): Promise<{ bytes: Buffer; etag: string }> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
      const bytes = Buffer.from(await r.Body!.transformToByteArray());
      return { bytes, etag: r.ETag ?? '' };
    } catch (err) {
      throw s3Error(this.what(key), err);
    }
  }

  /** A single PUT is atomic on S3: readers see the whole old object or the whole new one. */
  async putAtomic(key: string, bytes: Buffer): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.full(key),
          Body: bytes,
          ContentLength: bytes.length,
        }),
      );
    } catch (err) {
      throw s3Error(this.what(key), err);
    }
  }

  async createWriter(key: string): Promise<ByteSink> {
    return new S3UploadSink(this.client, this.bucket, this.full(key), {
      partSize: this.opts.partSize ?? 8 * 1024 * 1024,
      partConcurrency: this.opts.partConcurrency ?? 3,
    });
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
    } catch (err) {
      if (s3Status(err) !== 404) throw s3Error(this.what(key), err);
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertPrefix(prefix);
    if (prefix === '') throw new TargetError('TARGET_BAD_KEY', 'refusing to delete the whole target');
    const keys: string[] = [];
    for await (const o of this.list(prefix)) keys.push(o.key);
    // Single deletes, a few at a time: every S3 server has them (multi-delete needs Content-MD5 rules
    // that differ between servers).
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) await this.delete(keys[next++]);
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return keys.length;
  }

  async readVersioned(key: string): Promise<{ bytes: Buffer; version: ObjectVersion } | undefined> {
    try {
      const r = await this.get(key);
      return { bytes: r.bytes, version: r.etag };
    } catch (err) {
      if (err instanceof TargetError && err.code === 'TARGET_NOT_FOUND') return undefined;
      throw err;
    }
  }

  async putIfAbsent(key: string, bytes: Buffer): Promise<boolean> {
    return this.conditionalPut(key, bytes, { IfNoneMatch: '*' });
  }

  /**
   * RGW compares If-Match against the bare ETag, AWS against the quoted one: try both. Each try is
   * itself conditional, so the retry cannot overwrite a changed object.
   */
  async putIfMatch(key: string, bytes: Buffer, version: ObjectVersion): Promise<boolean> {
    const bare = version.replace(/"/g, '');
    if (await this.conditionalPut(key, bytes, { IfMatch: bare })) return true;
    return this.conditionalPut(key, bytes, { IfMatch: `"${bare}"` });
  }

  private async conditionalPut(
    key: string,
    bytes: Buffer,
    cond: { IfNoneMatch?: string; IfMatch?: string },
  ): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.full(key),
          Body: bytes,
          ContentLength: bytes.length,
          ...cond,
        }),
      );
      return true;
    } catch (err) {
      const status = s3Status(err);
      if (status === 412 || status === 409 || (cond.IfMatch !== undefined && status === 404)) return false;
      throw s3Error(this.what(key), err);
    }
  }

  async removeStaleUploads(olderThanMs: number): Promise<number> {
    let n = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      let page: import('@aws-sdk/client-s3').ListMultipartUploadsCommandOutput;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.base,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
      } catch (err) {
        throw s3Error(this.location, err);
      }
      for (const u of page.Uploads ?? []) {
        if (!u.Initiated || Date.now() - u.Initiated.getTime() < olderThanMs) continue;
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }))
          .then(() => n++)
          .catch(() => {});
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return n;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function isValidKey(key: string): boolean {
  try {
    assertKey(key);
    return true;
  } catch {
    return false;
  }
}

/** Ranged GETs of one object. */
class S3RangeReader implements RandomAccessFile {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    readonly size: number,
    readonly name: string,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.size);
    if (end <= offset) return Buffer.alloc(0);
    const buf = Buffer.allocUnsafe(end - offset);
    await this.readInto(buf, offset);
    return buf;
  }

  /**
   * The body streams straight into `target` (one copy; collecting it first and wrapping it costs
   * two); zeros past the end of the object.
   */
  async readInto(target: Buffer, offset: number): Promise<void> {
    const end = Math.min(offset + target.length, this.size);
    let at = 0;
    if (end > offset) {
      try {
        const r = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: this.key, Range: `bytes=${offset}-${end - 1}` }),
        );
        for await (const piece of r.Body as AsyncIterable<Uint8Array>) {
          if (at + piece.length > end - offset)
            throw new Error(`more bytes than the ${end - offset} asked for`);
          target.set(piece, at);
          at += piece.length;
        }
      } catch (err) {
        throw s3Error(this.name, err);
      }
      if (at !== end - offset) {
        throw new TargetError(
          'TARGET_IO',
          `${this.name}: got ${at} bytes at ${offset}, expected ${end - offset}`,
        );
      }
    }
    target.fill(0, at);
  }

  async close(): Promise<void> {}
}
