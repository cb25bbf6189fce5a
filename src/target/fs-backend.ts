import { createHash, randomBytes } from 'node:crypto';
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { openDirectWriter } from '../disk/aligned-memory.js';
import { DiskError } from '../disk/errors.js';
import { type ByteSink, LocalFile, type RandomAccessFile } from '../disk/io.js';
import { PositionalWriter } from '../disk/positional-writer.js';
import type { ObjectInfo, ObjectVersion, TargetBackend } from './backend.js';
import { TargetError } from './errors.js';
import { assertKey, assertPrefix, isSafeId } from './keys.js';

/** Temp and lock files start with a dot: no valid key does, so listings never show them. */
const TEMP_PREFIX = '.lifeboat-tmp-';
const LOCK_PREFIX = '.lifeboat-lock-';
/** A compare-and-swap lock older than this belongs to a dead process (a CAS takes milliseconds). */
const STALE_LOCK_MS = 30_000;

function ioError(what: string, err: unknown): TargetError {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new TargetError('TARGET_NOT_FOUND', `${what}: not found`, { cause: err });
  if (err instanceof DiskError && err.code === 'DISK_NOT_FOUND') {
    return new TargetError('TARGET_NOT_FOUND', `${what}: not found`, { cause: err });
  }
  if (err instanceof TargetError) return err;
  return new TargetError('TARGET_IO', `${what}: ${code ?? (err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}

async function fsyncDir(path: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    await fh.sync();
  } catch {
    // Some filesystems (and NFS clients) refuse fsync on a directory; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

function tempName(path: string): string {
  return join(
    dirname(path),
    `${TEMP_PREFIX}${randomBytes(6).toString('hex')}-${path.slice(path.lastIndexOf(sep) + 1)}`,
  );
}

/** A target in a directory: local disk or an NFS mount. */
export class FsBackend implements TargetBackend {
  private constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  /** Opens an existing directory (TARGET_NOT_FOUND otherwise); `create` makes it first. */
  static async open(root: string, opts: { create?: boolean } = {}): Promise<FsBackend> {
    if (opts.create)
      await mkdir(root, { recursive: true }).catch((err) => Promise.reject(ioError(root, err)));
    const st = await stat(root).catch((err) => Promise.reject(ioError(`target directory ${root}`, err)));
    if (!st.isDirectory()) throw new TargetError('TARGET_NOT_FOUND', `${root} is not a directory`);
    return new FsBackend(root);
  }

  private path(key: string): string {
    assertKey(key);
    return join(this.root, ...key.split('/'));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertPrefix(prefix);
    const walk = async function* (this: FsBackend, dirKey: string): AsyncIterable<ObjectInfo> {
      const dir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw ioError(dir, err);
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (!isSafeId(e.name)) continue; // temp/lock files and foreign clutter
        const key = dirKey === '' ? e.name : `${dirKey}/${e.name}`;
        if (e.isDirectory()) {
          yield* walk.call(this, key);
        } else if (e.isFile()) {
          const st = await stat(join(dir, e.name)).catch(() => undefined);
          if (st) yield { key, size: st.size, lastModified: st.mtime };
        }
      }
    };
    yield* walk.call(this, prefix === '' ? '' : prefix.slice(0, -1));
  }

  async *listFolders(prefix: string): AsyncIterable<string> {
    assertPrefix(prefix);
    const dir = prefix === '' ? this.root : this.path(prefix.slice(0, -1));
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw ioError(dir, err);
    }
    const names = entries.filter((e) => e.isDirectory() && isSafeId(e.name)).map((e) => e.name);
    yield* names.sort();
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const p = this.path(key);
    try {
      const st = await stat(p);
      return st.isFile() ? { key, size: st.size, lastModified: st.mtime } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError(p, err);
    }
  }

  async openRead(key: string): Promise<RandomAccessFile> {
    const p = this.path(key);
    try {
      return await LocalFile.open(p);
    } catch (err) {
      throw ioError(p, err);
    }
  }

  async readAll(key: string): Promise<Buffer> {
    const p = this.path(key);
    return readFile(p).catch((err) => Promise.reject(ioError(p, err)));
  }

  /** Temp file in the same folder + fsync + rename + fsync of the folder. */
  async putAtomic(key: string, bytes: Buffer): Promise<void> {
    const p = this.path(key);
    const tmp = await this.writeTemp(p, bytes);
    try {
      await rename(tmp, p);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw ioError(p, err);
    }
    await fsyncDir(dirname(p));
  }

  private async writeTemp(p: string, bytes: Buffer): Promise<string> {
    await mkdir(dirname(p), { recursive: true }).catch((err) => Promise.reject(ioError(dirname(p), err)));
    const tmp = tempName(p);
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmp, 'wx');
      await fh.writeFile(bytes);
      await fh.sync();
      await fh.close();
      fh = undefined;
      return tmp;
    } catch (err) {
      await fh?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw ioError(p, err);
    }
  }

  async createWriter(key: string): Promise<ByteSink> {
    const p = this.path(key);
    await mkdir(dirname(p), { recursive: true }).catch((err) => Promise.reject(ioError(dirname(p), err)));
    const tmp = tempName(p);
    const fh = await open(tmp, 'wx').catch((err) => Promise.reject(ioError(p, err)));
    return new FsFileSink(fh, tmp, p, await openDirectWriter(tmp));
  }

  async delete(key: string): Promise<void> {
    const p = this.path(key);
    await unlink(p).catch((err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(p, err);
    });
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertPrefix(prefix);
    if (prefix === '') throw new TargetError('TARGET_BAD_KEY', 'refusing to delete the whole target');
    let n = 0;
    for await (const _ of this.list(prefix)) n++;
    const dir = this.path(prefix.slice(0, -1));
    await rm(dir, { recursive: true, force: true }).catch((err) => Promise.reject(ioError(dir, err)));
    return n;
  }

  async readVersioned(key: string): Promise<{ bytes: Buffer; version: ObjectVersion } | undefined> {
    const p = this.path(key);
    try {
      const bytes = await readFile(p);
      return { bytes, version: createHash('sha256').update(bytes).digest('hex') };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError(p, err);
    }
  }

  /** link(2) of a complete temp file: atomic and exclusive on local filesystems and NFS alike. */
  async putIfAbsent(key: string, bytes: Buffer): Promise<boolean> {
    const p = this.path(key);
    const tmp = await this.writeTemp(p, bytes);
    try {
      await link(tmp, p);
      await fsyncDir(dirname(p));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw ioError(p, err);
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  /**
   * A filesystem has no compare-and-swap, so the read-compare-replace runs under a lock file created
   * with O_EXCL. A lock left by a dead process is broken after STALE_LOCK_MS.
   */
  async putIfMatch(key: string, bytes: Buffer, version: ObjectVersion): Promise<boolean> {
    const p = this.path(key);
    const lock = join(dirname(p), `${LOCK_PREFIX}${p.slice(p.lastIndexOf(sep) + 1)}`);
    await this.takeLock(lock);
    try {
      const current = await this.readVersioned(key);
      if (!current || current.version !== version) return false;
      await this.putAtomic(key, bytes);
      return true;
    } finally {
      await unlink(lock).catch(() => {});
    }
  }

  private async takeLock(lock: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const fh = await open(lock, 'wx');
        await fh.close();
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(lock, err);
      }
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > STALE_LOCK_MS) await unlink(lock).catch(() => {});
      if (attempt > 2000) throw new TargetError('TARGET_IO', `${lock}: lock held too long`);
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 20)));
    }
  }

  async removeStaleUploads(olderThanMs: number): Promise<number> {
    let n = 0;
    const walk = async (dir: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name.startsWith(TEMP_PREFIX) || e.name.startsWith(LOCK_PREFIX)) {
          const st = await stat(p).catch(() => undefined);
          const limit = e.name.startsWith(LOCK_PREFIX) ? Math.max(olderThanMs, STALE_LOCK_MS) : olderThanMs;
          if (st && Date.now() - st.mtimeMs >= limit) {
            await unlink(p).catch(() => {});
            n++;
          }
        }
      }
    };
    await walk(this.root);
    return n;
  }

  async close(): Promise<void> {}
}

/**
 * Streams into a temp file; close() makes it durable and renames it into place. Several writes run
 * at once with flush-behind (positional-writer.ts): write() resolves once a write is started, so the
 * caller hashes or reads the next chunk meanwhile; a write error surfaces on a later call or close().
 * Chunks must not be modified once passed (writeBorrowed says when a buffer can be reused).
 */
class FsFileSink implements ByteSink {
  private done = false;
  private position = 0;
  private readonly writer: PositionalWriter;

  constructor(
    private readonly fh: FileHandle,
    private readonly tmp: string,
    private readonly finalPath: string,
    direct?: FileHandle,
  ) {
    this.writer = new PositionalWriter(fh, { direct });
  }

  write(chunk: Buffer): Promise<void> {
    return this.writeBorrowed(chunk);
  }

  async writeBorrowed(chunk: Buffer, release?: () => void): Promise<void> {
    if (this.done) {
      release?.();
      throw new TargetError('TARGET_STATE', `${this.finalPath}: write after close`);
    }
    const at = this.position;
    this.position += chunk.length;
    try {
      await this.writer.write(chunk, at, release);
    } catch (err) {
      throw ioError(this.finalPath, err);
    }
  }

  async close(): Promise<void> {
    if (this.done) throw new TargetError('TARGET_STATE', `${this.finalPath}: closed twice`);
    this.done = true;
    try {
      await this.writer.finish();
      await this.fh.close();
      await rename(this.tmp, this.finalPath);
    } catch (err) {
      await this.writer.settle();
      await this.fh.close().catch(() => {});
      await unlink(this.tmp).catch(() => {});
      throw ioError(this.finalPath, err);
    }
    await fsyncDir(dirname(this.finalPath));
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.writer.settle();
    await this.fh.close().catch(() => {});
    await unlink(this.tmp).catch(() => {});
  }
}
