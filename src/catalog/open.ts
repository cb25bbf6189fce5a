import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import {
  Kysely,
  type MigrationResultSet,
  Migrator,
  PostgresAdapter,
  PostgresDialect,
  SqliteDialect,
} from 'kysely';
import pg from 'pg';
import { CatalogError } from './errors.js';
import { catalogMigrations } from './migrations/index.js';
import type { CatalogDb, CatalogSchema } from './schema.js';

export type CatalogDialect = 'sqlite' | 'postgres';

export interface CatalogLocation {
  dialect: CatalogDialect;
  /** SQLite: a file path or ':memory:'. PostgreSQL: the connection URL. */
  target: string;
}

export interface OpenCatalogOptions {
  /** Bring the schema up to date before returning (default true). */
  migrate?: boolean;
  /** PostgreSQL pool size (default 10). */
  poolSize?: number;
}

/**
 * Where a catalog URL points: `postgres://` / `postgresql://` → PostgreSQL; `sqlite:PATH`,
 * `sqlite://PATH`, `:memory:` or a plain path → SQLite. Any other scheme is refused rather than
 * taken for a file name.
 */
export function parseCatalogUrl(url: string): CatalogLocation {
  const text = url.trim();
  if (text === '') throw new CatalogError('CATALOG_URL_INVALID', 'the catalog URL is empty');
  if (/^postgres(ql)?:\/\//i.test(text)) return { dialect: 'postgres', target: text };
  if (text === ':memory:') return { dialect: 'sqlite', target: ':memory:' };
  if (/^sqlite:/i.test(text)) {
    let path = text.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') throw new CatalogError('CATALOG_URL_INVALID', `no file name in catalog URL ${url}`);
    return { dialect: 'sqlite', target: path === ':memory:' ? path : resolve(path) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new CatalogError(
      'CATALOG_URL_INVALID',
      `unsupported catalog URL ${url}: use a SQLite path or postgres://`,
    );
  }
  return { dialect: 'sqlite', target: resolve(text) };
}

/**
 * Opens the catalog at `url` and (unless told not to) migrates it to the latest schema. Safe to call
 * from several controllers at once on one PostgreSQL: Kysely's migrator holds an advisory lock and
 * runs each migration in a transaction.
 */
export async function openCatalog(url: string, options: OpenCatalogOptions = {}): Promise<CatalogDb> {
  const location = parseCatalogUrl(url);
  const db =
    location.dialect === 'postgres' ? openPostgres(location.target, options) : openSqlite(location.target);
  if (options.migrate ?? true) {
    try {
      await migrateCatalog(db);
    } catch (err) {
      await db.destroy();
      throw err;
    }
  }
  return db;
}

/** The raw SQLite handle behind each SQLite catalog, for migrations (see migrateCatalog). */
const sqliteHandles = new WeakMap<CatalogDb, Database.Database>();
/** Migrations of one SQLite file in this process run one after the other. */
const sqliteMigrationQueue = new Map<string, Promise<unknown>>();

function openSqlite(path: string): CatalogDb {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new Database(path);
  // WAL lets readers (CLI, dashboards) run beside the controller; the busy timeout makes a second
  // writer wait instead of failing at once; SQLite leaves foreign keys off unless asked.
  if (path !== ':memory:') sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('synchronous = NORMAL');
  const db = new Kysely<CatalogSchema>({ dialect: new SqliteDialect({ database: sqlite }) });
  sqliteHandles.set(db, sqlite);
  return db;
}

const PG_INT8_OID = 20;

function openPostgres(url: string, options: OpenCatalogOptions): CatalogDb {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    // Sizes and counts are bigint columns; pg returns them as strings by default. Every byte count
    // Lifeboat handles fits in 2^53, so numbers (as SQLite returns them) keep both databases alike.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === PG_INT8_OID
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format)) as never,
    },
  });
  // An idle pooled connection that the server ends (restart, failover, pg_terminate_backend) makes
  // the pool emit 'error'; unheard, that event would crash the controller. The pool drops the dead
  // client by itself and the next query opens a new one, so there is nothing else to do here.
  pool.on('error', () => undefined);
  return new Kysely<CatalogSchema>({ dialect: new PostgresDialect({ pool }) });
}

export function catalogDialect(db: CatalogDb): CatalogDialect {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';
}

/**
 * Applies every pending migration; returns the names applied now. On PostgreSQL the migrator takes
 * an advisory lock and runs each migration in a transaction, so controllers starting together take
 * turns. Kysely runs SQLite migrations without either (it assumes one connection), so here the
 * whole run happens inside BEGIN IMMEDIATE on the raw handle: the database write lock keeps other
 * processes out, a failure rolls everything back, and the loser of a race finds the work done.
 */
export async function migrateCatalog(db: CatalogDb): Promise<string[]> {
  const migrator = new Migrator({ db, provider: catalogMigrations });
  const sqlite = sqliteHandles.get(db);
  if (!sqlite) return unwrap(await migrator.migrateToLatest());
  const key = sqlite.memory ? `memory:${Math.random()}` : sqlite.name;
  const previous = sqliteMigrationQueue.get(key) ?? Promise.resolve();
  const run = previous
    .catch(() => undefined)
    .then(async () => {
      sqlite.exec('BEGIN IMMEDIATE');
      try {
        const names = unwrap(await migrator.migrateToLatest());
        sqlite.exec('COMMIT');
        return names;
      } catch (err) {
        if (sqlite.inTransaction) sqlite.exec('ROLLBACK');
        throw err;
      }
    });
  sqliteMigrationQueue.set(key, run);
  try {
    return await run;
  } finally {
    if (sqliteMigrationQueue.get(key) === run) sqliteMigrationQueue.delete(key);
  }
}

function unwrap(outcome: MigrationResultSet): string[] {
  if (outcome.error) {
    const error = outcome.error as Error;
    throw new CatalogError('CATALOG_MIGRATION', `catalog migration failed: ${error.message}`, {
      cause: error,
    });
  }
  return (outcome.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
