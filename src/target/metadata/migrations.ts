import type { MetadataKind } from './version.js';

/**
 * Upgrades of older metadata documents, applied on read, one major step at a time. A document is
 * never rewritten on the target just because it was read: old targets stay readable by old builds.
 *
 * Format 0 was the development format before 1.0: a numeric `version: 0` instead of `formatVersion`,
 * snake_case member names, no `kind`, no checksum. It never shipped, but the table exists so the
 * next major has a model to follow.
 */
export type Migration = (kind: MetadataKind, doc: Record<string, unknown>) => Record<string, unknown>;

function snakeToCamel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function camelize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(camelize);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [snakeToCamel(k), camelize(v)]));
  }
  return value;
}

/** MIGRATIONS[n] turns a major-n document into a major-(n+1) one. */
export const MIGRATIONS: Readonly<Record<number, Migration>> = {
  0: (kind, doc) => {
    const { version: _v, ...rest } = camelize(doc) as Record<string, unknown>;
    // Free-form maps keep their keys as written.
    if (kind === 'workload' && doc.labels !== undefined) rest.labels = doc.labels;
    if (kind === 'vm' && doc.cloud !== undefined) rest.cloud = doc.cloud;
    if (kind === 'snapshot' && rest.snapshotType !== undefined) {
      rest.type = rest.snapshotType;
      delete rest.snapshotType;
    }
    return { ...rest, kind, formatVersion: { major: 1, minor: 0 } };
  },
};

/** The major version of a parsed document, or undefined when it has none we recognize. */
export function documentMajor(doc: Record<string, unknown>): number | undefined {
  const fv = doc.formatVersion as { major?: unknown } | undefined;
  if (fv && typeof fv === 'object' && Number.isInteger(fv.major)) return fv.major as number;
  if (Number.isInteger(doc.version)) return doc.version as number;
  return undefined;
}
