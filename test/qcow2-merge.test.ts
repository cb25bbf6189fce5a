import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { journalPathFor } from '../src/disk/qcow2/commit-journal.js';
import { type CommitOptions, commitOverlay, forgetCommit } from '../src/disk/qcow2/merge.js';
import { qemuImg, qemuImgInfo, qemuIo, tempDir } from './helpers/qemu-img.js';
import { assertCheckClean, assertSameContent, qemuCheck } from './helpers/sparse-fixtures.js';

interface ChainOptions {
  /** Cluster sizes of s0 (the base) and s1 (the overlay). */
  baseCluster?: number;
  overlayCluster?: number;
  /** Give the base a backing file of its own in another directory. */
  below?: boolean;
  baseCompat?: '0.10' | '1.1';
  baseSize?: string;
  overlaySize?: string;
  compressedBase?: boolean;
  /** Subclusters (extended L2 entries) in the overlay. */
  overlayExtendedL2?: boolean;
  baseRefcountBits?: number;
  /** Put the base one directory deeper (s0/deep/), so its backing name must change when it moves. */
  baseDeeper?: boolean;
}

/**
 * dir/b/base.qcow2 <- dir/s0/d.qcow2 (base) <- dir/s1/d.qcow2 (overlay) <- dir/s2/d.qcow2 (top),
 * every backing name relative, data and zero writes overlapping at unaligned offsets.
 */
async function buildChain(dir: string, o: ChainOptions = {}): Promise<void> {
  for (const d of ['b', 's0', 's1', 's2']) await mkdir(join(dir, d), { recursive: true });
  const baseSize = o.baseSize ?? '64M';
  const baseRel = o.baseDeeper ? 's0/deep/d.qcow2' : 's0/d.qcow2';
  const up = o.baseDeeper ? '../../' : '../';
  if (o.baseDeeper) await mkdir(join(dir, 's0/deep'), { recursive: true });
  const s0 = join(dir, baseRel);
  const refcountBits = o.baseRefcountBits ? `,refcount_bits=${o.baseRefcountBits}` : '';
  const baseOpts = `cluster_size=${o.baseCluster ?? 65536},compat=${o.baseCompat ?? '1.1'}${refcountBits}`;
  if (o.compressedBase) {
    const raw = join(dir, 'b/plain.raw');
    await qemuImg('create', '-f', 'raw', raw, baseSize);
    await qemuIo(raw, ['write -P 0x41 0 12M', 'write -P 0x42 30M 2M'], 'raw');
    await qemuImg('convert', '-c', '-O', 'qcow2', '-o', baseOpts, raw, s0);
  } else if (o.below) {
    const below = join(dir, 'b/base.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', below, baseSize);
    await qemuIo(below, ['write -P 0x01 20M 8M']);
    await qemuImg(
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      baseOpts,
      '-b',
      `${up}b/base.qcow2`,
      '-F',
      'qcow2',
      s0,
    );
  } else {
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', baseOpts, s0, baseSize);
  }
  if (!o.compressedBase) await qemuIo(s0, ['write -P 0x11 0 10M', 'write -P 0x12 30M 3M']);
  const s1 = join(dir, 's1/d.qcow2');
  const s1Opts = `cluster_size=${o.overlayCluster ?? 65536}${o.overlayExtendedL2 ? ',extended_l2=on' : ''}`;
  const s1Args = ['create', '-q', '-f', 'qcow2', '-o', s1Opts];
  s1Args.push('-b', `../${baseRel}`, '-F', 'qcow2', s1);
  if (o.overlaySize) s1Args.push(o.overlaySize);
  await qemuImg(...s1Args);
  const writes = [
    'write -P 0x21 5M 10M',
    'write -z 31M 1M',
    'write -P 0x22 40M 5000',
    'write -z 1000k 8k',
    'write -P 0x23 21M 100k',
    'write -P 0x24 12345k 3k',
  ];
  if (o.overlaySize) writes.push('write -P 0x25 90M 2M');
  await qemuIo(s1, writes);
  const s2 = join(dir, 's2/d.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', '../s1/d.qcow2', '-F', 'qcow2', s2);
  await qemuIo(s2, ['write -P 0x31 7M 1M']);
}

let root: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir: root, cleanup } = await tempDir('lifeboat-qcow2-merge-'));
});
after(() => cleanup());

let n = 0;
/** A new empty directory under the suite's temp dir. */
async function freshDir(): Promise<string> {
  const d = join(root, `case-${n++}`);
  await mkdir(d);
  return d;
}

/** Builds the chain twice; qemu-img commits one, we commit the other; both must read the same. */
async function agreeWithQemu(o: ChainOptions, commit: CommitOptions = {}): Promise<string> {
  const theirs = await freshDir();
  const ours = await freshDir();
  await buildChain(theirs, o);
  await buildChain(ours, o);
  const topBefore = join(ours, 'top-before.raw');
  await qemuImg('convert', '-O', 'raw', join(ours, 's2/d.qcow2'), topBefore);
  await qemuImg('commit', '-q', join(theirs, 's1/d.qcow2'));
  const r = await commitOverlay(join(ours, 's1/d.qcow2'), commit);
  assert.equal(r.alreadyDone, false);
  assert.ok(r.bytesCopied > 0);
  const merged = join(ours, 's1/d.qcow2');
  await assertCheckClean(merged);
  await assertSameContent(join(theirs, o.baseDeeper ? 's0/deep/d.qcow2' : 's0/d.qcow2'), merged);
  await assertSameContent(topBefore, join(ours, 's2/d.qcow2'), 'raw');
  await assertSameContent(join(theirs, 's2/d.qcow2'), join(ours, 's2/d.qcow2'));
  return ours;
}

/** agreeWithQemu for `it`, which wants no value back. */
async function agree(o: ChainOptions, commit?: CommitOptions): Promise<void> {
  await agreeWithQemu(o, commit);
}

describe('commitOverlay (qemu-img commit as the oracle)', () => {
  it('merges an overlay and takes its place; the image above reads the same', async () => {
    const ours = await agreeWithQemu({ below: true });
    const info = await qemuImgInfo(join(ours, 's1/d.qcow2'));
    // The merged image moved from s0/ to s1/: its backing name was rewritten relative to s1/.
    assert.equal(info['backing-filename'], '../b/base.qcow2');
    const { stdout } = await qemuImg('info', '--backing-chain', join(ours, 's2/d.qcow2'));
    assert.match(stdout, /backing file: \.\.\/s1\/d\.qcow2/);
    assert.match(stdout, /backing file: \.\.\/b\/base\.qcow2/);
    await assert.rejects(readFile(join(ours, 's0/d.qcow2')), { code: 'ENOENT' });
  });

  it('merges a 4 KiB-cluster overlay into a 64 KiB-cluster base', () => agree({ overlayCluster: 4096 }));
  it('merges a 64 KiB-cluster overlay into a 4 KiB-cluster base', () =>
    agree({ baseCluster: 4096, below: true }));
  it('merges into a 512 B-cluster base (its refcount table has to grow)', () =>
    agree({ baseCluster: 512, overlayCluster: 4096 }));
  it('merges into a version 2 base (no zero flag)', () => agree({ baseCompat: '0.10', below: true }));
  it('merges over compressed base clusters', () => agree({ compressedBase: true }));
  it('merges into bases with 1-bit and 64-bit refcounts', async () => {
    await agree({ baseRefcountBits: 1, baseCluster: 4096 });
    await agree({ baseRefcountBits: 64, baseCluster: 512 });
  });
  it('merges in many small batches (tables made by one batch, changed by the next)', () =>
    agree(
      { baseCluster: 4096, overlayCluster: 512, baseDeeper: true, below: true },
      { batchBytes: 128 * 1024 },
    ));
  it('merges an overlay with subclusters (extended L2)', () =>
    agree({ overlayExtendedL2: true, baseCluster: 4096, below: true }));
  it('grows the base (and moves its L1 table) when the overlay is larger', () =>
    agree({ baseSize: '34M', overlaySize: '128M', baseCluster: 512 }));

  it('does nothing when run again after completing, forgets, and ignores a stale journal', async () => {
    const d = await freshDir();
    await buildChain(d);
    const overlay = join(d, 's1/d.qcow2');
    await commitOverlay(overlay);
    const again = await commitOverlay(overlay);
    assert.equal(again.alreadyDone, true);
    assert.equal(again.bytesCopied, 0);
    await forgetCommit(overlay);
    await assert.rejects(readFile(journalPathFor(overlay)), { code: 'ENOENT' });
    const top = join(d, 's2/d.qcow2');
    await commitOverlay(top); // the next one down the chain, as retention does
    // A new image at the same path (a different file): the old journal no longer applies.
    await rm(top);
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', '../b/none.qcow2', '-F', 'qcow2', '-u', top, '64M');
    await assert.rejects(commitOverlay(top), { code: 'DISK_NOT_FOUND' });
  });

  it('refuses what it cannot commit with a typed error', async () => {
    const d = await freshDir();
    const lone = join(d, 'lone.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', lone, '1M');
    await assert.rejects(commitOverlay(lone), { code: 'QCOW2_UNSUPPORTED' });
    await assert.rejects(commitOverlay(join(d, 'missing.qcow2')), { code: 'DISK_NOT_FOUND' });
    const rawBase = join(d, 'base.raw');
    await qemuImg('create', '-q', '-f', 'raw', rawBase, '1M');
    const over = join(d, 'over.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', over);
    await assert.rejects(commitOverlay(over), { code: 'QCOW2_UNSUPPORTED' });
    await writeFile(journalPathFor(join(d, 'x.qcow2')), '{not json');
    await assert.rejects(commitOverlay(join(d, 'x.qcow2')), { code: 'QCOW2_MALFORMED' });
  });
});

interface ChildResult {
  signal: NodeJS.Signals | null;
  code: number | null;
  stdout: string;
  stderr: string;
}

function runChild(overlay: string, killAt: number, killAfterMs?: number): Promise<ChildResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/helpers/commit-child.ts', overlay, String(killAt), String(512 * 1024)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => {
      stdout += b;
    });
    let timer: NodeJS.Timeout | undefined;
    child.stderr.on('data', (b) => {
      stderr += b;
      if (killAfterMs !== undefined && timer === undefined && stderr.includes('commit-start\n')) {
        timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Kills a child running the commit at chosen steps (and at random moments), then checks that the
 * image above still reads the same, nothing is corrupt, and a re-run completes the commit.
 */
function crashSuite(
  title: string,
  chain: ChainOptions,
  mustSee: string[],
  killPoints: (steps: string[]) => number[],
): void {
  describe(`commitOverlay crash safety: ${title}`, () => {
    let template: string;
    let topBefore: string;
    let steps: string[];
    let fullRunMs: number;

    before(async () => {
      template = await freshDir();
      await buildChain(template, chain);
      topBefore = join(template, '..', `${title.replace(/\W+/g, '-')}-top-before.raw`);
      await qemuImg('convert', '-O', 'raw', join(template, 's2/d.qcow2'), topBefore);
      const probe = await freshDir();
      await cp(template, probe, { recursive: true });
      const r = await runChild(join(probe, 's1/d.qcow2'), -1);
      fullRunMs = Number(/commit-ms (\d+)/.exec(r.stderr)?.[1]);
      assert.equal(r.code, 0, r.stderr);
      steps = (JSON.parse(r.stdout) as { steps: string[] }).steps;
      for (const step of mustSee) assert.ok(steps.includes(step), `no ${step} step in ${steps.join(',')}`);
    });

    async function crashAndResume(kill: { atStep?: number; afterMs?: number }): Promise<void> {
      const d = await freshDir();
      await cp(template, d, { recursive: true });
      const overlay = join(d, 's1/d.qcow2');
      const top = join(d, 's2/d.qcow2');
      const r = await runChild(overlay, kill.atStep ?? -1, kill.afterMs);
      if (kill.atStep !== undefined) assert.equal(r.signal, 'SIGKILL', `not killed: ${r.stdout}${r.stderr}`);
      // Whatever happened, the image above reads exactly what it read before.
      await assertSameContent(topBefore, top, 'raw');
      for (const img of [overlay, join(d, chain.baseDeeper ? 's0/deep/d.qcow2' : 's0/d.qcow2')]) {
        const c = await qemuCheck(img).catch(() => undefined); // s0 is gone once renamed
        if (c) assert.equal(c.corruptions ?? 0, 0, `${img} corrupt after kill ${JSON.stringify(kill)}`);
      }
      const resumed = await runChild(overlay, -1);
      assert.equal(resumed.code, 0, resumed.stderr);
      await assertSameContent(topBefore, top, 'raw');
      const c = await qemuCheck(overlay);
      assert.equal(c.corruptions ?? 0, 0);
      assert.equal((await qemuImgInfo(overlay))['backing-filename'], '../b/base.qcow2');
      const again = JSON.parse((await runChild(overlay, -1)).stdout) as { alreadyDone: boolean };
      assert.equal(again.alreadyDone, true);
    }

    it('survives kills at chosen steps, and a re-run completes the commit', async () => {
      for (const atStep of killPoints(steps)) await crashAndResume({ atStep });
    });

    it('survives kills at random moments', async () => {
      for (let i = 0; i < 6; i++) await crashAndResume({ afterMs: Math.random() * fullRunMs });
    });
  });
}

/** Step numbers (1-based) of the first occurrence of every kind of step, and of every step from `from` on. */
function everyKindAndTail(steps: string[], from: string): number[] {
  const points = new Set<number>();
  for (const name of new Set(steps)) points.add(steps.indexOf(name) + 1);
  for (let i = steps.lastIndexOf(from) + 1; i <= steps.length; i++) points.add(i);
  return [...points].sort((a, b) => a - b);
}

crashSuite(
  'base one directory deeper, 512 B overlay clusters over 4 KiB base clusters',
  { below: true, baseDeeper: true, baseCluster: 4096, overlayCluster: 512 },
  ['journal-written', 'batch-written', 'l1-synced', 'backing-absolute', 'backing-name-staged', 'renamed'],
  (steps) => everyKindAndTail(steps, 'merged'),
);
crashSuite(
  '512 B base clusters (refcount table relocated)',
  { below: true, baseCluster: 512 },
  ['refcount-table-relocated'],
  (steps) => {
    const at = steps.indexOf('refcount-table-relocated') + 1;
    return [at - 1, at, at + 1];
  },
);
