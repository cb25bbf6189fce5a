import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileSink } from './file-sink.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lifeboat-file-sink-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('FileSink', () => {
  it('appears at its path only when closed, with every chunk in order', async () => {
    const path = join(dir, 'out.bin');
    const sink = await FileSink.create(path, { maxInFlight: 3, flushBehindBytes: 1000 });
    const chunks = Array.from({ length: 20 }, (_, i) => Buffer.alloc(100 + i * 37, i));
    for (const c of chunks) await sink.write(c);
    assert.deepEqual(await readdir(dir).then((n) => n.filter((x) => x === 'out.bin')), []);
    await sink.close();
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    assert.equal(sink.bytesWritten, Buffer.concat(chunks).length);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('lifeboat-tmp')),
      [],
      'temp file left behind',
    );
  });

  it('replaces an existing file atomically and leaves it alone on abort', async () => {
    const path = join(dir, 'keep.bin');
    await writeFile(path, 'old');
    const aborted = await FileSink.create(path);
    await aborted.write(Buffer.from('new'));
    await aborted.abort();
    assert.equal(await readFile(path, 'utf8'), 'old');
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('keep.bin.lifeboat-tmp')),
      [],
    );
    const replaced = await FileSink.create(path);
    await replaced.write(Buffer.from('new'));
    await replaced.close();
    assert.equal(await readFile(path, 'utf8'), 'new');
    await assert.rejects(replaced.write(Buffer.from('x')), { code: 'DISK_IO' });
  });

  it('fails with DISK_NOT_FOUND when the directory does not exist', async () => {
    await assert.rejects(FileSink.create(join(dir, 'no/such/dir/x')), { code: 'DISK_NOT_FOUND' });
  });
});
