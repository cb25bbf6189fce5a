import { realpath, rename } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { BufferPool } from '../buffer-pool.js';
import { DiskError } from '../errors.js';
import { fsyncDirectory } from '../file-sink.js';
import { LocalFile } from '../io.js';
import { readAheadInOrder } from '../read-ahead.js';
import { ChainReader } from './chain.js';
import { bufferReaderFor } from './chain-buffer-reader.js';
import { type ClusterRun, clustersOfKind, planClusters } from './cluster-plan.js';
import {
  type CommitJournal,
  fileIdentity,
  journalPathFor,
  readJournal,
  removeJournal,
  writeJournal,
} from './commit-journal.js';
import { Qcow2Editor } from './editor.js';
import { readQcow2Header } from './format.js';

/*
 * `commit`: folds an overlay into its backing image (the retention primitive), then puts the merged
 * image in the overlay's place, so every image above the overlay keeps working unchanged.
 *
 * Cost follows the overlay's allocation, not the disk: only clusters the overlay maps are visited.
 * Why it is crash-safe at ANY moment:
 * - The base only changes where the overlay maps something, and there the overlay shadows it:
 *   everything reading through the overlay sees the same bytes whatever state the base is in.
 *   Base clusters are rewritten in place or allocated at its end (editor.ts orders the metadata so
 *   a crash leaks clusters at worst), and their new content is read through the overlay's chain, so
 *   the part of a base cluster the overlay does not cover keeps its old bytes.
 * - Copying is idempotent: a re-run copies the same content again.
 * - The rename is atomic. A relative backing name of the base is first made absolute (valid from
 *   both places), the file renamed, then the name made relative to the new place.
 * - The journal (commit-journal.ts) tells a re-run where it stopped, and makes a re-run after the
 *   end a no-op instead of a second merge.
 */

export type CommitStep =
  | 'journal-written'
  | 'batch-written'
  | 'merged'
  | 'backing-absolute'
  | 'renamed'
  | 'backing-relative'
  | 'done'
  | string; // the editor's barrier steps

export interface CommitOptions {
  /** Data copied between two metadata barriers (default 256 MiB). */
  batchBytes?: number;
  /** Largest read from the overlay chain (default 4 MiB). */
  chunkBytes?: number;
  /** Reads kept in flight (default 8). */
  readAhead?: number;
  /** Bytes of base clusters written so far, out of the total to write. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Called at every step where a crash matters (tests kill the process there). */
  onStep?: (step: CommitStep) => void;
}

export interface CommitResult {
  /** Where the merged image now is: the overlay's path. */
  mergedPath: string;
  /** Where the base was before the commit (it no longer exists there). */
  basePath: string;
  /** Bytes of data written into the base (0 for a no-op re-run). */
  bytesCopied: number;
  /** True when a previous run had already completed this commit. */
  alreadyDone: boolean;
}

const DEFAULT_BATCH_BYTES = 256 << 20;
const DEFAULT_CHUNK_BYTES = 2 << 20;

export async function commitOverlay(overlayPath: string, options: CommitOptions = {}): Promise<CommitResult> {
  const overlay = resolve(overlayPath);
  const journalPath = journalPathFor(overlay);
  const journal = await readJournal(journalPath);
  const overlayId = await fileIdentity(overlay);
  if (overlayId === undefined && journal === undefined) {
    throw new DiskError('DISK_NOT_FOUND', `${overlayPath}: no such file`);
  }

  if (journal) {
    const basePath = resolve(dirname(overlay), journal.base);
    if (overlayId === journal.baseId) {
      // The rename happened: at most the backing name is left to finish.
      if (journal.phase !== 'done') await finishAfterRename(overlay, journal, journalPath, options);
      return { mergedPath: overlay, basePath, bytesCopied: 0, alreadyDone: journal.phase === 'done' };
    }
    if (journal.phase === 'done' || (await fileIdentity(basePath)) !== journal.baseId) {
      // Stale: a different file now sits at the overlay's or the base's path.
      await removeJournal(journalPath);
    } else if (journal.phase === 'rename') {
      await renameIntoPlace(overlay, basePath, journal, journalPath, options);
      return { mergedPath: overlay, basePath, bytesCopied: 0, alreadyDone: false };
    }
  }
  if (overlayId === undefined) throw new DiskError('DISK_NOT_FOUND', `${overlayPath}: no such file`);

  const startJournal = (base: string, baseId: string): CommitJournal => ({
    kind: 'lifeboat-commit-journal',
    version: 1,
    phase: 'merge',
    base,
    baseId,
  });
  const { basePath, baseName, baseId, copied } = await mergeIntoBase(overlay, options, async (base, id) => {
    await writeJournal(journalPath, startJournal(base, id));
    options.onStep?.('journal-written');
  });
  options.onStep?.('merged');
  const j = startJournal(baseName, baseId);
  j.backingRewrite = await planBackingRewrite(basePath, overlay);
  if (j.backingRewrite) {
    // A re-run must know the final name once the base's name has been made absolute. Without a
    // rewrite, a re-run from phase 'merge' merges again (idempotent) and renames: no write needed.
    j.phase = 'rename';
    await writeJournal(journalPath, j);
  }
  await renameIntoPlace(overlay, basePath, j, journalPath, options);
  return { mergedPath: overlay, basePath, bytesCopied: copied, alreadyDone: false };
}

/** What the base's own backing name must become once it sits in the overlay's directory. */
async function planBackingRewrite(
  basePath: string,
  overlay: string,
): Promise<CommitJournal['backingRewrite']> {
  const file = await LocalFile.open(basePath);
  try {
    const name = (await readQcow2Header(file)).backingFileName;
    if (name === undefined || isAbsolute(name)) return undefined;
    const absolute = resolve(dirname(basePath), name);
    const final = relative(dirname(overlay), absolute);
    return final === name ? undefined : { absolute, final };
  } finally {
    await file.close();
  }
}

async function setBackingName(path: string, name: string, options: CommitOptions): Promise<void> {
  const editor = await Qcow2Editor.open(path);
  editor.onStep = options.onStep;
  try {
    if (editor.header.backingFileName !== name) await editor.setBackingName(name);
  } finally {
    await editor.close();
  }
}

async function renameIntoPlace(
  overlay: string,
  basePath: string,
  journal: CommitJournal,
  journalPath: string,
  options: CommitOptions,
): Promise<void> {
  if (journal.backingRewrite) {
    await setBackingName(basePath, journal.backingRewrite.absolute, options);
    options.onStep?.('backing-absolute');
  }
  await rename(basePath, overlay);
  await fsyncDirectory(dirname(overlay));
  if (dirname(basePath) !== dirname(overlay)) await fsyncDirectory(dirname(basePath));
  options.onStep?.('renamed');
  await finishAfterRename(overlay, journal, journalPath, options);
}

async function finishAfterRename(
  overlay: string,
  journal: CommitJournal,
  journalPath: string,
  options: CommitOptions,
): Promise<void> {
  if (journal.backingRewrite) {
    await setBackingName(overlay, journal.backingRewrite.final, options);
    options.onStep?.('backing-relative');
  }
  journal.phase = 'done';
  await writeJournal(journalPath, journal);
  options.onStep?.('done');
}

interface MergeOutcome {
  basePath: string;
  baseName: string;
  baseId: string;
  copied: number;
}

interface WorkItem {
  start: number;
  count: number;
  kind: ClusterRun['kind'];
}

/** Copies every cluster the overlay maps into its backing image (idempotent). */
async function mergeIntoBase(
  overlay: string,
  options: CommitOptions,
  beforeWrite: (baseName: string, baseId: string) => Promise<void>,
): Promise<MergeOutcome> {
  const chain = await ChainReader.open(await LocalFile.open(overlay));
  let editor: Qcow2Editor | undefined;
  try {
    const top = chain.top;
    const baseName = top.backingFileName;
    if (baseName === undefined || chain.layers.length < 2) {
      throw new DiskError('QCOW2_UNSUPPORTED', `${overlay}: has no backing file to commit into`);
    }
    if (chain.layers[1].format !== 'qcow2') {
      throw new DiskError(
        'QCOW2_UNSUPPORTED',
        `${overlay}: committing into a raw backing file is not supported`,
      );
    }
    const basePath = resolve(dirname(overlay), baseName);
    if ((await realpath(basePath)) !== chain.layers[1].file.name) {
      throw new DiskError('DISK_IO', `${overlay}: backing file ${baseName} changed while opening`);
    }
    editor = await Qcow2Editor.open(basePath);
    editor.onStep = options.onStep;
    const baseId = await fileIdentity(basePath);
    if (baseId === undefined) throw new DiskError('DISK_NOT_FOUND', `${basePath}: no such file`);
    await beforeWrite(baseName, baseId);

    const size = top.virtualSize;
    await editor.growTo(size);
    const cs = editor.clusterSize;
    let runs = planClusters(await top.extents(), size, cs, true);
    if (editor.header.version === 2) {
      // No zero flag in v2: zero clusters are written as data (the chain reads zeros there).
      runs = runs.map((r) => ({ ...r, kind: 'data' as const }));
    }
    const total = clustersOfKind(runs, 'data') * cs;
    const copied = await copyRuns(chain, editor, runs, total, options);
    await editor.barrier();
    await editor.sync();
    return { basePath, baseName, baseId, copied };
  } finally {
    await editor?.close();
    await chain.close();
  }
}

function* workItems(runs: readonly ClusterRun[], perItem: number): Generator<WorkItem> {
  for (const r of runs) {
    for (let c = r.start; c < r.start + r.count; c += perItem) {
      yield { start: c, count: Math.min(perItem, r.start + r.count - c), kind: r.kind };
    }
  }
}

async function copyRuns(
  chain: ChainReader,
  editor: Qcow2Editor,
  runs: readonly ClusterRun[],
  total: number,
  options: CommitOptions,
): Promise<number> {
  const cs = editor.clusterSize;
  const size = chain.virtualSize;
  const batchBytes = options.batchBytes ?? DEFAULT_BATCH_BYTES;
  const perItem = Math.max(1, Math.floor((options.chunkBytes ?? DEFAULT_CHUNK_BYTES) / cs));
  let done = 0;
  let sinceBarrier = 0;
  const empty = Buffer.alloc(0);
  const readAhead = options.readAhead ?? 8;
  const pool = new BufferPool(perItem * cs, readAhead + 6);
  const reader = bufferReaderFor(chain);
  await readAheadInOrder(
    workItems(runs, perItem),
    async (item) => {
      if (item.kind === 'zero') return empty;
      const offset = item.start * cs;
      const want = Math.min(item.count * cs, size - offset);
      const buf = pool.acquire();
      try {
        await reader.readInto(buf.subarray(0, want), offset);
      } catch (err) {
        pool.release(buf);
        throw err;
      }
      // A last cluster cut by the virtual size is stored whole.
      buf.fill(0, want, item.count * cs);
      return buf;
    },
    async (item, buf) => {
      await editor.loadL2Range(item.start, item.count);
      if (item.kind === 'zero') {
        markZero(editor, item);
        sinceBarrier += item.count * 8; // metadata only; still bounds the batch
      } else {
        const data = buf.subarray(0, item.count * cs);
        await writeData(editor, item, data, () => pool.release(buf));
        done += data.length;
        sinceBarrier += data.length;
        options.onProgress?.(done, total);
      }
      if (sinceBarrier >= batchBytes) {
        options.onStep?.('batch-written');
        await editor.barrier();
        sinceBarrier = 0;
      }
    },
    readAhead,
  );
  return done;
}

function markZero(editor: Qcow2Editor, item: WorkItem): void {
  for (let c = item.start; c < item.start + item.count; c++) {
    const e = editor.entry(c);
    if (e.kind === 'compressed') {
      editor.freeLater(e.hostOffset, e.compressedSize);
      editor.setEntry(c, 0, true);
    } else {
      // An allocated cluster stays allocated (a preallocated zero cluster): no refcount change.
      editor.setEntry(c, e.kind === 'data' || e.kind === 'zero' ? e.hostOffset : 0, true);
    }
  }
}

/** Points the item's clusters at their base clusters and starts the writes; `release` runs after. */
async function writeData(
  editor: Qcow2Editor,
  item: WorkItem,
  data: Buffer,
  release: () => void,
): Promise<void> {
  const cs = editor.clusterSize;
  const writes: { host: number; from: number; length: number }[] = [];
  for (let i = 0; i < item.count; i++) {
    const c = item.start + i;
    const e = editor.entry(c);
    let host: number;
    if ((e.kind === 'data' || e.kind === 'zero') && e.hostOffset !== 0) {
      host = e.hostOffset; // in place: the overlay shadows this cluster until the commit ends
    } else {
      if (e.kind === 'compressed') editor.freeLater(e.hostOffset, e.compressedSize);
      host = editor.allocate(1);
    }
    editor.setEntry(c, host, false);
    const last = writes[writes.length - 1];
    if (last && last.host + last.length === host && last.from + last.length === i * cs) last.length += cs;
    else writes.push({ host, from: i * cs, length: cs });
  }
  let pending = writes.length;
  const written = () => {
    if (--pending === 0) release();
  };
  for (const w of writes) await editor.writeData(w.host, data.subarray(w.from, w.from + w.length), written);
}
