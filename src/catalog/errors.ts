import { LifeboatError } from '../errors.js';

/** Stable codes of the catalog layer. The API maps them to HTTP statuses (see src/api/errors.ts). */
export type CatalogErrorCode =
  | 'CATALOG_URL_INVALID' // openCatalog() was given something that is neither a SQLite path nor postgres://
  | 'CATALOG_MIGRATION' // the schema could not be brought up to date
  | 'CATALOG_NOT_FOUND' // no row with that id (or not visible to the caller)
  | 'CATALOG_CONFLICT' // a unique constraint: the name, VM or token is taken
  | 'CATALOG_IN_USE' // a row others still refer to (e.g. a project that still has workloads)
  | 'CATALOG_BAD_TRANSITION' // a job/task/snapshot/restore status change the state machine forbids
  | 'CATALOG_LEASE_LOST' // a task's lease expired or is held by someone else
  | 'CATALOG_LOCKED' // a workload is locked by another job
  | 'CATALOG_INVALID_NAME'; // a name outside the rule in names.ts

export class CatalogError extends LifeboatError {
  declare readonly code: CatalogErrorCode;
  constructor(
    code: CatalogErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}

export function notFound(what: string, id: string): CatalogError {
  return new CatalogError('CATALOG_NOT_FOUND', `${what} ${id} not found`, {
    details: { resource: what, id },
  });
}

/**
 * Turns the two drivers' constraint errors into one typed error, so callers (and the API's 409) never
 * look at SQLite or PostgreSQL error codes. Anything else is returned unchanged.
 */
export function translateDbError(err: unknown, what: string): unknown {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  // PostgreSQL: 23505 unique_violation, 23503 foreign_key_violation.
  if (code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new CatalogError('CATALOG_CONFLICT', `${what} already exists`, { cause: err });
  }
  // SQLite reports ON DELETE RESTRICT as SQLITE_CONSTRAINT_TRIGGER, with the same message.
  const sqliteForeignKey = code.startsWith('SQLITE_CONSTRAINT') && /FOREIGN KEY/i.test(String(e?.message));
  if (code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || sqliteForeignKey) {
    return new CatalogError('CATALOG_IN_USE', `${what} refers to, or is referred to by, another record`, {
      cause: err,
    });
  }
  return err;
}

/** Runs a write and rethrows constraint violations as CatalogError. */
export async function guardWrite<T>(what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    throw translateDbError(err, what);
  }
}
