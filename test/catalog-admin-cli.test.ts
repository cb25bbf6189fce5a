import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { authenticateToken, listAudit } from '../src/catalog/index.js';
import { openScratchCatalog, type ScratchCatalog } from '../src/catalog/scratch.js';

/** `lifeboat admin ...` run as a real process against each catalog database. */

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'bin', 'lifeboat.js');

async function lifeboat(
  db: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'admin', '--db', db, ...args], {
      env: { ...process.env, LIFEBOAT_DB: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`lifeboat admin on ${dialect}`, () => {
    let scratch: ScratchCatalog;
    before(async () => {
      scratch = await openScratchCatalog(dialect);
    });
    after(async () => {
      await scratch?.drop();
    });

    test('bootstraps an admin with a working token, lists and revokes', async () => {
      const url = scratch.url;
      assert.equal((await lifeboat(url, 'project', 'create', 'ops', '--description', 'operations')).code, 0);
      const created = await lifeboat(
        url,
        '--json',
        'user',
        'create',
        'root',
        '--role',
        'admin',
        '--project',
        'ops',
      );
      assert.equal(created.code, 0, created.stderr);
      const user = JSON.parse(created.stdout);
      assert.equal(user.role, 'admin');
      assert.equal(user.project_ids.length, 1);

      const token = await lifeboat(url, 'token', 'create', '--user', 'root', '--name', 'bootstrap');
      assert.equal(token.code, 0, token.stderr);
      const secret = token.stdout.trim();
      assert.match(secret, /^lb_/);
      const auth = await authenticateToken(scratch.db, secret);
      assert.equal(auth?.user.name, 'root');

      const listed = JSON.parse((await lifeboat(url, '--json', 'token', 'list')).stdout);
      assert.equal(listed.length, 1);
      assert.equal(listed[0].token_hash, undefined);
      assert.ok(!JSON.stringify(listed).includes(secret));

      const users = await lifeboat(url, 'user', 'list');
      assert.match(users.stdout, /^root\s+admin\s+\S+\s+ops$/m);

      assert.equal((await lifeboat(url, 'token', 'revoke', listed[0].id)).code, 0);
      assert.equal(await authenticateToken(scratch.db, secret), undefined);

      const actions = (await listAudit(scratch.db, {})).map((e) => `${e.source}:${e.action}`);
      assert.ok(actions.includes('cli:user.create'));
      assert.ok(actions.includes('cli:token.revoke'));
    });

    test('errors are one line and a non-zero exit', async () => {
      const url = scratch.url;
      const lastAdmin = await lifeboat(url, 'user', 'delete', 'root');
      assert.equal(lastAdmin.code, 1);
      assert.match(lastAdmin.stderr, /^lifeboat: CATALOG_IN_USE: .*last admin/);
      const missing = await lifeboat(url, 'project', 'delete', 'nope');
      assert.equal(missing.code, 1);
      assert.equal(missing.stderr, 'lifeboat: CATALOG_NOT_FOUND: project nope not found\n');
      const dup = await lifeboat(url, 'project', 'create', 'ops');
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /^lifeboat: CATALOG_CONFLICT: /);
      const bad = await lifeboat(url, 'user', 'create', '../etc');
      assert.match(bad.stderr, /^lifeboat: CATALOG_INVALID_NAME: /);
      assert.equal((await lifeboat(url, 'project', 'delete', 'ops')).code, 0);
    });
  });
}
