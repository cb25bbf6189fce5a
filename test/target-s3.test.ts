import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { TargetBackend } from '../src/target/backend.js';
import { cleanupUnfinished } from '../src/target/cleanup.js';
import { isTargetError } from '../src/target/errors.js';
import { openBackend } from '../src/target/open-target.js';
import { scanTarget } from '../src/target/scan.js';
import { verifyTarget } from '../src/target/verify.js';
import { M, patternBytes, writeSampleWorkload } from './target-fixture.js';
import { newBucket, s3Env } from './target-s3-env.js';

let bucket: string;
let backend: TargetBackend;
before(async () => {
  bucket = await newBucket('s3');
  backend = await openBackend(`s3://${bucket}/some/prefix`, s3Env());
});
after(() => backend?.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('S3 backend on Ceph RGW', () => {
  it('streams a >16 MiB object as a multipart upload and reads ranges of it', async () => {
    const data = patternBytes('big', 21 * M + 777);
    const w = await backend.createWriter('big/object.bin');
    // One scratch buffer, overwritten once each write resolves: the sink must have copied it by then.
    const scratch = Buffer.alloc(3 * M + 5);
    for (let off = 0; off < data.length; off += scratch.length) {
      const n = data.copy(scratch, 0, off, off + scratch.length);
      await w.write(scratch.subarray(0, n));
      scratch.fill(0xee);
    }
    assert.equal(await backend.stat('big/object.bin'), undefined, 'invisible before close');
    await w.close();
    assert.equal((await backend.stat('big/object.bin'))?.size, data.length);
    const f = await backend.openRead('big/object.bin');
    assert.equal(f.size, data.length);
    for (const [o, l] of [
      [0, 100],
      [8 * M - 10, 20],
      [21 * M, 10 * M],
    ]) {
      assert.deepEqual(await f.read(o, l), data.subarray(o, o + l));
    }
    await f.close();
    assert.equal(sha(await backend.readAll('big/object.bin')), sha(data));
  });

  it('an aborted writer leaves nothing behind', async () => {
    const w = await backend.createWriter('aborted.bin');
    await w.write(patternBytes('x', 9 * M));
    await w.abort();
    assert.equal(await backend.stat('aborted.bin'), undefined);
    assert.equal(await backend.removeStaleUploads(0), 0, 'the multipart upload was aborted');
  });

  it('pages through more than 1000 keys', async () => {
    const keys = Array.from({ length: 1050 }, (_, i) => `many/k${String(i).padStart(5, '0')}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < keys.length) await backend.putAtomic(keys[next++], Buffer.from('x'));
      }),
    );
    const seen: string[] = [];
    for await (const o of backend.list('many/')) seen.push(o.key);
    assert.deepEqual(seen.sort(), keys);
    assert.equal(await backend.deletePrefix('many/'), 1050);
  });

  it('wrong credentials give TARGET_AUTH, a missing bucket TARGET_NO_BUCKET, path tricks TARGET_BAD_KEY', async () => {
    await assert.rejects(openBackend(`s3://${bucket}`, { ...s3Env(), secretAccessKey: 'wrong' }), (e) =>
      isTargetError(e, 'TARGET_AUTH'),
    );
    await assert.rejects(openBackend('s3://lb-no-such-bucket-here', s3Env()), (e) =>
      isTargetError(e, 'TARGET_NO_BUCKET'),
    );
    for (const key of ['../escape', '/abs', 'a//b', 'a/./b', 'a/../../b']) {
      await assert.rejects(backend.readAll(key), (e) => isTargetError(e, 'TARGET_BAD_KEY'), key);
    }
  });

  it('holds a workload: write, scan, verify, catch a flipped byte, clean up', async () => {
    const root = await openBackend(`s3://${bucket}/targets/one`, s3Env());
    await writeSampleWorkload(root);
    const scan = await scanTarget(root);
    assert.deepEqual(
      scan.workloads[0].snapshots.map((s) => [s.id, s.chainHealthy]),
      [
        ['s1', true],
        ['s2', true],
      ],
    );
    assert.deepEqual((await verifyTarget(root)).findings, []);

    const key = 'workloads/wl-1/snapshots/s2/vms/vm-1/vda.qcow2';
    const img = await root.readAll(key);
    img[img.length - 1] ^= 0xff;
    await root.putAtomic(key, img);
    const findings = (await verifyTarget(root)).findings;
    assert.equal(findings.length, 1, JSON.stringify(findings));
    assert.equal(findings[0].kind, 'block-mismatch');

    await root.putAtomic('workloads/wl-1/snapshots/s3/vms/vm-1/vda.qcow2', Buffer.alloc(10));
    assert.equal((await scanTarget(root)).workloads[0].unfinished.length, 1);
    assert.equal((await cleanupUnfinished(root, { olderThanMs: 0 })).removed.length, 1);
    assert.equal((await scanTarget(root)).workloads[0].unfinished.length, 0);
    await root.close();
  });

  it('a target copied to another bucket and prefix still scans and verifies', async () => {
    const src = await openBackend(`s3://${bucket}/targets/two`, s3Env());
    await writeSampleWorkload(src);
    const otherBucket = await newBucket('copy');
    const dst = await openBackend(`s3://${otherBucket}/deeper/copy`, s3Env());
    for await (const o of src.list('')) await dst.putAtomic(o.key, await src.readAll(o.key));
    const scan = await scanTarget(dst);
    assert.equal(scan.workloads[0].snapshots.length, 2);
    assert.ok(scan.workloads[0].snapshots.every((s) => s.chainHealthy));
    assert.deepEqual((await verifyTarget(dst)).findings, []);
    await Promise.all([src.close(), dst.close()]);
  });
});
