import type { TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { decodeMetadata, encodeMetadata, type MetadataInput, type MetadataOf } from './metadata/codec.js';
import type { MetadataKind } from './metadata/version.js';

/** Reads and validates one metadata file; undefined when it does not exist. */
export async function readMetadata<K extends MetadataKind>(
  backend: TargetBackend,
  kind: K,
  key: string,
): Promise<MetadataOf<K> | undefined> {
  let bytes: Buffer;
  try {
    bytes = await backend.readAll(key);
  } catch (err) {
    if (err instanceof TargetError && err.code === 'TARGET_NOT_FOUND') return undefined;
    throw err;
  }
  return decodeMetadata(kind, bytes, `${backend.location}${backend.location.endsWith('/') ? '' : '/'}${key}`);
}

export async function requireMetadata<K extends MetadataKind>(
  backend: TargetBackend,
  kind: K,
  key: string,
): Promise<MetadataOf<K>> {
  const doc = await readMetadata(backend, kind, key);
  if (!doc) throw new TargetError('TARGET_NOT_FOUND', `${backend.location}: ${key} does not exist`);
  return doc;
}

/** Writes one metadata file atomically (fs: temp + fsync + rename; S3: one PUT). */
export async function writeMetadata<K extends MetadataKind>(
  backend: TargetBackend,
  kind: K,
  key: string,
  doc: MetadataInput<K>,
): Promise<void> {
  await backend.putAtomic(key, encodeMetadata(kind, doc));
}
