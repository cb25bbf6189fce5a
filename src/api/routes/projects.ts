import { z } from 'zod';
import { recordAudit } from '../../catalog/audit.js';
import {
  addProjectMember,
  createProject,
  deleteProject,
  getProject,
  listProjectMembers,
  listProjects,
  removeProjectMember,
  updateProject,
} from '../../catalog/projects.js';
import { getUser } from '../../catalog/users.js';
import { apiActor } from '../audit-actor.js';
import { assertProjectVisible } from '../auth.js';
import type { ApiRouter } from '../router.js';
import { idParams, listOf, memberOut, nameSchema, pageQuery, projectOut } from '../schemas.js';

const memberParams = z.strictObject({ id: z.uuid(), userId: z.uuid() });

export function registerProjectRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/projects',
    summary: 'Projects the caller belongs to (admins: all)',
    tag: 'projects',
    access: 'user',
    query: z.strictObject({ ...pageQuery }),
    response: listOf(projectOut),
    handler: async ({ auth, query, services }) => ({
      items: await listProjects(services.catalog, auth.scope, query),
    }),
  });

  router.add({
    method: 'POST',
    url: '/v1/projects',
    summary: 'Create a project',
    tag: 'projects',
    access: 'admin',
    status: 201,
    body: z.strictObject({ name: nameSchema, description: z.string().max(1000).optional() }),
    response: projectOut,
    handler: async ({ auth, body, services }) => {
      const project = await createProject(services.catalog, body);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'project.create',
        resourceType: 'project',
        resourceId: project.id,
        projectId: project.id,
        details: { name: project.name },
      });
      return project;
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/projects/:id',
    summary: 'One project',
    tag: 'projects',
    access: 'user',
    params: idParams,
    response: projectOut,
    handler: async ({ auth, params, services }) => {
      assertProjectVisible(auth, params.id, 'project', params.id);
      return getProject(services.catalog, params.id);
    },
  });

  router.add({
    method: 'PATCH',
    url: '/v1/projects/:id',
    summary: 'Rename or describe a project',
    tag: 'projects',
    access: 'admin',
    params: idParams,
    body: z.strictObject({ name: nameSchema.optional(), description: z.string().max(1000).optional() }),
    response: projectOut,
    handler: async ({ auth, params, body, services }) => {
      const project = await updateProject(services.catalog, params.id, body);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'project.update',
        resourceType: 'project',
        resourceId: project.id,
        projectId: project.id,
        details: body,
      });
      return project;
    },
  });

  router.add({
    method: 'DELETE',
    url: '/v1/projects/:id',
    summary: 'Delete a project (409 while it still has workloads)',
    tag: 'projects',
    access: 'admin',
    params: idParams,
    status: 204,
    handler: async ({ auth, params, services }) => {
      const project = await getProject(services.catalog, params.id);
      await deleteProject(services.catalog, params.id);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'project.delete',
        resourceType: 'project',
        resourceId: project.id,
        projectId: project.id,
        details: { name: project.name },
      });
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/projects/:id/members',
    summary: 'Members of a project',
    tag: 'projects',
    access: 'user',
    params: idParams,
    response: listOf(memberOut),
    handler: async ({ auth, params, services }) => {
      assertProjectVisible(auth, params.id, 'project', params.id);
      await getProject(services.catalog, params.id);
      const members = await listProjectMembers(services.catalog, params.id);
      return { items: members.map((u) => ({ id: u.id, name: u.name, role: u.role })) };
    },
  });

  router.add({
    method: 'PUT',
    url: '/v1/projects/:id/members/:userId',
    summary: 'Add a user to a project',
    tag: 'projects',
    access: 'admin',
    params: memberParams,
    status: 204,
    handler: async ({ auth, params, services }) => {
      await getProject(services.catalog, params.id);
      await getUser(services.catalog, params.userId);
      await addProjectMember(services.catalog, params.id, params.userId);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'project.member.add',
        resourceType: 'user',
        resourceId: params.userId,
        projectId: params.id,
      });
    },
  });

  router.add({
    method: 'DELETE',
    url: '/v1/projects/:id/members/:userId',
    summary: 'Remove a user from a project',
    tag: 'projects',
    access: 'admin',
    params: memberParams,
    status: 204,
    handler: async ({ auth, params, services }) => {
      await getProject(services.catalog, params.id);
      await getUser(services.catalog, params.userId);
      await removeProjectMember(services.catalog, params.id, params.userId);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'project.member.remove',
        resourceType: 'user',
        resourceId: params.userId,
        projectId: params.id,
      });
    },
  });
}
