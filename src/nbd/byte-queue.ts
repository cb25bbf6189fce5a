/**
 * The bytes received from the server and not parsed yet, as a list of chunks. Payloads are copied
 * straight from these chunks into their destination (one copy); only small headers are gathered.
 *
 * The socket reads into one reused buffer, so chunks pushed here may be views on memory that is
 * overwritten by the next read: `detach()` copies what is left of such views once parsing of the
 * current read is done. Each byte is copied at most once by it.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** How many chunks at the end of `chunks` are views on a reused buffer. */
  private borrowed = 0;
  private _length = 0;

  get length(): number {
    return this._length;
  }

  /** Adds a chunk; `borrowed` = it is a view on memory the caller will reuse. */
  push(chunk: Buffer, borrowed = false): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this._length += chunk.length;
    this.borrowed = borrowed ? this.borrowed + 1 : 0;
  }

  /** Copies the chunks that are still views on a reused buffer. */
  detach(): void {
    const n = Math.min(this.borrowed, this.chunks.length);
    for (let i = this.chunks.length - n; i < this.chunks.length; i++) {
      this.chunks[i] = Buffer.from(this.chunks[i]);
    }
    this.borrowed = 0;
  }

  /** The big-endian uint32 at the front, without consuming it. Needs length >= 4. */
  peekUInt32(): number {
    const first = this.chunks[0];
    if (first.length >= 4) return first.readUInt32BE(0);
    return this.peek(4).readUInt32BE(0);
  }

  /** The first n bytes (n <= length), not consumed; may be a view on the queue's memory. */
  peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - done);
      c.copy(out, done, 0, k);
      done += k;
      if (done === n) break;
    }
    return out;
  }

  /**
   * Removes and returns the first n bytes (n <= length). The result is the caller's own copy when
   * it spans chunks; when it lies in one chunk it is a view, valid until the next `detach()`.
   */
  take(n: number): Buffer {
    const out = this.peek(n);
    this.skip(n);
    return out;
  }

  /** Removes and returns the first n bytes as a buffer the caller owns. */
  takeCopy(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** Drops up to n bytes from the front. */
  skip(n: number): void {
    let left = Math.min(n, this._length);
    this._length -= left;
    while (left > 0) {
      const c = this.chunks[0];
      if (c.length <= left) {
        left -= c.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    if (this.borrowed > this.chunks.length) this.borrowed = this.chunks.length;
  }

  /** Moves up to `max` bytes from the front into dest[at...]; returns how many were moved. */
  copyInto(dest: Buffer, at: number, max: number): number {
    let done = 0;
    while (done < max && this.chunks.length > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length, max - done);
      c.copy(dest, at + done, 0, k);
      done += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this._length -= done;
    if (this.borrowed > this.chunks.length) this.borrowed = this.chunks.length;
    return done;
  }

  clear(): void {
    this.chunks = [];
    this._length = 0;
    this.borrowed = 0;
  }
}
