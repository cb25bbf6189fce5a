/**
 * Child process of target-crash.test.ts: rewrites one metadata file over and over (putAtomic) or
 * streams an image slowly (createWriter), printing "writing" once under way (past the first S3 part), until it is killed.
 */

import { writeMetadata } from '../src/target/metadata-io.js';
import { openBackend } from '../src/target/open-target.js';
import { patternBytes } from './target-fixture.js';

const [mode, location, key] = process.argv.slice(2);
const backend = await openBackend(location, {
  endpoint: process.env.LIFEBOAT_TEST_S3_ENDPOINT,
  accessKeyId: process.env.LIFEBOAT_TEST_S3_ACCESS_KEY,
  secretAccessKey: process.env.LIFEBOAT_TEST_S3_SECRET_KEY,
  region: process.env.LIFEBOAT_TEST_S3_REGION,
});
const now = new Date().toISOString();
if (mode === 'metadata') {
  for (let i = 0; ; i++) {
    // A large description makes each write take long enough to be killed in the middle of one.
    const write = writeMetadata(backend, 'workload', key, {
      id: 'wl-1',
      name: `generation ${i + 2}`,
      description: patternBytes(`d${i}`, 3 * 1024 * 1024).toString('hex'),
      labels: {},
      vms: [],
      policy: null,
      createdAt: now,
      updatedAt: now,
    });
    if (i === 0) process.stdout.write('writing\n');
    await write;
  }
} else {
  const w = await backend.createWriter(key);
  for (let i = 0; ; i++) {
    await w.write(patternBytes(`img${i}`, 1024 * 1024));
    // Past the first 8 MiB part: on S3 the multipart upload now exists.
    if (i === 9) process.stdout.write('writing\n');
    await new Promise((r) => setTimeout(r, 20));
  }
}
