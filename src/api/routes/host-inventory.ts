import { z } from 'zod';
import { getHost } from '../../catalog/hosts.js';
import type { ApiRouter } from '../router.js';
import { idParams, listOf } from '../schemas.js';
import type { ApiServices } from '../services.js';

/**
 * What a host has (through the cloud driver): VMs to protect, and the networks and storage a restore
 * can use. Every user may look, like at the hosts themselves: picking VMs for a workload needs it.
 */

const refreshQuery = z.strictObject({
  refresh: z
    .enum(['true', 'false', '1', '0'])
    .optional()
    .transform((v) => v === 'true' || v === '1')
    .describe('ask the host now instead of answering from the last few seconds'),
});

const vmOut = z.object({
  name: z.string(),
  uuid: z.string(),
  state: z.enum(['running', 'paused', 'shutoff', 'other']),
  persistent: z.boolean(),
  vcpus: z.number(),
  memory_bytes: z.number(),
  disks: z.array(
    z.object({
      target: z.string(),
      device: z.string(),
      bus: z.string().nullable(),
      format: z.string().nullable(),
      source_type: z.string(),
      source: z.string().nullable(),
      size_bytes: z.number().nullable(),
      allocation_bytes: z.number().nullable(),
      readonly: z.boolean(),
    }),
  ),
  nics: z.array(
    z.object({
      mac: z.string().nullable(),
      type: z.string(),
      source: z.string().nullable(),
      model: z.string().nullable(),
    }),
  ),
  networks: z.array(z.string()),
});

const networkOut = z.object({
  name: z.string(),
  uuid: z.string().nullable(),
  active: z.boolean(),
  persistent: z.boolean(),
  autostart: z.boolean(),
  bridge: z.string().nullable(),
  forward_mode: z.string().nullable(),
});

const storageOut = z.object({
  pools: z.array(
    z.object({
      name: z.string(),
      uuid: z.string().nullable(),
      type: z.string().nullable(),
      active: z.boolean(),
      autostart: z.boolean(),
      path: z.string().nullable(),
      capacity_bytes: z.number().nullable(),
      allocation_bytes: z.number().nullable(),
      available_bytes: z.number().nullable(),
    }),
  ),
  directories: z.array(z.object({ path: z.string(), total_bytes: z.number(), available_bytes: z.number() })),
});

async function inventoryOf(services: ApiServices, hostId: string, refresh: boolean) {
  const host = await getHost(services.catalog, hostId);
  // registerHostInventoryRoutes is only called when hostInventory is present.
  const source = services.hostInventory as NonNullable<ApiServices['hostInventory']>;
  return source.inventory(host.id, { refresh });
}

export function registerHostInventoryRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/hosts/:id/vms',
    summary: "The host's VMs (libvirt domains) with their disks and NICs",
    tag: 'hosts',
    access: 'user',
    params: idParams,
    query: refreshQuery,
    response: listOf(vmOut),
    handler: async ({ params, query, services }) => ({
      items: (await inventoryOf(services, params.id, query.refresh)).vms,
    }),
  });

  router.add({
    method: 'GET',
    url: '/v1/hosts/:id/networks',
    summary: "The host's libvirt networks (where restored NICs can be attached)",
    tag: 'hosts',
    access: 'user',
    params: idParams,
    query: refreshQuery,
    response: listOf(networkOut),
    handler: async ({ params, query, services }) => ({
      items: (await inventoryOf(services, params.id, query.refresh)).networks,
    }),
  });

  router.add({
    method: 'GET',
    url: '/v1/hosts/:id/storage',
    summary: "The host's storage pools and directories (where restored disks can go), with free space",
    tag: 'hosts',
    access: 'user',
    params: idParams,
    query: refreshQuery,
    response: storageOut,
    handler: async ({ params, query, services }) =>
      (await inventoryOf(services, params.id, query.refresh)).storage,
  });
}
