import type { z } from 'zod';
import { TargetError } from '../errors.js';
import { checkChecksum, encodeWithChecksum } from './checksum.js';
import { documentMajor, MIGRATIONS } from './migrations.js';
import {
  leaseSchema,
  manifestSchema,
  snapshotSchema,
  targetRootSchema,
  vmSchema,
  workloadSchema,
} from './schemas.js';
import { FORMAT_VERSION, type MetadataKind } from './version.js';

const SCHEMAS = {
  target: targetRootSchema,
  workload: workloadSchema,
  lease: leaseSchema,
  snapshot: snapshotSchema,
  vm: vmSchema,
  manifest: manifestSchema,
} as const;
type Schemas = typeof SCHEMAS;
export type MetadataOf<K extends MetadataKind> = z.infer<Schemas[K]>;

/** A document as a writer hands it in: header members are filled in here. */
export type MetadataInput<K extends MetadataKind> = Omit<
  MetadataOf<K>,
  'checksum' | 'formatVersion' | 'kind'
>;

/** Validates and serializes a document of the current format, checksum included. */
export function encodeMetadata<K extends MetadataKind>(kind: K, doc: MetadataInput<K>): Buffer {
  const full = { ...doc, kind, formatVersion: { ...FORMAT_VERSION } };
  const parsed = SCHEMAS[kind].safeParse(full);
  if (!parsed.success) {
    throw new TargetError(
      'TARGET_METADATA_INVALID',
      `refusing to write an invalid ${kind} document: ${parsed.error.message}`,
    );
  }
  const { checksum: _c, ...rest } = parsed.data as Record<string, unknown>;
  return encodeWithChecksum({ formatVersion: rest.formatVersion, kind, ...rest });
}

/**
 * Parses, checks and upgrades a metadata file. `where` names it in errors. Newer majors are refused
 * (TARGET_FORMAT_VERSION); older ones go through MIGRATIONS; format >= 1 must carry a valid checksum.
 */
export function decodeMetadata<K extends MetadataKind>(kind: K, bytes: Buffer, where: string): MetadataOf<K> {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new TargetError('TARGET_METADATA_INVALID', `${where}: not valid JSON (${(err as Error).message})`, {
      cause: err,
    });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TargetError('TARGET_METADATA_INVALID', `${where}: not a JSON object`);
  }
  let doc = raw as Record<string, unknown>;
  const major = documentMajor(doc);
  if (major === undefined) throw new TargetError('TARGET_METADATA_INVALID', `${where}: no format version`);
  if (major > FORMAT_VERSION.major) {
    throw new TargetError(
      'TARGET_FORMAT_VERSION',
      `${where}: format version ${major}.x is newer than this Lifeboat reads (${FORMAT_VERSION.major}.x); upgrade Lifeboat`,
      { details: { major, supported: FORMAT_VERSION.major } },
    );
  }
  // Format 0 had no checksum; any document that has one (or claims format >= 1) must match it, so a
  // flipped byte in a version number cannot smuggle a document past the check.
  if (major >= 1 || 'checksum' in doc || 'formatVersion' in doc) {
    const check = checkChecksum(bytes);
    if (!check.ok) throw new TargetError('TARGET_METADATA_INVALID', `${where}: ${check.reason}`);
  }
  for (let m = major; m < FORMAT_VERSION.major; m++) {
    const migrate = MIGRATIONS[m];
    if (!migrate) throw new TargetError('TARGET_FORMAT_VERSION', `${where}: no migration from format ${m}`);
    doc = migrate(kind, doc);
  }
  if (doc.kind !== kind) {
    throw new TargetError(
      'TARGET_METADATA_INVALID',
      `${where}: expected a ${kind} document, found ${String(doc.kind)}`,
    );
  }
  const parsed = SCHEMAS[kind].loose().safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TargetError(
      'TARGET_METADATA_INVALID',
      `${where}: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : parsed.error.message}`,
    );
  }
  return parsed.data as MetadataOf<K>;
}
