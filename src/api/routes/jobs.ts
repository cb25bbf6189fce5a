import { z } from 'zod';
import { recordAudit } from '../../catalog/audit.js';
import { getJob, listJobs, listTasks, requestJobCancel } from '../../catalog/jobs.js';
import { JOB_STATUSES } from '../../catalog/status.js';
import { apiActor } from '../audit-actor.js';
import { type AuthContext, assertProjectFilter, assertProjectVisible } from '../auth.js';
import { presentTask } from '../presenters.js';
import type { ApiRouter } from '../router.js';
import { idParams, jobDetailOut, jobOut, listOf, pageQuery } from '../schemas.js';
import type { ApiServices } from '../services.js';

async function visibleJob(services: ApiServices, auth: AuthContext, id: string) {
  const job = await getJob(services.catalog, id);
  assertProjectVisible(auth, job.project_id, 'job', id);
  return job;
}

export function registerJobRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/jobs',
    summary: "Jobs of the caller's projects, newest first (admins: all)",
    tag: 'jobs',
    access: 'user',
    query: z.strictObject({
      status: z.enum(JOB_STATUSES).optional(),
      kind: z.string().max(64).optional(),
      project_id: z.uuid().optional(),
      resource_type: z.string().max(64).optional(),
      resource_id: z.string().max(64).optional(),
      ...pageQuery,
    }),
    response: listOf(jobOut),
    handler: async ({ auth, query, services }) => {
      const { limit, offset, project_id, resource_type, resource_id, ...filter } = query;
      if (project_id) assertProjectFilter(auth, project_id);
      const scope = project_id ? [project_id] : auth.scope;
      const items = await listJobs(
        services.catalog,
        { ...filter, scope, resourceType: resource_type, resourceId: resource_id },
        { limit, offset },
      );
      return { items };
    },
  });

  router.add({
    method: 'GET',
    url: '/v1/jobs/:id',
    summary: 'One job with its tasks',
    tag: 'jobs',
    access: 'user',
    params: idParams,
    response: jobDetailOut,
    handler: async ({ auth, params, services }) => {
      const job = await visibleJob(services, auth, params.id);
      const tasks = await listTasks(services.catalog, job.id);
      return { ...job, tasks: tasks.map(presentTask) };
    },
  });

  router.add({
    method: 'POST',
    url: '/v1/jobs/:id/cancel',
    summary: 'Ask a job to stop (queued: cancelled now; running: cancelling)',
    tag: 'jobs',
    access: 'user',
    params: idParams,
    status: 202,
    response: jobOut,
    handler: async ({ auth, params, services }) => {
      await visibleJob(services, auth, params.id);
      const job = await requestJobCancel(services.catalog, params.id);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'job.cancel',
        resourceType: 'job',
        resourceId: job.id,
        projectId: job.project_id,
        details: { kind: job.kind, status: job.status },
      });
      return job;
    },
  });
}
