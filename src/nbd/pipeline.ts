import { NbdError } from './errors.js';
import { encodeRequestHeader, NBD_CMD_DISC, NBD_ESHUTDOWN } from './protocol.js';
import { type BlockDescriptor, type InFlightRequest, ReplyParser } from './replies.js';
import type { Transport } from './transport.js';

/** Default for RequestPipeline's replyTimeoutMs: far above any honest server's pause. */
export const DEFAULT_REPLY_TIMEOUT_MS = 120_000;

/** Payload left to receive from which the socket reads straight into the destination. */
const DIRECT_READ_MINIMUM = 64 * 1024;

interface Pending extends InFlightRequest {
  resolve: () => void;
  reject: (err: Error) => void;
}

/** What one request carries besides its header fields. */
export interface RequestBody {
  /** NBD_CMD_WRITE: the bytes to send. */
  payload?: Buffer;
  /** NBD_CMD_READ: where the reply's data goes. */
  dest?: Buffer;
  /** NBD_CMD_BLOCK_STATUS: receives the descriptors per context id. */
  blockStatus?: Map<number, BlockDescriptor[]>;
}

/**
 * The transmission phase of one connection: a bounded number of requests on the wire, each with its
 * own handle, completed by the reply parser in whatever order the server answers. When the
 * connection fails, every pending and waiting request rejects at once with the reason.
 */
export class RequestPipeline {
  private readonly pending = new Map<number, Pending>();
  private readonly parser: ReplyParser;
  private nextHandle = 1;
  private freeSlots: number;
  private slotWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private idleWaiters: (() => void)[] = [];
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private closeRequested = false;
  private corked = false;
  private serverShuttingDown = false;
  /** When the server last showed life while requests waited: a byte received, or going busy. */
  private lastActivity = Date.now();
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly transport: Transport,
    structuredReplies: boolean,
    readonly maxInFlight: number,
    /**
     * A server that leaves requests unanswered this long without sending a byte (a hung QEMU, a
     * host gone without a FIN) fails them with NBD_TIMEOUT instead of stalling the job for ever.
     * 0: wait for ever.
     */
    readonly replyTimeoutMs = DEFAULT_REPLY_TIMEOUT_MS,
  ) {
    this.freeSlots = maxInFlight;
    transport.onActivity(() => {
      this.lastActivity = Date.now();
    });
    if (replyTimeoutMs > 0) {
      this.watchdog = setInterval(() => this.checkStalled(), Math.min(5_000, replyTimeoutMs / 4));
      this.watchdog.unref();
    }
    this.parser = new ReplyParser(
      transport.queue,
      structuredReplies,
      (handle) => this.pending.get(handle),
      (req, err) => this.onReply(req as Pending, err),
    );
    transport.setReceiver(() => this.parser.pump());
    transport.setDirectReads({
      target: () => this.parser.directTarget(DIRECT_READ_MINIMUM),
      filled: (n) => this.parser.directFilled(n),
    });
    transport.onClose((cause) => this.onConnectionLost(cause));
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends one request once a slot is free; resolves when its reply is complete. */
  async submit(
    command: number,
    flags: number,
    offset: number,
    length: number,
    body: RequestBody = {},
  ): Promise<void> {
    this.checkOpen();
    const wait = this.acquireSlot();
    if (wait) await wait;
    if (this.failure) {
      this.releaseSlot();
      throw this.deadError();
    }
    const handle = this.nextHandle++;
    return new Promise<void>((resolve, reject) => {
      const { dest, blockStatus, payload } = body;
      const req: Pending = {
        handle,
        command,
        offset,
        length,
        dest,
        blockStatus,
        covered: 0,
        resolve,
        reject,
      };
      if (this.pending.size === 0) this.lastActivity = Date.now(); // silence counts from here
      this.pending.set(handle, req);
      this.corkForThisTick();
      this.transport.write(encodeRequestHeader(flags, command, handle, offset, length));
      if (payload) this.transport.write(payload);
    });
  }

  /**
   * Refuses new requests, waits for those in flight (at most `timeoutMs`, then they are dropped
   * with NBD_CLOSED), sends NBD_CMD_DISC and closes the connection.
   */
  close(timeoutMs: number): Promise<void> {
    this.closing ??= (async () => {
      this.closeRequested = true;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          const why = `NBD client closed with requests still in flight after ${timeoutMs} ms`;
          this.transport.destroy(new NbdError('NBD_CLOSED', why));
          resolve();
        }, timeoutMs);
      });
      await Promise.race([this.whenIdle(), timedOut]);
      clearTimeout(timer);
      this.failure ??= new NbdError('NBD_CLOSED', 'NBD client is closed');
      if (!this.transport.closed) {
        this.transport.write(encodeRequestHeader(0, NBD_CMD_DISC, 0, 0, 0));
        await this.transport.end();
      }
    })();
    return this.closing;
  }

  /** Drops the connection at once; everything pending rejects with NBD_CLOSED. */
  destroy(): void {
    this.transport.destroy(new NbdError('NBD_CLOSED', 'NBD client destroyed'));
  }

  private checkOpen(): void {
    if (this.serverShuttingDown) {
      throw new NbdError('NBD_SERVER_ERROR', 'server is shutting down (ESHUTDOWN)', {
        details: { errno: NBD_ESHUTDOWN, errnoName: 'ESHUTDOWN' },
      });
    }
    if (this.failure) throw this.deadError();
    if (this.closeRequested) throw new NbdError('NBD_CLOSED', 'NBD client is closing');
  }

  private deadError(): Error {
    const f = this.failure!;
    if (f instanceof NbdError && f.code === 'NBD_CLOSED') return f;
    return new NbdError('NBD_DISCONNECTED', `NBD connection is gone: ${f.message}`, { cause: f });
  }

  private acquireSlot(): Promise<void> | undefined {
    if (this.freeSlots > 0) {
      this.freeSlots--;
      return undefined;
    }
    return new Promise((resolve, reject) => this.slotWaiters.push({ resolve, reject }));
  }

  private releaseSlot(): void {
    const next = this.slotWaiters.shift();
    if (next) next.resolve();
    else this.freeSlots++;
  }

  /** Requests issued in the same tick leave in one write. */
  private corkForThisTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.transport.cork();
    process.nextTick(() => {
      this.corked = false;
      this.transport.uncork();
    });
  }

  private onReply(req: Pending, err?: NbdError): void {
    this.pending.delete(req.handle);
    this.releaseSlot();
    if (err) {
      // The spec asks a client that sees ESHUTDOWN to disconnect softly once its requests are done.
      if (err.details?.errno === NBD_ESHUTDOWN) {
        this.serverShuttingDown = true;
        void this.close(30_000).catch(() => {});
      }
      req.reject(err);
    } else {
      req.resolve();
    }
    this.checkIdle();
  }

  private checkStalled(): void {
    if (this.pending.size === 0) return;
    const silent = Date.now() - this.lastActivity;
    if (silent < this.replyTimeoutMs) return;
    this.transport.destroy(
      new NbdError(
        'NBD_TIMEOUT',
        `NBD server sent nothing for ${(silent / 1000).toFixed(1)} s with ${this.pending.size} request(s) in flight`,
      ),
    );
  }

  private onConnectionLost(cause: Error): void {
    clearInterval(this.watchdog);
    this.failure ??= cause;
    const err = this.failure;
    for (const req of this.pending.values()) req.reject(err);
    this.pending.clear();
    for (const w of this.slotWaiters.splice(0)) w.reject(this.deadError());
    this.checkIdle();
  }

  private whenIdle(): Promise<void> {
    if (this.pending.size === 0 && this.slotWaiters.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private checkIdle(): void {
    if (this.pending.size === 0 && this.slotWaiters.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
