import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DiskError } from '../errors.js';
import { fsyncDirectory, tempPathBeside } from '../file-sink.js';

/**
 * The small file beside an overlay that makes `commit` resumable. It records which base the overlay
 * is being merged into (by path and by inode, which a rename keeps) and how far the commit got:
 * - merge:  data is being copied into the base (idempotent: a re-run copies again)
 * - rename: the base holds everything; it is being renamed over the overlay
 * - done:   the merged base sits at the overlay's path; a re-run is a no-op
 * It stays after `done` (a re-run must not merge the merged image into ITS backing); whoever
 * records the result may delete it. A journal whose inode no longer matches is stale and ignored.
 */

export type CommitPhase = 'merge' | 'rename' | 'done';

export interface CommitJournal {
  kind: 'lifeboat-commit-journal';
  version: 1;
  phase: CommitPhase;
  /** The base image: as named in the overlay's header (relative to the overlay's directory). */
  base: string;
  /** fileIdentity() of the base file (survives the rename). */
  baseId: string;
  /** When the base has a relative backing file name that must change with the move. */
  backingRewrite?: { absolute: string; final: string };
}

export function journalPathFor(overlayPath: string): string {
  return `${overlayPath}.lifeboat-commit.json`;
}

/**
 * dev:ino:birth-time of a file (all three survive a rename; the birth time tells a new file that
 * reused a freed inode number from the old one), or undefined when it does not exist.
 */
export async function fileIdentity(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.birthtimeNs}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function readJournal(path: string): Promise<CommitJournal | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DiskError('DISK_IO', `${path}: cannot read commit journal`, { cause: err });
  }
  let j: CommitJournal;
  try {
    j = JSON.parse(text) as CommitJournal;
  } catch {
    // Written atomically, so a torn journal means someone else wrote it.
    throw new DiskError(
      'QCOW2_MALFORMED',
      `${path}: commit journal is not valid JSON; remove it to start over`,
    );
  }
  if (
    j?.kind !== 'lifeboat-commit-journal' ||
    j.version !== 1 ||
    !['merge', 'rename', 'done'].includes(j.phase) ||
    typeof j.base !== 'string' ||
    typeof j.baseId !== 'string'
  ) {
    throw new DiskError('QCOW2_MALFORMED', `${path}: not a commit journal this version understands`);
  }
  return j;
}

/**
 * Temp file + rename: the journal is always old or new, never torn. `durable` adds the fsyncs (file,
 * then directory) for the one write that must survive a power loss: the one before the rename.
 * The others may be lost: the previous journal then tells a re-run the same thing, one step back.
 */
export async function writeJournal(path: string, journal: CommitJournal, durable = false): Promise<void> {
  const temp = tempPathBeside(path);
  const fh = await open(temp, 'wx', 0o644);
  try {
    await fh.writeFile(`${JSON.stringify(journal, null, 2)}\n`);
    if (durable) await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  if (durable) await fsyncDirectory(dirname(path));
}

export async function removeJournal(path: string): Promise<void> {
  await rm(path, { force: true });
  await fsyncDirectory(dirname(path));
}
