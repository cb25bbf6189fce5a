import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { isLifeboatError } from '../errors.js';
import { type ErrorBody, httpStatusOf } from './errors.js';
import { buildOpenApiDocument } from './openapi.js';
import { ApiRouter } from './router.js';
import { registerAuditRoutes } from './routes/audit.js';
import { registerDatamoverRoutes } from './routes/datamover.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerHostInventoryRoutes } from './routes/host-inventory.js';
import { registerHostRoutes } from './routes/hosts.js';
import { registerImportRoutes } from './routes/import.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerProjectRoutes } from './routes/projects.js';
import { registerRestoreRoutes } from './routes/restores.js';
import { registerSnapshotRoutes } from './routes/snapshots.js';
import { registerTokenRoutes } from './routes/tokens.js';
import { registerUserRoutes } from './routes/users.js';
import { registerWhoamiRoutes } from './routes/whoami.js';
import { registerWorkloadRoutes } from './routes/workloads.js';
import type { ApiServices } from './services.js';

/**
 * The REST API as a Fastify instance, not yet listening (callers `listen` or `inject`). Every
 * answer that is not a success is `{code, message}` with the matching status; a 500 never carries
 * a stack or a driver message, only a request id to find them in the log.
 */
export async function buildApi(services: ApiServices): Promise<FastifyInstance> {
  const app = Fastify({ logger: services.logger ?? false });
  const router = new ApiRouter(app, services);

  registerHealthRoutes(router);
  registerWhoamiRoutes(router);
  registerProjectRoutes(router);
  registerUserRoutes(router);
  registerTokenRoutes(router);
  registerHostRoutes(router);
  if (services.hostInventory) registerHostInventoryRoutes(router);
  if (services.taskDispatch) registerDatamoverRoutes(router);
  registerJobRoutes(router);
  if (services.controller) {
    registerWorkloadRoutes(router);
    registerSnapshotRoutes(router);
    registerRestoreRoutes(router);
    registerImportRoutes(router);
  }
  registerAuditRoutes(router);

  const document = buildOpenApiDocument(router.routes, services.version ?? '0.0.0');
  app.get('/openapi.json', async () => document);

  app.setNotFoundHandler(async (request, reply) => {
    const body: ErrorBody = {
      code: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url.split('?')[0]}`,
    };
    return reply.code(404).send(body);
  });

  app.setErrorHandler(async (err: FastifyError, request, reply) => {
    const { status, body } = errorAnswer(err);
    if (status >= 500) request.log.error({ err }, 'request failed');
    if (status === 401) reply.header('www-authenticate', 'Bearer');
    return reply.code(status).send(body);
  });

  return app;
}

function errorAnswer(err: unknown): { status: number; body: ErrorBody } {
  if (isLifeboatError(err)) {
    const status = httpStatusOf(err.code);
    // Every "not found" looks the same whichever layer said it, so a 404 for a resource of another
    // project cannot be told apart from one for a resource that does not exist.
    if (status === 404) return { status, body: { code: 'NOT_FOUND', message: err.message } };
    if (status >= 500) return { status, body: { code: err.code, message: err.message } };
    return {
      status,
      body: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) },
    };
  }
  // Fastify's own 4xx (malformed JSON, unsupported content type, body too large): safe to show.
  const fastifyError = err as Partial<FastifyError> | null;
  const status = typeof fastifyError?.statusCode === 'number' ? fastifyError.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = status === 404 ? 'NOT_FOUND' : 'BAD_REQUEST';
    return { status, body: { code, message: String(fastifyError?.message ?? 'bad request') } };
  }
  return { status: 500, body: { code: 'INTERNAL', message: 'internal error: see the controller log' } };
}
