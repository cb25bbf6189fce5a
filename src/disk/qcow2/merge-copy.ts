import { realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { BufferPool } from '../buffer-pool.js';
import { DiskError } from '../errors.js';
import { LocalFile } from '../io.js';
import { readAheadInOrder } from '../read-ahead.js';
import { ChainReader } from './chain.js';
import { bufferReaderFor } from './chain-buffer-reader.js';
import { type ClusterRun, clustersOfKind, planClusters } from './cluster-plan.js';
import { fileIdentity } from './commit-journal.js';
import { Qcow2Editor } from './editor.js';

/*
 * The copying half of commit (merge.ts has the journal and the rename): every cluster the overlay
 * maps is written into its backing image, in base clusters (the two cluster sizes may differ), with
 * content read through the overlay's chain. Idempotent, so a re-run after a crash just copies again.
 */

export interface MergeCopyOptions {
  /** Data copied between two metadata barriers (default 256 MiB). */
  batchBytes?: number;
  /** Largest read from the overlay chain (default 2 MiB). */
  chunkBytes?: number;
  /** Reads kept in flight (default 8). */
  readAhead?: number;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  onStep?: (step: string) => void;
}

const DEFAULT_BATCH_BYTES = 256 << 20;
const DEFAULT_CHUNK_BYTES = 2 << 20;

export interface MergeOutcome {
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
export async function mergeIntoBase(
  overlay: string,
  options: MergeCopyOptions,
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
  options: MergeCopyOptions,
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
  // Only what the overlay maps is read: never build a map of the whole (possibly huge) base.
  const reader = bufferReaderFor(chain, { perRangeMap: true });
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
