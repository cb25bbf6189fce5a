import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { qemuImg, qemuImgInfo, qemuImgMap, qemuIo, tempDir } from './helpers/qemu-img.js';
import { assertCheckClean, assertSameContent, makeSparseRaw } from './helpers/sparse-fixtures.js';

const run = promisify(execFile);
const M = 1024 * 1024;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function lifeboat(...args: string[]): Promise<CliResult> {
  try {
    const r = await run(process.execPath, ['bin/lifeboat.js', ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

let dir: string;
let cleanup: () => Promise<void>;
let raw: string;
before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-cli-convert-'));
  raw = join(dir, 'disk.raw');
  await makeSparseRaw(raw, 32 * M, [
    [100_000, 2 * M],
    [10 * M + 4096, 3 * M],
    [31 * M, M],
  ]);
});
after(() => cleanup());

describe('lifeboat image convert', () => {
  it('converts raw to a sparse qcow2 with the cluster size asked for', async () => {
    const out = join(dir, 'disk.qcow2');
    const r = await lifeboat('image', 'convert', raw, out, '--cluster-size', '4K');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /disk\.qcow2: qcow2/);
    await assertCheckClean(out);
    await assertSameContent(raw, out, 'raw', 'qcow2');
    assert.equal((await qemuImgInfo(out))['cluster-size'], 4096);
  });

  it('converts a qcow2 chain to raw', async () => {
    const base = join(dir, 'chain-base.qcow2');
    const top = join(dir, 'chain-top.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
    await qemuIo(base, ['write -P 0x61 0 4M']);
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'chain-base.qcow2', '-F', 'qcow2', top);
    await qemuIo(top, ['write -P 0x62 1M 1M', 'write -z 3M 512k']);
    const out = join(dir, 'chain.raw');
    const r = await lifeboat('image', 'convert', '-O', 'raw', top, out);
    assert.equal(r.code, 0, r.stderr);
    await assertSameContent(top, out, 'qcow2', 'raw');
  });

  it('writes an overlay of -B holding only what differs, with a relative backing name', async () => {
    const base = join(dir, 'b-base.qcow2');
    await qemuImg('convert', '-O', 'qcow2', raw, base);
    // The new disk: the base, with one range rewritten and one zeroed.
    const changed = join(dir, 'changed.raw');
    await qemuImg('convert', '-O', 'raw', base, changed);
    const fh = await open(changed, 'r+');
    await fh.write(Buffer.alloc(M, 0x77), 0, M, 11 * M);
    await fh.write(Buffer.alloc(2 * M), 0, 2 * M, 0);
    await fh.close();
    await mkdir(join(dir, 'sub'));
    const out = join(dir, 'sub/overlay.qcow2');
    const r = await lifeboat('image', 'convert', changed, out, '-B', base);
    assert.equal(r.code, 0, r.stderr);
    await assertCheckClean(out);
    await assertSameContent(changed, out, 'raw', 'qcow2');
    const info = await qemuImgInfo(out);
    assert.equal(info['backing-filename'], '../b-base.qcow2');
    const map = await qemuImgMap(out);
    const top = map.filter((m) => m.depth === 0 && (m.data || m.zero));
    const topData = top.filter((m) => m.data).reduce((n, m) => n + m.length, 0);
    const topZero = top.filter((m) => !m.data).reduce((n, m) => n + m.length, 0);
    assert.equal(topData, M, JSON.stringify(top));
    // The first cluster was zero in the base already: left to the backing.
    assert.equal(topZero, 2 * M - 65536, JSON.stringify(top));
  });

  it('refuses bad arguments, missing and malformed files with one clear line', async () => {
    const missing = await lifeboat('image', 'convert', join(dir, 'nope.qcow2'), join(dir, 'x.qcow2'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^lifeboat: DISK_NOT_FOUND: .*nope\.qcow2/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);

    const bad = join(dir, 'bad.qcow2');
    const header = Buffer.alloc(512);
    header.write('QFI\xfb', 0, 'latin1');
    header.writeUInt32BE(3, 4);
    header.writeUInt32BE(40, 20); // cluster_bits out of range
    await writeFile(bad, header);
    const malformed = await lifeboat('image', 'convert', bad, join(dir, 'y.qcow2'));
    assert.equal(malformed.code, 1);
    assert.match(malformed.stderr, /^lifeboat: QCOW2_MALFORMED: /);

    const format = await lifeboat('image', 'convert', raw, join(dir, 'z'), '-O', 'vmdk');
    assert.equal(format.code, 2);
    assert.match(format.stderr, /error: option .* 'vmdk' is invalid/);
    const cluster = await lifeboat('image', 'convert', raw, join(dir, 'z'), '--cluster-size', '1000');
    assert.equal(cluster.code, 2);
    const rawBacking = await lifeboat('image', 'convert', raw, join(dir, 'z'), '-O', 'raw', '-B', raw);
    assert.equal(rawBacking.code, 2);
    assert.match(rawBacking.stderr, /-B needs -O qcow2/);
  });
});

describe('lifeboat image commit', () => {
  it('merges an overlay into its backing image; the image above reads the same', async () => {
    const base = join(dir, 'c-base.qcow2');
    const mid = join(dir, 'c-mid.qcow2');
    const top = join(dir, 'c-top.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
    await qemuIo(base, ['write -P 0x11 0 8M']);
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'c-base.qcow2', '-F', 'qcow2', mid);
    await qemuIo(mid, ['write -P 0x22 4M 6M', 'write -z 1M 1M']);
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'c-mid.qcow2', '-F', 'qcow2', top);
    await qemuIo(top, ['write -P 0x33 0 64k']);
    const before = join(dir, 'c-top-before.raw');
    await qemuImg('convert', '-O', 'raw', top, before);
    const r = await lifeboat('image', 'commit', mid);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /committed into .*c-base\.qcow2/);
    await assertCheckClean(mid);
    await assertSameContent(before, top, 'raw', 'qcow2');
    assert.equal((await qemuImgInfo(mid))['backing-filename'], undefined);
    const again = await lifeboat('image', 'commit', mid);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already committed/);
  });

  it('refuses an image without a backing file', async () => {
    const lone = join(dir, 'lone.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', lone, '1M');
    const r = await lifeboat('image', 'commit', lone);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^lifeboat: QCOW2_UNSUPPORTED: .*no backing file/);
  });
});
