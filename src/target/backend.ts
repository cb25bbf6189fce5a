import type { ByteSink, RandomAccessFile } from '../disk/io.js';

/** One object (file) on a target. */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

/**
 * An opaque version of one object, for compare-and-swap writes (leases). On S3 it is the ETag; on a
 * filesystem the SHA-256 of the content.
 */
export type ObjectVersion = string;

/**
 * Where a target keeps its bytes: a directory (local disk, NFS mount) or an S3 bucket + prefix.
 * Keys are '/'-separated, relative to the target root, validated by keys.ts (TARGET_BAD_KEY).
 * Every method that names a missing object throws TARGET_NOT_FOUND, except stat (undefined).
 */
export interface TargetBackend {
  /** Where the target is, for messages; never contains credentials. */
  readonly location: string;
  /** Every object whose key starts with `prefix` ('' or ending in '/'), in pages, any order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Names of the immediate sub-folders of `prefix` (S3: common prefixes). */
  listFolders(prefix: string): AsyncIterable<string>;
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Ranged reads without loading the object. */
  openRead(key: string): Promise<RandomAccessFile>;
  readAll(key: string): Promise<Buffer>;
  /** Readers see the old bytes or the new bytes, never a mix, even if the writer dies midway. */
  putAtomic(key: string, bytes: Buffer): Promise<void>;
  /** Streams a large object; nothing is visible under `key` before close() succeeds. */
  createWriter(key: string): Promise<ByteSink>;
  delete(key: string): Promise<void>;
  /** Deletes every object under `prefix`; returns how many. */
  deletePrefix(prefix: string): Promise<number>;
  /** Content and version of an object, undefined when absent. */
  readVersioned(key: string): Promise<{ bytes: Buffer; version: ObjectVersion } | undefined>;
  /** Creates `key` only if it does not exist; false when it does. */
  putIfAbsent(key: string, bytes: Buffer): Promise<boolean>;
  /** Replaces `key` only if its version is still `version`; false when it changed or vanished. */
  putIfMatch(key: string, bytes: Buffer, version: ObjectVersion): Promise<boolean>;
  /**
   * Removes leftovers of writers that died (fs temp files, S3 incomplete multipart uploads) older
   * than `olderThanMs`; returns how many.
   */
  removeStaleUploads(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}
