import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { qemuImg, qemuIo, tempDir } from './helpers/qemu-img.js';

/** `lifeboat image info|check|map|compare`, run as a real process. */

const BIN = fileURLToPath(new URL('../bin/lifeboat.js', import.meta.url));
let dir: string;
let cleanup: () => Promise<void>;
let base: string;
let top: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function lifeboat(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'image', ...args], { cwd: dir }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-cli-image-'));
  base = join(dir, 'base.qcow2');
  top = join(dir, 'top.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', base, '4M');
  await qemuIo(base, ['write -P 1 0 1M']);
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top, '6M');
  await qemuIo(top, ['write -P 2 512k 64k', 'write -z 2M 64k']);
});
after(async () => {
  await cleanup();
});

describe('lifeboat image', () => {
  test('info --json shows format, sizes and the backing chain', async () => {
    const r = await lifeboat('info', '--json', 'top.qcow2');
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.format, 'qcow2');
    assert.equal(info.version, 3);
    assert.equal(info.virtualSize, 6 * 1024 * 1024);
    assert.equal(info.clusterSize, 65536);
    assert.equal(info.allocatedBytes, 65536);
    assert.equal(info.backingChain.length, 1);
    assert.equal(info.backingChain[0].backingName, 'base.qcow2');
    assert.equal(info.backingChain[0].allocatedBytes, 1024 * 1024);
    const text = await lifeboat('info', 'top.qcow2');
    assert.match(text.stdout, /virtual size: 6 MiB/);
  });

  test('map --json: the merged extents of the chain with depths', async () => {
    const r = await lifeboat('map', '--json', top);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [
      { start: 0, length: 524288, kind: 'data', depth: 1 },
      { start: 524288, length: 65536, kind: 'data', depth: 0 },
      { start: 589824, length: 458752, kind: 'data', depth: 1 },
      { start: 1048576, length: 1048576, kind: 'unallocated', depth: 1 },
      { start: 2097152, length: 65536, kind: 'zero', depth: 0 },
      { start: 2162688, length: 2031616, kind: 'unallocated', depth: 1 },
      { start: 4194304, length: 2097152, kind: 'unallocated', depth: 0 },
    ]);
  });

  test('check: exit 0 when clean, 2 when corrupt', async () => {
    const clean = await lifeboat('check', top);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /No errors were found/);

    const corrupt = join(dir, 'corrupt.qcow2');
    const bytes = await readFile(top);
    bytes.writeUInt32BE(0, 0x38); // refcount_table_clusters = 0
    await writeFile(corrupt, bytes);
    const bad = await lifeboat('check', '--json', corrupt);
    assert.equal(bad.code, 2);
    assert.equal(JSON.parse(bad.stdout).consistent, false);
  });

  test('compare: 0 identical, 1 different with the offset, 2 on error', async () => {
    const flat = join(dir, 'flat.raw');
    await qemuImg('convert', '-O', 'raw', top, flat);
    const same = await lifeboat('compare', top, flat);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /Images are identical/);

    const other = join(dir, 'other.qcow2');
    await qemuImg('convert', '-O', 'qcow2', top, other);
    await qemuIo(other, ['write -P 9 3000007 1']);
    const diff = await lifeboat('compare', top, other);
    assert.equal(diff.code, 1);
    assert.match(diff.stdout, /Content mismatch at offset 3000007!/);

    const missing = await lifeboat('compare', top, 'no-such-image');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^lifeboat: DISK_NOT_FOUND: .*no-such-image/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
  });

  test('compare: images of different sizes compare the extra part against zeros', async () => {
    const small = join(dir, 'small.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', small, '4M');
    await qemuIo(small, ['write -P 1 0 1M', 'write -P 2 512k 64k']);
    const r = await lifeboat('compare', small, top);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /size mismatch/);
    await qemuIo(top, ['write -P 3 5M 4k']);
    const r2 = await lifeboat('compare', small, top);
    assert.equal(r2.code, 1);
    assert.match(r2.stdout, /offset 5242880/);
  });

  test('bad input: one clear line on stderr and a non-zero exit', async () => {
    const notQcow = join(dir, 'garbage.qcow2');
    await writeFile(notQcow, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(100, 0xff)]));
    for (const args of [['info', 'missing.qcow2'], ['map', '--json', notQcow], ['info']]) {
      const r = await lifeboat(...args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.ok(r.stderr.trim().length > 0, args.join(' '));
    }
    const r = await lifeboat('info', notQcow);
    assert.match(r.stderr, /^lifeboat: QCOW2_MALFORMED: /);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
