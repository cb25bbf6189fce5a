import { NbdError } from './errors.js';
import {
  type BlockSizeConstraints,
  type ExportListing,
  listExports,
  type NegotiatedExport,
  negotiate,
} from './handshake.js';
import { DEFAULT_REPLY_TIMEOUT_MS, RequestPipeline } from './pipeline.js';
import {
  BASE_ALLOCATION,
  DEFAULT_MIN_BLOCK_SIZE,
  DEFAULT_PREFERRED_BLOCK_SIZE,
  MAX_SAFE_PAYLOAD,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.js';
import type { BlockDescriptor } from './replies.js';
import { describeEndpoint, type NbdEndpoint, Transport } from './transport.js';
import { type NbdTarget, parseNbdUri } from './uri.js';

export interface NbdClientOptions {
  /** Export to open when the target is an endpoint; a URI carries its own. Default: '' (default export). */
  exportName?: string;
  /** Metadata contexts to select (default: base:allocation). */
  metaContexts?: readonly string[];
  /** Negotiate structured replies (default true); off only to exercise simple replies. */
  structuredReplies?: boolean;
  /** Requests on the wire at once (default 16). More requests wait their turn. */
  maxInFlight?: number;
  /** Largest read/write sent in one request (default 2 MiB; never above the server maximum or 32 MiB). */
  maxRequestSize?: number;
  /** Bound on connect + handshake (default 30 s). */
  connectTimeoutMs?: number;
  /**
   * Requests in flight and not one byte from the server for this long: the connection is dropped
   * and they fail with NBD_TIMEOUT (default 120 s; 0 = wait for ever).
   */
  replyTimeoutMs?: number;
}

export interface WriteOptions {
  /** Force unit access: the reply comes only once the data is durable. */
  fua?: boolean;
}

export interface WriteZeroesOptions extends WriteOptions {
  /** The server must allocate (not punch a hole). */
  noHole?: boolean;
  /** Fail with ENOTSUP rather than be slow (requires canFastZero). */
  fastZero?: boolean;
}

export type NbdTargetInput = string | NbdTarget | NbdEndpoint;

const DEFAULT_MAX_IN_FLIGHT = 16;
const DEFAULT_MAX_REQUEST = 2 << 20;
/** Commands without payload (zeroes, trim, block status) may describe far more than a read. */
const MAX_EFFECT_LENGTH = 1 << 30;

function toTarget(input: NbdTargetInput, exportName: string | undefined): NbdTarget {
  if (typeof input === 'string') return parseNbdUri(input);
  if ('endpoint' in input) return input;
  return { endpoint: input, exportName: exportName ?? '' };
}

function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new NbdError('NBD_TIMEOUT', `NBD handshake did not finish within ${ms} ms`));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A client for one NBD export over one connection: many requests in flight, replies matched by
 * handle, reads split at the server's size limits. Any failure of the connection rejects every
 * pending request at once, with the reason (NBD_DISCONNECTED, NBD_PROTOCOL).
 */
export class NbdClient {
  readonly size: number;
  readonly exportName: string;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** Selected metadata contexts, name -> id. */
  readonly metaContexts: ReadonlyMap<string, number>;
  /** The block size constraints in force (advertised or protocol defaults). */
  readonly blockSize: BlockSizeConstraints;
  /** Bytes per read/write request. */
  readonly requestSize: number;
  readonly maxInFlight: number;

  private readonly contextNames = new Map<number, string>();
  private readonly pipeline: RequestPipeline;

  private constructor(transport: Transport, negotiated: NegotiatedExport, options: NbdClientOptions) {
    this.size = negotiated.size;
    this.exportName = negotiated.exportName;
    this.transmissionFlags = negotiated.transmissionFlags;
    this.structuredReplies = negotiated.structuredReplies;
    this.metaContexts = negotiated.metaContexts;
    for (const [name, id] of negotiated.metaContexts) this.contextNames.set(id, name);
    const minimum = negotiated.blockSize?.minimum ?? DEFAULT_MIN_BLOCK_SIZE;
    const preferred = Math.max(negotiated.blockSize?.preferred ?? DEFAULT_PREFERRED_BLOCK_SIZE, minimum);
    const maximum = Math.min(negotiated.blockSize?.maximum ?? MAX_SAFE_PAYLOAD, MAX_SAFE_PAYLOAD);
    this.blockSize = { minimum, preferred, maximum };
    const wanted = Math.max(1, Math.min(options.maxRequestSize ?? DEFAULT_MAX_REQUEST, maximum));
    const unit = wanted >= preferred ? preferred : minimum;
    this.requestSize = Math.max(minimum, Math.floor(wanted / unit) * unit);
    this.maxInFlight = Math.max(1, options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
    this.pipeline = new RequestPipeline(
      transport,
      this.structuredReplies,
      this.maxInFlight,
      options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS,
    );
  }

  /** Connects (URI, target or endpoint) and runs the handshake. */
  static async connect(input: NbdTargetInput, options: NbdClientOptions = {}): Promise<NbdClient> {
    const target = toTarget(input, options.exportName);
    const timeoutMs = options.connectTimeoutMs ?? 30_000;
    const transport = await Transport.connect(target.endpoint, timeoutMs);
    try {
      const negotiated = await withTimeout(
        negotiate(transport, {
          exportName: target.exportName,
          structuredReplies: options.structuredReplies,
          metaContexts: options.metaContexts ?? [BASE_ALLOCATION],
        }),
        timeoutMs,
        () =>
          transport.destroy(
            new NbdError('NBD_TIMEOUT', `NBD handshake with ${describeEndpoint(target.endpoint)} timed out`),
          ),
      );
      return new NbdClient(transport, negotiated, options);
    } catch (err) {
      // A refused export was answered with NBD_OPT_ABORT: let that reach the server, then close.
      const soft =
        err instanceof NbdError && ['NBD_EXPORT_NOT_FOUND', 'NBD_OPTION_REFUSED'].includes(err.code);
      if (soft && !transport.closed) await transport.end(1000);
      else transport.destroy(err instanceof Error ? err : undefined);
      throw err;
    }
  }

  /** The exports a server offers (NBD_OPT_LIST); the connection is closed afterwards. */
  static async listExports(input: string | NbdEndpoint, timeoutMs = 30_000): Promise<ExportListing[]> {
    const endpoint = typeof input === 'string' ? parseNbdUri(input).endpoint : input;
    const transport = await Transport.connect(endpoint, timeoutMs);
    try {
      return await withTimeout(listExports(transport), timeoutMs, () => transport.destroy());
    } finally {
      await transport.end(1000);
    }
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0;
  }
  get canFlush(): boolean {
    return (this.transmissionFlags & NBD_FLAG_SEND_FLUSH) !== 0;
  }
  get canFua(): boolean {
    return (this.transmissionFlags & NBD_FLAG_SEND_FUA) !== 0;
  }
  get canTrim(): boolean {
    return (this.transmissionFlags & NBD_FLAG_SEND_TRIM) !== 0;
  }
  get canWriteZeroes(): boolean {
    return (this.transmissionFlags & NBD_FLAG_SEND_WRITE_ZEROES) !== 0;
  }
  get canFastZero(): boolean {
    return (this.transmissionFlags & NBD_FLAG_SEND_FAST_ZERO) !== 0;
  }
  get canMultiConn(): boolean {
    return (this.transmissionFlags & NBD_FLAG_CAN_MULTI_CONN) !== 0;
  }

  hasMetaContext(name: string): boolean {
    return this.metaContexts.has(name);
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.pipeline.inFlight;
  }

  /** Reads exactly `length` bytes at `offset`, as many requests in flight as allowed. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange('read', offset, length);
    if (length === 0) return Buffer.alloc(0);
    // Widen to the minimum block size so every request is aligned; the slack is cut off below.
    const [start, end] = this.alignedSpan(offset, length);
    const buf = Buffer.allocUnsafe(end - start);
    await this.readSpan(start, buf);
    return start === offset && end - start === length
      ? buf
      : buf.subarray(offset - start, offset - start + length);
  }

  /**
   * Reads `dest.length` bytes at `offset` into `dest`: callers that reuse buffers avoid allocating
   * and faulting in fresh memory for every read. Data lands in `dest` straight from the socket.
   */
  async readInto(offset: number, dest: Buffer): Promise<void> {
    this.checkRange('read', offset, dest.length);
    if (dest.length === 0) return;
    const [start, end] = this.alignedSpan(offset, dest.length);
    if (start === offset && end === offset + dest.length) return this.readSpan(start, dest);
    const buf = Buffer.allocUnsafe(end - start);
    await this.readSpan(start, buf);
    buf.copy(dest, 0, offset - start, offset - start + dest.length);
  }

  async write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    this.checkWritable('write', offset, data.length);
    const flags = this.fuaFlag(options);
    const parts: Promise<void>[] = [];
    for (const [at, n] of this.pieces(offset, offset + data.length, this.requestSize)) {
      parts.push(
        this.pipeline.submit(NBD_CMD_WRITE, flags, at, n, {
          payload: data.subarray(at - offset, at - offset + n),
        }),
      );
    }
    await Promise.all(parts);
  }

  async writeZeroes(offset: number, length: number, options: WriteZeroesOptions = {}): Promise<void> {
    this.checkWritable('write zeroes', offset, length);
    if (!this.canWriteZeroes)
      throw new NbdError('NBD_UNSUPPORTED', 'server does not support NBD_CMD_WRITE_ZEROES');
    if (options.fastZero && !this.canFastZero) {
      throw new NbdError('NBD_UNSUPPORTED', 'server does not support NBD_CMD_FLAG_FAST_ZERO');
    }
    const flags =
      this.fuaFlag(options) |
      (options.noHole ? NBD_CMD_FLAG_NO_HOLE : 0) |
      (options.fastZero ? NBD_CMD_FLAG_FAST_ZERO : 0);
    await this.forEachPiece(NBD_CMD_WRITE_ZEROES, flags, offset, length);
  }

  async trim(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    this.checkWritable('trim', offset, length);
    if (!this.canTrim) throw new NbdError('NBD_UNSUPPORTED', 'server does not support NBD_CMD_TRIM');
    await this.forEachPiece(NBD_CMD_TRIM, this.fuaFlag(options), offset, length);
  }

  /** Makes completed writes durable. A server without a write cache (no SEND_FLUSH) needs nothing. */
  async flush(): Promise<void> {
    if (!this.canFlush) return;
    await this.pipeline.submit(NBD_CMD_FLUSH, 0, 0, 0);
  }

  /**
   * One NBD_CMD_BLOCK_STATUS request: descriptors from `offset` for every selected context, by
   * context name. The server may describe less than `length`; callers loop (see readExtents).
   */
  async blockStatus(offset: number, length: number): Promise<Map<string, BlockDescriptor[]>> {
    this.checkRange('block status', offset, length);
    if (this.metaContexts.size === 0) {
      throw new NbdError(
        'NBD_UNSUPPORTED',
        'no metadata context was negotiated; block status is not available',
      );
    }
    const n = Math.min(length, MAX_EFFECT_LENGTH);
    const byId = new Map<number, BlockDescriptor[]>();
    await this.pipeline.submit(NBD_CMD_BLOCK_STATUS, 0, offset, n, { blockStatus: byId });
    const out = new Map<string, BlockDescriptor[]>();
    for (const [id, descriptors] of byId) {
      const name = this.contextNames.get(id);
      if (name !== undefined) out.set(name, descriptors); // ids we never selected are ignored
    }
    return out;
  }

  /**
   * Refuses new requests, waits for those in flight (at most `timeoutMs`, then they are dropped
   * with NBD_CLOSED), sends NBD_CMD_DISC and closes the connection.
   */
  close(timeoutMs = 30_000): Promise<void> {
    return this.pipeline.close(timeoutMs);
  }

  /** Drops the connection at once; everything pending rejects with NBD_CLOSED. */
  destroy(): void {
    this.pipeline.destroy();
  }

  private alignedSpan(offset: number, length: number): [number, number] {
    const min = this.blockSize.minimum;
    return [Math.floor(offset / min) * min, Math.min(Math.ceil((offset + length) / min) * min, this.size)];
  }

  private async readSpan(start: number, buf: Buffer): Promise<void> {
    const parts: Promise<void>[] = [];
    for (const [at, n] of this.pieces(start, start + buf.length, this.requestSize)) {
      parts.push(
        this.pipeline.submit(NBD_CMD_READ, 0, at, n, { dest: buf.subarray(at - start, at - start + n) }),
      );
    }
    await Promise.all(parts);
  }

  private *pieces(start: number, end: number, unit: number): Generator<[number, number]> {
    // Piece boundaries fall on multiples of `unit` (a multiple of the preferred block size) so that
    // every request but the first is aligned as the server prefers.
    let at = start;
    while (at < end) {
      const next = Math.min(end, Math.floor(at / unit) * unit + unit);
      yield [at, next - at];
      at = next;
    }
  }

  private async forEachPiece(command: number, flags: number, offset: number, length: number): Promise<void> {
    const parts: Promise<void>[] = [];
    const unit = Math.floor(MAX_EFFECT_LENGTH / this.blockSize.minimum) * this.blockSize.minimum;
    for (const [at, n] of this.pieces(offset, offset + length, unit))
      parts.push(this.pipeline.submit(command, flags, at, n));
    await Promise.all(parts);
  }

  private fuaFlag(options: WriteOptions): number {
    if (!options.fua) return 0;
    if (!this.canFua) throw new NbdError('NBD_UNSUPPORTED', 'server does not support NBD_CMD_FLAG_FUA');
    return NBD_CMD_FLAG_FUA;
  }

  private checkRange(what: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new NbdError('NBD_RANGE', `${what}: bad range offset=${offset} length=${length}`);
    }
    if (offset + length > this.size) {
      throw new NbdError('NBD_RANGE', `${what} [${offset}, +${length}) beyond export size ${this.size}`, {
        details: { offset, length, size: this.size },
      });
    }
  }

  private checkWritable(what: string, offset: number, length: number): void {
    this.checkRange(what, offset, length);
    if (this.readOnly)
      throw new NbdError('NBD_UNSUPPORTED', `${what}: export '${this.exportName}' is read-only`);
    const min = this.blockSize.minimum;
    const end = offset + length;
    if (offset % min !== 0 || (end % min !== 0 && end !== this.size)) {
      throw new NbdError(
        'NBD_RANGE',
        `${what} [${offset}, +${length}) not aligned to the minimum block size ${min}`,
      );
    }
  }
}
