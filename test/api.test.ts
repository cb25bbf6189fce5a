import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../src/api/server.js';
import {
  addProjectMember,
  createJob,
  createProject,
  createToken,
  createUser,
  createWorkload,
  openCatalog,
  registerHost,
} from '../src/catalog/index.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';

/** The API served for real on 127.0.0.1, over each catalog database, called with fetch. */

interface Answer {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: test assertions walk arbitrary JSON answers
  body: any;
}

const RANDOM_UUID = '5f0c2a47-3d7e-4b8a-9c1d-2e3f4a5b6c7d';

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`REST API on ${dialect}`, () => {
    let scratch: ScratchCatalog;
    let app: FastifyInstance;
    let base: string;
    const ids: Record<string, string> = {};
    const tokens: Record<string, string> = {};

    const call = async (
      method: string,
      path: string,
      options: { token?: string; body?: unknown; rawBody?: string } = {},
    ): Promise<Answer> => {
      const headers: Record<string, string> = {};
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      let body: string | undefined;
      if (options.rawBody !== undefined || options.body !== undefined) {
        headers['content-type'] = 'application/json';
        body = options.rawBody ?? JSON.stringify(options.body);
      }
      const res = await fetch(base + path, { method, headers, body });
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
    };

    const expectError = (answer: Answer, status: number, code: string) => {
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.equal(answer.body.code, code);
      assert.equal(typeof answer.body.message, 'string');
      assert.ok(!JSON.stringify(answer.body).includes('    at '), 'no stack trace in answers');
    };

    before(async () => {
      scratch = await openScratchCatalog(dialect);
      const db = scratch.db;
      const admin = await createUser(db, { name: 'root', role: 'admin' });
      const alice = await createUser(db, { name: 'alice', role: 'member' });
      const bob = await createUser(db, { name: 'bob', role: 'member' });
      const p1 = await createProject(db, { name: 'blue' });
      const p2 = await createProject(db, { name: 'green' });
      await addProjectMember(db, p1.id, alice.id);
      await addProjectMember(db, p2.id, bob.id);
      Object.assign(ids, { admin: admin.id, alice: alice.id, bob: bob.id, p1: p1.id, p2: p2.id });
      tokens.admin = (await createToken(db, { userId: admin.id, name: 'boot' })).secret;
      tokens.alice = (await createToken(db, { userId: alice.id, name: 'cli' })).secret;
      const bobToken = await createToken(db, { userId: bob.id, name: 'cli' });
      tokens.bob = bobToken.secret;
      ids.bobToken = bobToken.token.id;
      ids.job1 = (await createJob(db, { kind: 'snapshot', projectId: p1.id })).id;
      ids.job2 = (await createJob(db, { kind: 'snapshot', projectId: p2.id })).id;
      ids.systemJob = (await createJob(db, { kind: 'retention' })).id;
      await registerHost(db, { name: 'kvm-1', address: '10.0.0.1:7443', version: '0.1.0' });

      app = await buildApi({ catalog: db, version: 'test' });
      base = await app.listen({ host: '127.0.0.1', port: 0 });
    });

    after(async () => {
      await app?.close();
      await scratch?.drop();
    });

    test('health needs no token', async () => {
      const res = await call('GET', '/v1/health');
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { status: 'ok', version: 'test', catalog: dialect });
    });

    test('missing, malformed, unknown and revoked tokens are 401', async () => {
      const none = await call('GET', '/v1/whoami');
      expectError(none, 401, 'UNAUTHORIZED');
      assert.equal(none.headers.get('www-authenticate'), 'Bearer');
      const basic = await fetch(`${base}/v1/whoami`, { headers: { authorization: 'Basic cm9vdDpyb290' } });
      assert.equal(basic.status, 401);
      expectError(await call('GET', '/v1/whoami', { token: 'lb_not-a-real-token' }), 401, 'UNAUTHORIZED');

      const created = await call('POST', '/v1/tokens', {
        token: tokens.alice,
        body: { name: 'short-lived' },
      });
      assert.equal(created.status, 201);
      assert.equal((await call('GET', '/v1/whoami', { token: created.body.token })).status, 200);
      const revoked = await call('DELETE', `/v1/tokens/${created.body.id}`, { token: tokens.alice });
      assert.equal(revoked.status, 200);
      assert.ok(revoked.body.revoked_at);
      expectError(await call('GET', '/v1/whoami', { token: created.body.token }), 401, 'UNAUTHORIZED');
    });

    test('whoami names the user, projects and token, never the token hash', async () => {
      const res = await call('GET', '/v1/whoami', { token: tokens.alice });
      assert.equal(res.status, 200);
      assert.equal(res.body.user.name, 'alice');
      assert.deepEqual(res.body.user.project_ids, [ids.p1]);
      assert.equal(res.body.token.name, 'cli');
      assert.equal(res.body.token.token_hash, undefined);
      assert.ok(tokens.alice.startsWith(res.body.token.token_prefix));
    });

    test('admins manage projects, users and tokens; everything is audited', async () => {
      const project = await call('POST', '/v1/projects', {
        token: tokens.admin,
        body: { name: 'red', description: 'new' },
      });
      assert.equal(project.status, 201);
      expectError(
        await call('POST', '/v1/projects', { token: tokens.admin, body: { name: 'red' } }),
        409,
        'CATALOG_CONFLICT',
      );

      const user = await call('POST', '/v1/users', {
        token: tokens.admin,
        body: { name: 'carol', email: 'carol@example.org', project_ids: [project.body.id] },
      });
      assert.equal(user.status, 201, JSON.stringify(user.body));
      assert.equal(user.body.role, 'member');
      assert.deepEqual(user.body.project_ids, [project.body.id]);

      const token = await call('POST', '/v1/tokens', {
        token: tokens.admin,
        body: { name: 'for-carol', user_id: user.body.id, expires_in_days: 30 },
      });
      assert.equal(token.status, 201);
      assert.match(token.body.token, /^lb_/);
      assert.ok(token.body.expires_at);
      const carol = await call('GET', '/v1/projects', { token: token.body.token });
      assert.deepEqual(
        carol.body.items.map((p: { name: string }) => p.name),
        ['red'],
      );
      const list = await call('GET', `/v1/tokens?user_id=${user.body.id}`, { token: tokens.admin });
      assert.equal(list.body.items.length, 1);
      assert.ok(!JSON.stringify(list.body).includes(token.body.token), 'listing never shows the token');

      const members = await call('GET', `/v1/projects/${project.body.id}/members`, { token: tokens.admin });
      assert.deepEqual(
        members.body.items.map((m: { name: string }) => m.name),
        ['carol'],
      );
      assert.equal(
        (
          await call('DELETE', `/v1/projects/${project.body.id}/members/${user.body.id}`, {
            token: tokens.admin,
          })
        ).status,
        204,
      );
      assert.equal((await call('DELETE', `/v1/users/${user.body.id}`, { token: tokens.admin })).status, 204);
      expectError(await call('GET', '/v1/whoami', { token: token.body.token }), 401, 'UNAUTHORIZED');
      assert.equal(
        (await call('DELETE', `/v1/projects/${project.body.id}`, { token: tokens.admin })).status,
        204,
      );

      const audit = await call('GET', '/v1/audit?limit=20', { token: tokens.admin });
      assert.equal(audit.status, 200);
      const actions = audit.body.items.map((e: { action: string }) => e.action);
      for (const a of ['project.create', 'user.create', 'token.create', 'user.delete', 'project.delete']) {
        assert.ok(actions.includes(a), `audit has ${a}`);
      }
      assert.ok(
        audit.body.items.every(
          (e: { actor_name: string }) => e.actor_name === 'root' || e.actor_name === 'alice',
        ),
      );
    });

    test('a member sees only their projects; everything else is 404 or 403', async () => {
      const projects = await call('GET', '/v1/projects', { token: tokens.alice });
      assert.deepEqual(
        projects.body.items.map((p: { id: string }) => p.id),
        [ids.p1],
      );
      const other = await call('GET', `/v1/projects/${ids.p2}`, { token: tokens.alice });
      const missing = await call('GET', `/v1/projects/${RANDOM_UUID}`, { token: tokens.alice });
      expectError(other, 404, 'NOT_FOUND');
      expectError(missing, 404, 'NOT_FOUND');
      assert.equal(other.body.message.replace(ids.p2, 'X'), missing.body.message.replace(RANDOM_UUID, 'X'));

      const jobs = await call('GET', '/v1/jobs', { token: tokens.alice });
      assert.deepEqual(
        jobs.body.items.map((j: { id: string }) => j.id),
        [ids.job1],
      );
      assert.equal((await call('GET', `/v1/jobs/${ids.job1}`, { token: tokens.alice })).status, 200);
      expectError(await call('GET', `/v1/jobs/${ids.job2}`, { token: tokens.alice }), 404, 'NOT_FOUND');
      expectError(await call('GET', `/v1/jobs/${ids.systemJob}`, { token: tokens.alice }), 404, 'NOT_FOUND');
      expectError(
        await call('GET', `/v1/jobs?project_id=${ids.p2}`, { token: tokens.alice }),
        404,
        'NOT_FOUND',
      );
      expectError(
        await call('POST', `/v1/jobs/${ids.job2}/cancel`, { token: tokens.alice }),
        404,
        'NOT_FOUND',
      );
      expectError(
        await call('GET', `/v1/projects/${ids.p2}/members`, { token: tokens.alice }),
        404,
        'NOT_FOUND',
      );
      expectError(await call('GET', `/v1/users/${ids.bob}`, { token: tokens.alice }), 404, 'NOT_FOUND');
      expectError(
        await call('GET', `/v1/tokens?user_id=${ids.bob}`, { token: tokens.alice }),
        404,
        'NOT_FOUND',
      );
      expectError(
        await call('DELETE', `/v1/tokens/${ids.bobToken}`, { token: tokens.alice }),
        404,
        'NOT_FOUND',
      );
      assert.equal(
        (await call('GET', '/v1/whoami', { token: tokens.bob })).status,
        200,
        "bob's token survived",
      );

      expectError(
        await call('POST', '/v1/projects', { token: tokens.alice, body: { name: 'mine' } }),
        403,
        'FORBIDDEN',
      );
      expectError(await call('GET', '/v1/users', { token: tokens.alice }), 403, 'FORBIDDEN');
      expectError(await call('GET', '/v1/audit', { token: tokens.alice }), 403, 'FORBIDDEN');
      expectError(
        await call('POST', '/v1/tokens', { token: tokens.alice, body: { name: 'x', user_id: ids.bob } }),
        403,
        'FORBIDDEN',
      );

      const cancelled = await call('POST', `/v1/jobs/${ids.job1}/cancel`, { token: tokens.alice });
      assert.equal(cancelled.status, 202);
      assert.equal(cancelled.body.status, 'cancelled');

      const admin = await call('GET', '/v1/jobs', { token: tokens.admin });
      assert.equal(admin.body.items.length, 3, 'admins see every job');
      const hosts = await call('GET', '/v1/hosts', { token: tokens.alice });
      assert.deepEqual(
        hosts.body.items.map((h: { name: string }) => h.name),
        ['kvm-1'],
      );
    });

    test('bad input is 400 with {code, message} naming the field', async () => {
      const empty = await call('POST', '/v1/projects', { token: tokens.admin, body: { name: '' } });
      expectError(empty, 400, 'VALIDATION');
      assert.equal(empty.body.details.field, 'body.name');
      assert.match(empty.body.message, /^body\.name: /);

      const extra = await call('POST', '/v1/projects', {
        token: tokens.admin,
        body: { name: 'ok', colour: 'red' },
      });
      expectError(extra, 400, 'VALIDATION');

      const badId = await call('GET', '/v1/jobs/not-a-uuid', { token: tokens.admin });
      expectError(badId, 400, 'VALIDATION');
      assert.equal(badId.body.details.field, 'params.id');

      const badLimit = await call('GET', '/v1/jobs?limit=0', { token: tokens.admin });
      expectError(badLimit, 400, 'VALIDATION');
      assert.equal(badLimit.body.details.field, 'query.limit');

      const badRole = await call('POST', '/v1/users', {
        token: tokens.admin,
        body: { name: 'dave', role: 'root' },
      });
      expectError(badRole, 400, 'VALIDATION');
      assert.equal(badRole.body.details.field, 'body.role');

      expectError(
        await call('POST', '/v1/projects', { token: tokens.admin, rawBody: '{"name":' }),
        400,
        'BAD_REQUEST',
      );
      expectError(await call('GET', `/v1/jobs/${RANDOM_UUID}`, { token: tokens.admin }), 404, 'NOT_FOUND');
      expectError(await call('GET', '/v1/nothing-here'), 404, 'NOT_FOUND');
    });

    test('conflicts are 409: project in use, last admin', async () => {
      await createWorkload(scratch.db, { projectId: ids.p2, name: 'app' });
      expectError(
        await call('DELETE', `/v1/projects/${ids.p2}`, { token: tokens.admin }),
        409,
        'CATALOG_IN_USE',
      );
      expectError(await call('DELETE', `/v1/users/${ids.admin}`, { token: tokens.admin }), 409, 'CONFLICT');
      expectError(
        await call('PATCH', `/v1/users/${ids.admin}`, { token: tokens.admin, body: { role: 'member' } }),
        409,
        'CONFLICT',
      );
    });

    test('/openapi.json documents every route', async () => {
      const res = await call('GET', '/openapi.json');
      assert.equal(res.status, 200);
      assert.equal(res.body.openapi, '3.1.0');
      const expected: [string, string][] = [
        ['/v1/health', 'get'],
        ['/v1/whoami', 'get'],
        ['/v1/projects', 'get'],
        ['/v1/projects', 'post'],
        ['/v1/projects/{id}', 'get'],
        ['/v1/projects/{id}', 'patch'],
        ['/v1/projects/{id}', 'delete'],
        ['/v1/projects/{id}/members/{userId}', 'put'],
        ['/v1/users', 'get'],
        ['/v1/users', 'post'],
        ['/v1/users/{id}', 'delete'],
        ['/v1/tokens', 'get'],
        ['/v1/tokens', 'post'],
        ['/v1/tokens/{id}', 'delete'],
        ['/v1/hosts', 'get'],
        ['/v1/jobs', 'get'],
        ['/v1/jobs/{id}', 'get'],
        ['/v1/jobs/{id}/cancel', 'post'],
        ['/v1/audit', 'get'],
      ];
      for (const [path, method] of expected) {
        assert.ok(res.body.paths[path]?.[method], `${method.toUpperCase()} ${path} is documented`);
      }
      const createProject = res.body.paths['/v1/projects'].post;
      assert.deepEqual(createProject.requestBody.content['application/json'].schema.required, ['name']);
      assert.ok(createProject.responses['201'].content['application/json'].schema.properties.id);
      const getJob = res.body.paths['/v1/jobs/{id}'].get;
      assert.deepEqual(
        getJob.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`),
        ['path:id'],
      );
    });

    test('a failure inside is a 500 that leaks nothing', async () => {
      const broken = await openCatalog(scratch.url);
      await broken.destroy();
      const brokenApp = await buildApi({ catalog: broken });
      try {
        const res = await brokenApp.inject({ method: 'GET', url: '/v1/health' });
        assert.equal(res.statusCode, 500);
        assert.deepEqual(res.json(), { code: 'INTERNAL', message: 'internal error: see the controller log' });
      } finally {
        await brokenApp.close();
      }
    });
  });
}
