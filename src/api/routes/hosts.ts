import { z } from 'zod';
import { getHost, listHosts } from '../../catalog/hosts.js';
import type { ApiRouter } from '../router.js';
import { hostOut, idParams, listOf } from '../schemas.js';

/** Hosts are shared infrastructure: every user sees them (to pick VMs for workloads). */
export function registerHostRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/hosts',
    summary: 'Hypervisor hosts and their datamovers',
    tag: 'hosts',
    access: 'user',
    query: z.strictObject({ status: z.enum(['online', 'offline', 'unknown']).optional() }),
    response: listOf(hostOut),
    handler: async ({ query, services }) => ({ items: await listHosts(services.catalog, query) }),
  });

  router.add({
    method: 'GET',
    url: '/v1/hosts/:id',
    summary: 'One host',
    tag: 'hosts',
    access: 'user',
    params: idParams,
    response: hostOut,
    handler: async ({ params, services }) => getHost(services.catalog, params.id),
  });
}
