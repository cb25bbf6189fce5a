import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { ByteSink } from '../disk/io.js';
import { TargetError } from './errors.js';
import { s3Error } from './s3-errors.js';

export interface S3UploadOptions {
  /** Bytes per part (>= 5 MiB except the last). */
  partSize: number;
  /** Parts uploading at once; memory held is about (partConcurrency + 1) * partSize. */
  partConcurrency: number;
}

/**
 * A ByteSink that becomes one S3 object: a single PUT when everything fits in one part, else a
 * multipart upload with bounded memory. Until close() completes the upload nothing is visible under
 * the key; abort() (or a failed close) aborts the upload so no parts linger.
 */
export class S3UploadSink implements ByteSink {
  /** The part being filled: chunks are copied straight into it (one copy per byte, no concat). */
  private part: Buffer | undefined;
  private partBytes = 0;
  private uploadId: string | undefined;
  private readonly parts: CompletedPart[] = [];
  private inFlight: Promise<void>[] = [];
  /** Part buffers whose upload is over, reused for later parts. */
  private readonly spare: Buffer[] = [];
  private failure: unknown;
  private done = false;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly opts: S3UploadOptions,
  ) {}

  private get what(): string {
    return `s3://${this.bucket}/${this.key}`;
  }

  /** Copies `chunk` before it returns: the caller may reuse its buffer at once. */
  async write(chunk: Buffer): Promise<void> {
    if (this.done) throw new TargetError('TARGET_STATE', `${this.what}: write after close`);
    if (this.failure) throw s3Error(this.what, this.failure);
    let off = 0;
    while (off < chunk.length) {
      this.part ??= this.spare.pop() ?? Buffer.allocUnsafe(this.opts.partSize);
      const n = chunk.copy(this.part, this.partBytes, off);
      this.partBytes += n;
      off += n;
      if (this.partBytes === this.opts.partSize) {
        const body = this.part;
        this.part = undefined;
        this.partBytes = 0;
        // Later bytes of this chunk are copied once a part slot is free (bounded memory).
        await this.startPart(body, body);
      }
    }
  }

  /** The chunk is copied before this returns, so its buffer goes straight back to the caller. */
  async writeBorrowed(chunk: Buffer, release: () => void): Promise<void> {
    try {
      await this.write(chunk);
    } finally {
      release();
    }
  }

  /** Uploads `body` as the next part; `recycle` (its buffer) is reused once the upload is over. */
  private async startPart(body: Buffer, recycle?: Buffer): Promise<void> {
    if (this.uploadId === undefined) {
      try {
        const r = await this.client.send(
          new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key }),
        );
        this.uploadId = r.UploadId;
      } catch (err) {
        throw s3Error(this.what, err);
      }
    }
    const partNumber = this.parts.length + 1;
    const slot: CompletedPart = { PartNumber: partNumber };
    this.parts.push(slot);
    const p = this.client
      .send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
        }),
      )
      .then((r) => {
        slot.ETag = r.ETag;
      })
      .catch((err) => {
        this.failure ??= err;
      })
      .finally(() => {
        if (recycle && this.spare.length < this.opts.partConcurrency) this.spare.push(recycle);
      });
    this.inFlight.push(p);
    if (this.inFlight.length >= this.opts.partConcurrency) {
      await this.inFlight.shift();
      if (this.failure) throw s3Error(this.what, this.failure);
    }
  }

  async close(): Promise<void> {
    if (this.done) throw new TargetError('TARGET_STATE', `${this.what}: closed twice`);
    try {
      const last = this.part?.subarray(0, this.partBytes) ?? Buffer.alloc(0);
      if (this.uploadId === undefined) {
        const body = last;
        this.done = true;
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.key,
            Body: body,
            ContentLength: body.length,
          }),
        );
        return;
      }
      if (last.length > 0) await this.startPart(last);
      this.done = true;
      await Promise.all(this.inFlight);
      if (this.failure) throw this.failure;
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          MultipartUpload: { Parts: this.parts },
        }),
      );
    } catch (err) {
      this.done = false;
      await this.abort();
      throw s3Error(this.what, err);
    } finally {
      this.part = undefined;
      this.partBytes = 0;
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.part = undefined;
    this.partBytes = 0;
    await Promise.allSettled(this.inFlight);
    if (this.uploadId !== undefined) {
      await this.client
        .send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId }),
        )
        .catch(() => {
          // A failed abort leaves an invisible incomplete upload; removeStaleUploads clears it later.
        });
    }
  }
}
