import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { type AuthContext, authenticate } from './auth.js';
import { ApiError } from './errors.js';
import type { ApiServices } from './services.js';

/**
 * What a handler returns to answer 204 No Content on a route whose usual answer has a body (a long
 * poll that found nothing to hand out).
 */
export const NO_CONTENT: unique symbol = Symbol('no content');

/** Who may call a route: anyone, any authenticated user, or admins only. */
export type RouteAccess = 'public' | 'user' | 'admin';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: Method;
  /** Fastify syntax (`/v1/jobs/:id`); published in OpenAPI as `/v1/jobs/{id}`. */
  url: string;
  summary: string;
  tag: string;
  access: RouteAccess;
  params?: P;
  query?: Q;
  body?: B;
  /** Documented answer (the handler's return value) and its status; 204 answers have none. */
  response?: z.ZodType;
  status?: 200 | 201 | 202 | 204;
  handler: (call: RouteCall<z.output<P>, z.output<Q>, z.output<B>>) => Promise<unknown>;
}

/** What a handler gets: validated input, the caller, and the services the API was built with. */
export interface RouteCall<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  /** Undefined only on public routes. */
  auth: AuthContext;
  services: ApiServices;
  request: FastifyRequest;
  reply: FastifyReply;
}

/** One route as the OpenAPI document needs it. */
export interface DocumentedRoute {
  method: Method;
  url: string;
  summary: string;
  tag: string;
  access: RouteAccess;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  response?: z.ZodType;
  status: number;
}

/**
 * Registers routes on Fastify with one fixed order of checks — authenticate (401), authorise the
 * role (403), then validate params, query and body with zod (400 naming the field) — and remembers
 * every route for /openapi.json, so the document cannot drift from what is served.
 */
export class ApiRouter {
  readonly routes: DocumentedRoute[] = [];

  constructor(
    private readonly app: FastifyInstance,
    private readonly services: ApiServices,
  ) {}

  add<
    P extends z.ZodType = z.ZodUndefined,
    Q extends z.ZodType = z.ZodUndefined,
    B extends z.ZodType = z.ZodUndefined,
  >(spec: RouteSpec<P, Q, B>): void {
    const status = spec.status ?? 200;
    this.routes.push({ ...spec, status });
    this.app.route({
      method: spec.method,
      url: spec.url,
      handler: async (request, reply) => {
        let auth = undefined as unknown as AuthContext;
        if (spec.access !== 'public') {
          auth = await authenticate(this.services.catalog, request.headers.authorization);
          if (spec.access === 'admin' && !auth.isAdmin) {
            throw new ApiError('FORBIDDEN', 'this needs the admin role');
          }
        }
        const params = parse('params', spec.params, request.params);
        const query = parse('query', spec.query, request.query);
        const body = parse('body', spec.body, request.body);
        const result = await spec.handler({
          params,
          query,
          body,
          auth,
          services: this.services,
          request,
          reply,
        } as RouteCall<z.output<P>, z.output<Q>, z.output<B>>);
        if (status === 204 || result === NO_CONTENT) return reply.code(204).send();
        reply.code(status);
        return result;
      },
    });
  }
}

function parse(where: 'params' | 'query' | 'body', schema: z.ZodType | undefined, value: unknown): unknown {
  if (!schema) return undefined;
  // A body-less POST arrives as undefined; let an all-optional body schema accept it as {}.
  const input = where === 'body' && (value === undefined || value === null) ? {} : value;
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = [where, ...issue.path.map(String)].join('.');
  throw new ApiError('VALIDATION', `${field}: ${issue.message}`, {
    details: {
      field,
      issues: result.error.issues.map((i) => ({
        field: [where, ...i.path.map(String)].join('.'),
        message: i.message,
      })),
    },
  });
}
