import { z } from 'zod';
import type { DocumentedRoute } from './router.js';
import { errorOut } from './schemas.js';

type JsonSchema = Record<string, unknown>;

/** zod → JSON Schema (2020-12, which OpenAPI 3.1 uses as is), without the per-schema $schema key. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

const ERROR_RESPONSES: Record<string, string> = {
  '400': 'invalid input: `details.field` names the offending field',
  '401': 'missing, unknown, revoked or expired bearer token',
  '403': 'the caller’s role does not allow this',
  '404': 'no such resource, or one the caller may not see',
  '409': 'conflicts with the current state (name taken, still in use...)',
};

/** Path, query and body parameters of a route, from its zod schemas. */
function parametersOf(route: DocumentedRoute): JsonSchema[] {
  const out: JsonSchema[] = [];
  for (const [location, schema] of [
    ['path', route.params],
    ['query', route.query],
  ] as const) {
    if (!schema) continue;
    const js = jsonSchema(schema, 'input') as {
      properties?: Record<string, JsonSchema>;
      required?: string[];
    };
    for (const [name, prop] of Object.entries(js.properties ?? {})) {
      out.push({
        name,
        in: location,
        required: location === 'path' || (js.required ?? []).includes(name),
        schema: prop,
        ...(typeof prop.description === 'string' ? { description: prop.description } : {}),
      });
    }
  }
  return out;
}

/** The OpenAPI 3.1 document of every route registered through ApiRouter. */
export function buildOpenApiDocument(routes: readonly DocumentedRoute[], version: string): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const errorSchema = jsonSchema(errorOut, 'output');
  for (const route of routes) {
    const path = route.url.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
    const responses: Record<string, JsonSchema> = {
      [String(route.status)]:
        route.status === 204 || !route.response
          ? { description: 'done' }
          : {
              description: 'success',
              content: { 'application/json': { schema: jsonSchema(route.response, 'output') } },
            },
    };
    for (const [status, description] of Object.entries(ERROR_RESPONSES)) {
      if (route.access === 'public' && (status === '401' || status === '403')) continue;
      if (route.access === 'user' && status === '403' && route.method === 'GET') continue;
      responses[status] = { description, content: { 'application/json': { schema: errorSchema } } };
    }
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = {
      summary: route.summary,
      tags: [route.tag],
      operationId: `${route.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      ...(route.access === 'public' ? { security: [] } : {}),
      ...(route.access === 'admin' ? { description: 'Admins only.' } : {}),
      parameters: parametersOf(route),
      ...(route.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(route.body, 'input') } },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Lifeboat API',
      version,
      description: 'Agentless backup and disaster recovery for KVM clouds. Errors are `{code, message}`.',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
