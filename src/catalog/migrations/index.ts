import type { Migration, MigrationProvider } from 'kysely';
import * as m0001 from './0001-initial.js';

/**
 * Migrations live in code (not read from a folder at run time) so a compiled or bundled controller
 * carries its schema with it. Names sort in order; never rename or edit a released one — add the
 * next number.
 */
const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': m0001,
};

export const catalogMigrations: MigrationProvider = {
  getMigrations: async () => MIGRATIONS,
};
