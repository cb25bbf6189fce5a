import { z } from 'zod';
import { getProject } from '../../catalog/projects.js';
import { resolveUser } from '../../catalog/users.js';
import { listWorkloads } from '../../catalog/workloads.js';
import {
  createWorkload,
  deleteWorkload,
  getWorkloadDetail,
  modifyWorkload,
  reassignWorkload,
} from '../../controller/workloads.js';
import { apiActor } from '../audit-actor.js';
import { type AuthContext, assertProjectFilter, assertProjectVisible } from '../auth.js';
import { ApiError } from '../errors.js';
import type { ApiRouter } from '../router.js';
import { idParams, listOf, nameSchema, pageQuery } from '../schemas.js';
import type { ApiServices } from '../services.js';
import { controllerOf } from './controller-access.js';

const vmRef = z
  .strictObject({
    host_id: z.uuid(),
    uuid: z
      .string()
      .regex(/^[0-9a-fA-F-]{36}$/, 'a libvirt domain UUID')
      .optional(),
    name: z.string().min(1).max(200).optional(),
    excluded_disks: z.array(z.string().min(1).max(32)).optional(),
  })
  .refine((v) => v.uuid || v.name, 'give the VM uuid or name');

const policy = {
  full_every: z.number().int().min(1).nullable().optional(),
  retention_keep_count: z.number().int().min(1).nullable().optional(),
};

export const workloadOut = z.looseObject({
  id: z.uuid(),
  project_id: z.uuid(),
  owner_user_id: z.uuid().nullable(),
  name: z.string(),
  description: z.string(),
  target_id: z.uuid().nullable(),
  locked_by_job_id: z.uuid().nullable(),
  project_name: z.string().nullable(),
  owner_name: z.string().nullable(),
  target_name: z.string().nullable(),
  vms: z.array(
    z.looseObject({
      id: z.uuid(),
      host_id: z.uuid(),
      host_name: z.string().nullable(),
      domain_uuid: z.string(),
      name: z.string(),
      excluded_disks: z.array(z.string()),
    }),
  ),
});

const toRef = (v: z.output<typeof vmRef>) => ({
  hostId: v.host_id,
  uuid: v.uuid,
  name: v.name,
  excludedDisks: v.excluded_disks,
});

/** The workload if the caller may see it; 404 otherwise (as if it did not exist). */
export async function visibleWorkload(services: ApiServices, auth: AuthContext, id: string) {
  const w = await getWorkloadDetail(controllerOf(services), id);
  assertProjectVisible(auth, w.project_id, 'workload', id);
  return w;
}

async function userIdOf(services: ApiServices, who: string | null | undefined) {
  if (who === undefined || who === null) return who;
  return (await resolveUser(services.catalog, who)).id;
}

export function registerWorkloadRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/workloads',
    summary: "Workloads of the caller's projects (admins: all)",
    tag: 'workloads',
    access: 'user',
    query: z.strictObject({ project_id: z.uuid().optional(), ...pageQuery }),
    response: listOf(z.looseObject({ id: z.uuid(), name: z.string(), project_id: z.uuid() })),
    handler: async ({ auth, query, services }) => {
      if (query.project_id) assertProjectFilter(auth, query.project_id);
      const scope = query.project_id ? [query.project_id] : auth.scope;
      return { items: await listWorkloads(services.catalog, scope, query) };
    },
  });

  router.add({
    method: 'POST',
    url: '/v1/workloads',
    summary: 'Create a workload (a group of VMs backed up together); its description goes to the target',
    tag: 'workloads',
    access: 'user',
    status: 201,
    body: z.strictObject({
      project_id: z.uuid(),
      name: nameSchema,
      description: z.string().max(1000).optional(),
      target_id: z.uuid().optional(),
      vms: z.array(vmRef).max(100).optional(),
      ...policy,
    }),
    response: workloadOut,
    handler: async ({ auth, body, services }) => {
      assertProjectVisible(auth, body.project_id, 'project', body.project_id);
      await getProject(services.catalog, body.project_id);
      return createWorkload(controllerOf(services), apiActor(auth), {
        projectId: body.project_id,
        name: body.name,
        description: body.description,
        targetId: body.target_id,
        vms: body.vms?.map(toRef),
        full_every: body.full_every,
        retention_keep_count: body.retention_keep_count,
      });
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/workloads/:id',
    summary: 'One workload with its VMs',
    tag: 'workloads',
    access: 'user',
    params: idParams,
    response: workloadOut,
    handler: async ({ auth, params, services }) => visibleWorkload(services, auth, params.id),
  });

  router.add({
    method: 'PATCH',
    url: '/v1/workloads/:id',
    summary: 'Rename, add/remove VMs, exclude disks; admins also move it to another project or owner',
    tag: 'workloads',
    access: 'user',
    params: idParams,
    body: z.strictObject({
      name: nameSchema.optional(),
      description: z.string().max(1000).optional(),
      add_vms: z.array(vmRef).max(100).optional(),
      remove_vms: z.array(z.string().min(1).max(200)).max(100).optional(),
      exclude_disks: z
        .array(z.strictObject({ vm: z.string().min(1).max(200), disks: z.array(z.string().min(1).max(32)) }))
        .optional(),
      project_id: z.uuid().optional(),
      owner: z.string().min(1).max(128).nullable().optional().describe('user id or name; null: nobody'),
      ...policy,
    }),
    response: workloadOut,
    handler: async ({ auth, params, body, services }) => {
      const ctx = controllerOf(services);
      const before = await visibleWorkload(services, auth, params.id);
      const { project_id, owner, add_vms, remove_vms, exclude_disks, ...fields } = body;
      if ((project_id !== undefined && project_id !== before.project_id) || owner !== undefined) {
        if (!auth.isAdmin)
          throw new ApiError(
            'FORBIDDEN',
            'moving a workload to another project or owner needs the admin role',
          );
        if (project_id) await getProject(services.catalog, project_id);
        await reassignWorkload(ctx, apiActor(auth), params.id, {
          projectId: project_id,
          ownerUserId: await userIdOf(services, owner),
        });
      }
      const change = {
        ...fields,
        addVms: add_vms?.map(toRef),
        removeVms: remove_vms,
        excludeDisks: exclude_disks,
      };
      const anything = Object.values(change).some((v) => v !== undefined);
      return anything
        ? modifyWorkload(ctx, apiActor(auth), params.id, change)
        : getWorkloadDetail(ctx, params.id);
    },
  });

  router.add({
    method: 'DELETE',
    url: '/v1/workloads/:id',
    summary: 'Delete a workload; with delete_data=true its backups on the target go too',
    tag: 'workloads',
    access: 'user',
    params: idParams,
    query: z.strictObject({ delete_data: z.enum(['true', 'false']).default('false') }),
    status: 204,
    handler: async ({ auth, params, query, services }) => {
      await visibleWorkload(services, auth, params.id);
      await deleteWorkload(controllerOf(services), apiActor(auth), params.id, {
        deleteData: query.delete_data === 'true',
      });
    },
  });
}

export { userIdOf };
