import { z } from 'zod';
import { recordAudit } from '../../catalog/audit.js';
import { addProjectMember, getProject } from '../../catalog/projects.js';
import {
  countAdmins,
  createUser,
  deleteUser,
  getUser,
  getUserWithProjects,
  listUsers,
  USER_ROLES,
  updateUser,
} from '../../catalog/users.js';
import { apiActor } from '../audit-actor.js';
import { ApiError, notFound } from '../errors.js';
import type { ApiRouter } from '../router.js';
import { idParams, listOf, nameSchema, pageQuery, userOut } from '../schemas.js';

const email = z.email().max(254).nullable().optional();

export function registerUserRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/users',
    summary: 'All users with their projects',
    tag: 'users',
    access: 'admin',
    query: z.strictObject({ ...pageQuery }),
    response: listOf(userOut),
    handler: async ({ query, services }) => ({ items: await listUsers(services.catalog, query) }),
  });

  router.add({
    method: 'POST',
    url: '/v1/users',
    summary: 'Create a user, optionally as a member of projects',
    tag: 'users',
    access: 'admin',
    status: 201,
    body: z.strictObject({
      name: nameSchema,
      role: z.enum(USER_ROLES).default('member'),
      email,
      project_ids: z.array(z.uuid()).max(100).default([]),
    }),
    response: userOut,
    handler: async ({ auth, body, services }) => {
      const db = services.catalog;
      for (const projectId of body.project_ids) await getProject(db, projectId);
      const user = await createUser(db, { name: body.name, role: body.role, email: body.email });
      for (const projectId of body.project_ids) await addProjectMember(db, projectId, user.id);
      await recordAudit(db, apiActor(auth), {
        action: 'user.create',
        resourceType: 'user',
        resourceId: user.id,
        details: { name: user.name, role: user.role, project_ids: body.project_ids },
      });
      return getUserWithProjects(db, user.id);
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/users/:id',
    summary: 'One user (members may read only themselves)',
    tag: 'users',
    access: 'user',
    params: idParams,
    response: userOut,
    handler: async ({ auth, params, services }) => {
      if (!auth.isAdmin && params.id !== auth.user.id) throw notFound('user', params.id);
      return getUserWithProjects(services.catalog, params.id);
    },
  });

  router.add({
    method: 'PATCH',
    url: '/v1/users/:id',
    summary: 'Rename a user, change their role or email',
    tag: 'users',
    access: 'admin',
    params: idParams,
    body: z.strictObject({ name: nameSchema.optional(), role: z.enum(USER_ROLES).optional(), email }),
    response: userOut,
    handler: async ({ auth, params, body, services }) => {
      const db = services.catalog;
      const before = await getUser(db, params.id);
      if (before.role === 'admin' && body.role === 'member' && (await countAdmins(db)) <= 1) {
        throw new ApiError('CONFLICT', 'cannot demote the last admin');
      }
      await updateUser(db, params.id, body);
      await recordAudit(db, apiActor(auth), {
        action: 'user.update',
        resourceType: 'user',
        resourceId: params.id,
        details: body,
      });
      return getUserWithProjects(db, params.id);
    },
  });

  router.add({
    method: 'DELETE',
    url: '/v1/users/:id',
    summary: 'Delete a user and their tokens (their workloads stay, unowned)',
    tag: 'users',
    access: 'admin',
    params: idParams,
    status: 204,
    handler: async ({ auth, params, services }) => {
      const db = services.catalog;
      const user = await getUser(db, params.id);
      if (user.role === 'admin' && (await countAdmins(db)) <= 1) {
        throw new ApiError('CONFLICT', 'cannot delete the last admin');
      }
      await deleteUser(db, params.id);
      await recordAudit(db, apiActor(auth), {
        action: 'user.delete',
        resourceType: 'user',
        resourceId: user.id,
        details: { name: user.name },
      });
    },
  });
}
