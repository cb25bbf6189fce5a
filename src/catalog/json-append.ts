import { sql } from 'kysely';
import { notFound } from './errors.js';
import { catalogDialect } from './open.js';
import type { CatalogDb } from './schema.js';

type ArrayColumn =
  | { table: 'snapshots'; column: 'warnings' }
  | { table: 'snapshot_disks'; column: 'warnings' }
  | { table: 'jobs'; column: 'messages' };

/**
 * Appends one element to a JSON-array TEXT column in a single UPDATE, so two writers appending at
 * once (a task's warning and the controller's message) both land — a read-modify-write would lose one.
 */
export async function appendToJsonArray<T extends ArrayColumn>(
  db: CatalogDb,
  table: T['table'],
  column: T['column'],
  id: string,
  element: unknown,
): Promise<void> {
  const col = sql.ref(column);
  const appended =
    catalogDialect(db) === 'postgres'
      ? sql`(${col}::jsonb || ${JSON.stringify([element])}::jsonb)::text`
      : sql`json_insert(${col}, '$[#]', json(${JSON.stringify(element)}))`;
  const res = await sql`update ${sql.table(table)} set ${col} = ${appended} where id = ${id}`.execute(db);
  if ((res.numAffectedRows ?? 0n) === 0n) throw notFound(table, id);
}
