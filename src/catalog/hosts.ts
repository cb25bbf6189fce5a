import type { Selectable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { parseJson, toJson } from './json.js';
import type { CatalogDb, HostsTable } from './schema.js';
import { type IsoTime, isoNow } from './time.js';

/** A hypervisor host running a datamover. */
export interface Host extends Omit<Selectable<HostsTable>, 'capabilities'> {
  capabilities: Record<string, unknown>;
}
export type HostStatus = Host['status'];

function toHost(row: Selectable<HostsTable>): Host {
  return { ...row, capabilities: parseJson(row.capabilities, {}) };
}

export interface HostRegistration {
  name: string;
  address: string;
  version?: string | null;
  capabilities?: Record<string, unknown>;
}

/**
 * A datamover announcing itself: creates the host the first time, refreshes address/version after
 * that (a reinstalled host keeps its id, so its workloads stay attached). Counts as a heartbeat.
 */
export async function registerHost(
  db: CatalogDb,
  input: HostRegistration,
  now: IsoTime = isoNow(),
): Promise<Host> {
  const fresh = {
    id: newId(),
    name: input.name,
    address: input.address,
    status: 'online' as const,
    version: input.version ?? null,
    capabilities: toJson(input.capabilities ?? {}),
    last_heartbeat_at: now,
    created_at: now,
    updated_at: now,
  };
  const row = await guardWrite(`host ${input.name}`, () =>
    db
      .insertInto('hosts')
      .values(fresh)
      .onConflict((oc) =>
        oc.column('name').doUpdateSet({
          address: fresh.address,
          status: 'online',
          version: fresh.version,
          capabilities: fresh.capabilities,
          last_heartbeat_at: now,
          updated_at: now,
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow(),
  );
  return toHost(row);
}

export async function getHost(db: CatalogDb, id: string): Promise<Host> {
  const row = await db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('host', id);
  return toHost(row);
}

export async function findHostByName(db: CatalogDb, name: string): Promise<Host | undefined> {
  const row = await db.selectFrom('hosts').selectAll().where('name', '=', name).executeTakeFirst();
  return row && toHost(row);
}

export async function listHosts(db: CatalogDb, filter: { status?: HostStatus } = {}): Promise<Host[]> {
  let q = db.selectFrom('hosts').selectAll().orderBy('name');
  if (filter.status) q = q.where('status', '=', filter.status);
  return (await q.execute()).map(toHost);
}

export async function recordHostHeartbeat(
  db: CatalogDb,
  id: string,
  update: { version?: string | null } = {},
  now: IsoTime = isoNow(),
): Promise<Host> {
  const row = await db
    .updateTable('hosts')
    .set({
      status: 'online',
      last_heartbeat_at: now,
      updated_at: now,
      ...(update.version !== undefined ? { version: update.version } : {}),
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw notFound('host', id);
  return toHost(row);
}

/** Hosts silent since before `cutoff` become offline; returns them. */
export async function markSilentHostsOffline(db: CatalogDb, cutoff: IsoTime): Promise<Host[]> {
  const rows = await db
    .updateTable('hosts')
    .set({ status: 'offline', updated_at: isoNow() })
    .where('status', '=', 'online')
    .where((eb) => eb.or([eb('last_heartbeat_at', 'is', null), eb('last_heartbeat_at', '<', cutoff)]))
    .returningAll()
    .execute();
  return rows.map(toHost);
}

/** Fails with CATALOG_IN_USE while workloads still hold VMs of this host. */
export async function deleteHost(db: CatalogDb, id: string): Promise<void> {
  const res = await guardWrite(`host ${id}`, () =>
    db.deleteFrom('hosts').where('id', '=', id).executeTakeFirst(),
  );
  if (res.numDeletedRows === 0n) throw notFound('host', id);
}
