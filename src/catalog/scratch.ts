import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { CatalogError } from './errors.js';
import { type CatalogDialect, openCatalog } from './open.js';
import type { CatalogDb } from './schema.js';

/**
 * A throwaway catalog for tests: a SQLite file in a fresh temp directory, or a fresh database on
 * the test PostgreSQL (LIFEBOAT_TEST_PG_URL, started by scripts/services/postgres.sh). Each call
 * gets its own, so test files running in parallel never see each other's rows.
 */
export interface ScratchCatalog {
  dialect: CatalogDialect;
  url: string;
  db: CatalogDb;
  /** Closes the catalog and removes its database. */
  drop(): Promise<void>;
}

export async function openScratchCatalog(
  dialect: CatalogDialect,
  options: { migrate?: boolean } = {},
): Promise<ScratchCatalog> {
  return dialect === 'postgres' ? openScratchPostgres(options) : openScratchSqlite(options);
}

async function openScratchSqlite(options: { migrate?: boolean }): Promise<ScratchCatalog> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeboat-catalog-'));
  const url = `sqlite:${join(dir, 'catalog.db')}`;
  const db = await openCatalog(url, options);
  return {
    dialect: 'sqlite',
    url,
    db,
    drop: async () => {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The test PostgreSQL's URL; a missing service is a failure, not a reason to skip. */
export function testPostgresUrl(): string {
  const url = process.env.LIFEBOAT_TEST_PG_URL;
  if (!url) {
    throw new CatalogError(
      'CATALOG_URL_INVALID',
      'LIFEBOAT_TEST_PG_URL is not set: start scripts/services/postgres.sh (npm test does) and export its postgres.env',
    );
  }
  return url;
}

async function openScratchPostgres(options: { migrate?: boolean }): Promise<ScratchCatalog> {
  const base = testPostgresUrl();
  const name = `lifeboat_scratch_${randomBytes(6).toString('hex')}`;
  await adminQuery(base, `create database ${name}`);
  const u = new URL(base);
  u.pathname = `/${name}`;
  const url = u.toString();
  const db = await openCatalog(url, options);
  return {
    dialect: 'postgres',
    url,
    db,
    drop: async () => {
      await db.destroy();
      await adminQuery(base, `drop database if exists ${name} with (force)`);
    },
  };
}

async function adminQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
