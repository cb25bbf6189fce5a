import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FsBackend } from '../src/target/fs-backend.js';
import { tempDir, writeSampleWorkload } from './target-fixture.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'lifeboat.js');

function lifeboat(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let cleanup: () => Promise<void>;
let root: string;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-target-cli-'));
  root = join(dir, 't');
  await writeSampleWorkload(await FsBackend.open(root, { create: true }));
});
after(() => cleanup());

describe('lifeboat target', () => {
  it('scan prints workloads and snapshots, as text and JSON', async () => {
    const text = await lifeboat('target', 'scan', root);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /workload wl-1 "web app" \(project Project One, owner alice\): 2 snapshot/);
    assert.match(text.stdout, /s2 {2}incremental .* parent s1 {2}chain ok/);
    const json = await lifeboat('target', 'scan', root, '--json');
    assert.equal(JSON.parse(json.stdout).workloads[0].snapshots.length, 2);
  });

  it('verify exits 0 when intact, 1 with the finding when a byte flipped', async () => {
    assert.equal((await lifeboat('target', 'verify', root)).code, 0);
    const path = join(root, 'workloads/wl-1/snapshots/s1/snapshot.json');
    const original = await readFile(path);
    const bad = Buffer.from(original);
    bad[200] ^= 0x02;
    await writeFile(path, bad);
    const r = await lifeboat('target', 'verify', root, '--workload', 'wl-1');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /metadata-invalid: .*snapshot\.json/);
    await writeFile(path, original);
  });

  it('cleanup and errors: one clear line and a non-zero exit', async () => {
    const c = await lifeboat('target', 'cleanup', root, '--older-than', '0');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /0 unfinished snapshot\(s\) removed/);
    const missing = await lifeboat('target', 'scan', join(dir, 'nope'));
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /^lifeboat: TARGET_NOT_FOUND: /);
    const empty = await lifeboat('target', 'scan', dir);
    assert.match(empty.stderr, /TARGET_NOT_INITIALIZED/);
  });
});
