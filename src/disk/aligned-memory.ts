import { constants, type FileHandle, open } from 'node:fs/promises';

/*
 * Memory that O_DIRECT can write from. Direct I/O needs the buffer address, the file offset and the
 * length aligned to the device's logical block (512 B or 4 KiB). JavaScript cannot see addresses,
 * and Node's large buffers come from malloc (16 bytes past a page boundary), so aligned memory comes
 * from WebAssembly memories, whose backing store V8 maps whole pages at a time: offsets that are
 * multiples of DIRECT_IO_ALIGNMENT inside one are aligned. Anything else, or a filesystem that
 * refuses O_DIRECT, goes through the page cache as before (positional-writer.ts falls back).
 */

/** Alignment asked of buffers, offsets and lengths written directly (covers 512 B and 4 KiB devices). */
export const DIRECT_IO_ALIGNMENT = 4096;

const WASM_PAGE = 65536;

// WebAssembly's types come with lib.dom, which this project does not compile against: the one
// constructor used here is declared by hand.
declare const WebAssembly: {
  Memory: new (descriptor: {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }) => { readonly buffer: ArrayBuffer };
};
/** Backing stores known to start on a page boundary. */
const pageAligned = new WeakSet<ArrayBufferLike>();

/**
 * One page-aligned region cut into `count` buffers of `size` bytes (rounded up to the alignment).
 * `shared` gives SharedArrayBuffer memory (worker threads can hash it in place). Untouched pages
 * cost nothing: the OS maps them on first write.
 */
export function allocAlignedBuffers(size: number, count: number, shared: boolean): Buffer[] {
  const stride = Math.ceil(size / DIRECT_IO_ALIGNMENT) * DIRECT_IO_ALIGNMENT;
  const pages = Math.max(1, Math.ceil((stride * count) / WASM_PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
  pageAligned.add(memory.buffer);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(Buffer.from(memory.buffer, i * stride, size));
  return out;
}

/** True when `buf` written at `position` meets direct I/O's alignment rules. */
export function isDirectIoAligned(buf: Buffer, position: number): boolean {
  return (
    pageAligned.has(buf.buffer) &&
    buf.byteOffset % DIRECT_IO_ALIGNMENT === 0 &&
    buf.length % DIRECT_IO_ALIGNMENT === 0 &&
    position % DIRECT_IO_ALIGNMENT === 0 &&
    buf.length > 0
  );
}

/**
 * A second, O_DIRECT handle on a file already open for writing, or undefined where the filesystem
 * does not support direct I/O (tmpfs, some FUSE and overlay mounts) or LIFEBOAT_DIRECT_IO=0 says no.
 */
export async function openDirectWriter(path: string): Promise<FileHandle | undefined> {
  if (process.env.LIFEBOAT_DIRECT_IO === '0' || constants.O_DIRECT === undefined) return undefined;
  try {
    return await open(path, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    return undefined; // EINVAL (no O_DIRECT here) or anything else: buffered writes still work
  }
}
