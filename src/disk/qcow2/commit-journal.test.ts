import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type CommitJournal,
  fileIdentity,
  journalPathFor,
  readJournal,
  removeJournal,
  writeJournal,
} from './commit-journal.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lifeboat-journal-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('commit journal', () => {
  it('round-trips and is removed', async () => {
    const path = journalPathFor(join(dir, 'disk.qcow2'));
    assert.equal(await readJournal(path), undefined);
    const j: CommitJournal = {
      kind: 'lifeboat-commit-journal',
      version: 1,
      phase: 'rename',
      base: '../s0/disk.qcow2',
      baseId: '1:2',
      backingRewrite: { absolute: '/t/b/base.qcow2', final: '../b/base.qcow2' },
    };
    await writeJournal(path, j);
    assert.deepEqual(await readJournal(path), j);
    await removeJournal(path);
    assert.equal(await readJournal(path), undefined);
  });

  it('refuses a journal it does not understand', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, JSON.stringify({ kind: 'lifeboat-commit-journal', version: 2, phase: 'merge' }));
    await assert.rejects(readJournal(path), { code: 'QCOW2_MALFORMED' });
    await writeFile(path, '{');
    await assert.rejects(readJournal(path), { code: 'QCOW2_MALFORMED' });
  });

  it('identifies a file by device, inode and birth time', async () => {
    const a = join(dir, 'a');
    await writeFile(a, 'x');
    assert.match((await fileIdentity(a)) ?? '', /^\d+:\d+:\d+$/);
    assert.equal(await fileIdentity(join(dir, 'missing')), undefined);
  });
});
