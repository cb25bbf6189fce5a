import { rename } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { DiskError } from '../errors.js';
import { fsyncDirectory } from '../file-sink.js';
import { LocalFile } from '../io.js';
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
import { mergeIntoBase } from './merge-copy.js';

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
  // Durable before the rename: after it, only the journal tells a re-run that the image at the
  // overlay's path is the merged one (and not an overlay to merge into ITS backing file). With a
  // backing-name rewrite, phase 'rename' also keeps the final name once the base's is absolute;
  // without one, a re-run from phase 'merge' merges again (idempotent) and renames.
  if (j.backingRewrite) j.phase = 'rename';
  await writeJournal(journalPath, j, true);
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

/**
 * Deletes the journal a completed commit leaves beside the merged image. Only once the caller has
 * recorded that the commit happened (e.g. in the catalog or the target's metadata): without the
 * journal, committing the same path again would merge the merged image into ITS backing file.
 */
export async function forgetCommit(overlayPath: string): Promise<void> {
  await removeJournal(journalPathFor(resolve(overlayPath)));
}
