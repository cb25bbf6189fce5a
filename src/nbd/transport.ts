import net from 'node:net';
import { ByteQueue } from './byte-queue.js';
import { NbdError } from './errors.js';

/** Where an NBD server listens. */
export type NbdEndpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function describeEndpoint(e: NbdEndpoint): string {
  return e.kind === 'unix' ? `unix:${e.path}` : `${e.host}:${e.port}`;
}

/** Size of the one buffer every socket read lands in; replies are parsed out of it in place. */
const READ_BUFFER_SIZE = 256 * 1024;

/**
 * One socket to an NBD server. During the handshake bytes are pulled with `readExact`; afterwards a
 * receiver parses them as they arrive. Reads land in one reused buffer (no allocation per read).
 */
export class Transport {
  readonly queue = new ByteQueue();
  private receiver: (() => void) | undefined;
  private directReads: { target: () => Buffer | undefined; filled: (n: number) => void } | undefined;
  private directTarget: Buffer | undefined;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private closedWith: Error | undefined;
  private closeListeners: ((cause: Error) => void)[] = [];
  private destroyReason: Error | undefined;
  private socketError: Error | undefined;
  private activityListener: (() => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly endpoint: NbdEndpoint,
  ) {}

  static connect(endpoint: NbdEndpoint, timeoutMs = 30_000): Promise<Transport> {
    return new Promise((resolve, reject) => {
      let transport: Transport | undefined;
      // Reads land in a shared buffer, or straight in a reply's destination when the receiver
      // asks for that (see setDirectReads). Node asks for the next buffer after each callback.
      const shared = Buffer.allocUnsafe(READ_BUFFER_SIZE);
      const onread = {
        buffer: () => transport?.nextReadBuffer(shared) ?? shared,
        callback: (n: number, buf: Uint8Array): boolean => {
          transport?.onRead(n, buf, shared);
          return true;
        },
      };
      const socket =
        endpoint.kind === 'unix'
          ? net.connect({ path: endpoint.path, onread })
          : net.connect({ host: endpoint.host, port: endpoint.port, onread });
      transport = new Transport(socket, endpoint);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new NbdError('NBD_TIMEOUT', `connect to ${describeEndpoint(endpoint)} timed out`));
      }, timeoutMs);
      const onConnectError = (err: Error) => {
        clearTimeout(timer);
        const code = (err as NodeJS.ErrnoException).code ?? err.message;
        reject(
          new NbdError('NBD_CONNECT', `cannot connect to ${describeEndpoint(endpoint)}: ${code}`, {
            cause: err,
          }),
        );
      };
      socket.once('error', onConnectError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onConnectError);
        if (endpoint.kind === 'tcp') socket.setNoDelay(true);
        transport.attach();
        resolve(transport);
      });
    });
  }

  private attach(): void {
    this.socket.on('error', (err) => {
      this.socketError ??= err;
    });
    this.socket.on('close', () => {
      const cause =
        this.destroyReason ??
        new NbdError(
          'NBD_DISCONNECTED',
          `connection to ${describeEndpoint(this.endpoint)} closed` +
            (this.socketError
              ? `: ${(this.socketError as NodeJS.ErrnoException).code ?? this.socketError.message}`
              : ''),
          { cause: this.socketError },
        );
      this.closedWith = cause;
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.reject(cause);
      }
      for (const l of this.closeListeners.splice(0)) l(cause);
    });
  }

  private nextReadBuffer(shared: Buffer): Buffer {
    this.directTarget = this.queue.length === 0 ? this.directReads?.target() : undefined;
    return this.directTarget ?? shared;
  }

  private onRead(n: number, buf: Uint8Array, shared: Buffer): void {
    this.activityListener?.();
    const direct = this.directTarget;
    this.directTarget = undefined;
    if (direct && buf === direct) {
      if (this.closedWith || this.destroyReason) return;
      try {
        this.directReads!.filled(n);
      } catch (err) {
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      }
      return;
    }
    this.onBytes(buf === shared ? shared.subarray(0, n) : Buffer.from(buf.buffer, buf.byteOffset, n));
  }

  /**
   * Lets the receiver have the kernel write the next bytes straight into `target()` (a payload's
   * destination) instead of the shared buffer: no copy at all for large reads. `filled(n)` then
   * reports that n bytes landed there.
   */
  setDirectReads(direct: { target: () => Buffer | undefined; filled: (n: number) => void }): void {
    this.directReads = direct;
  }

  private onBytes(chunk: Buffer): void {
    if (this.closedWith || this.destroyReason) return;
    this.queue.push(chunk, true);
    try {
      if (this.receiver) this.receiver();
      else this.serveWaiter();
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
    this.queue.detach();
  }

  private serveWaiter(): void {
    const w = this.waiter;
    if (w && this.queue.length >= w.n) {
      this.waiter = undefined;
      w.resolve(this.queue.takeCopy(w.n));
    }
  }

  /** The next n bytes (handshake phase). Rejects with NBD_DISCONNECTED if the connection ends first. */
  readExact(n: number): Promise<Buffer> {
    if (this.queue.length >= n) return Promise.resolve(this.queue.takeCopy(n));
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  /** `fn` runs whenever bytes arrive (liveness for a reply watchdog). */
  onActivity(fn: () => void): void {
    this.activityListener = fn;
  }

  /** From now on every arrival of bytes calls `fn`, which consumes what it can from `queue`. */
  setReceiver(fn: () => void): void {
    this.receiver = fn;
    if (this.queue.length > 0) {
      try {
        fn();
      } catch (err) {
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  /** Called once when the socket is gone, with the reason (our destroy reason or a disconnect). */
  onClose(listener: (cause: Error) => void): void {
    if (this.closedWith) listener(this.closedWith);
    else this.closeListeners.push(listener);
  }

  get closed(): boolean {
    return this.closedWith !== undefined || this.destroyReason !== undefined;
  }

  /** Queues bytes for sending; false when the kernel buffer is full (wait for `drained`). */
  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  drained(): Promise<void> {
    if (!this.socket.writableNeedDrain || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Ends our side cleanly and waits (bounded) for the server to close. */
  async end(timeoutMs = 5_000): Promise<void> {
    if (this.closedWith) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
      }, timeoutMs);
      this.onClose(() => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  /** Drops the connection at once; `reason` is what every waiter and close listener receives. */
  destroy(reason?: Error): void {
    if (this.closedWith || this.destroyReason) return;
    this.destroyReason =
      reason ??
      new NbdError('NBD_CLOSED', `connection to ${describeEndpoint(this.endpoint)} closed by client`);
    this.socket.destroy();
  }
}
