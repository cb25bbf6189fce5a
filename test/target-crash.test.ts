import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TargetBackend } from '../src/target/backend.js';
import { cleanupUnfinished } from '../src/target/cleanup.js';
import { readMetadata, writeMetadata } from '../src/target/metadata-io.js';
import { openBackend } from '../src/target/open-target.js';
import { Target } from '../src/target/target.js';
import { tempDir } from './target-fixture.js';
import { newBucket, s3Env } from './target-s3-env.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-target-crash-'));
});
after(() => cleanup());

const KEY = 'workloads/wl-1/workload.json';
const IMAGE = 'workloads/wl-1/snapshots/s1/vms/vm-1/vda.qcow2';

/** Runs the child until it reports it is writing, lets it run `ms` more, then SIGKILLs it. */
async function killMidWrite(
  mode: 'metadata' | 'image',
  location: string,
  key: string,
  ms: number,
): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'target-crash-child.ts'), mode, location, key],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('writing')) setTimeout(resolve, ms);
    });
    child.on('exit', (code) => reject(new Error(`child exited early (${code})`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

async function writeFirstGeneration(backend: TargetBackend): Promise<void> {
  const now = new Date().toISOString();
  await writeMetadata(backend, 'workload', KEY, {
    id: 'wl-1',
    name: 'generation 1',
    description: '',
    labels: {},
    vms: [],
    policy: null,
    createdAt: now,
    updatedAt: now,
  });
}

for (const kind of ['fs', 's3'] as const) {
  describe(`a writer killed mid-write (${kind})`, () => {
    let location: string;
    let backend: TargetBackend;
    before(async () => {
      location = kind === 'fs' ? join(dir, 'target') : `s3://${await newBucket('crash')}/t`;
      backend = await openBackend(location, { ...(kind === 's3' ? s3Env() : {}), create: true });
      await Target.init(backend);
      await writeFirstGeneration(backend);
    });
    after(() => backend.close());

    it('leaves the previous metadata (or a complete new one) readable', async () => {
      for (const ms of [0, 30, 120]) {
        await killMidWrite('metadata', location, KEY, ms);
        const doc = await readMetadata(backend, 'workload', KEY); // throws on a torn file
        assert.match(doc!.name, /^generation \d+$/);
      }
    });

    it('leaves no image behind, and cleanup removes the leftovers', async () => {
      await killMidWrite('image', location, IMAGE, 200);
      assert.equal(await backend.stat(IMAGE), undefined);
      const report = await cleanupUnfinished(backend, { olderThanMs: 0 });
      // fs: the temp file goes with its unfinished folder; S3: the incomplete multipart upload is aborted.
      assert.ok(report.removed.length + report.staleUploads >= 1, JSON.stringify(report));
      assert.equal(await backend.removeStaleUploads(0), 0);
      assert.equal((await readMetadata(backend, 'workload', KEY))?.id, 'wl-1');
    });
  });
}
