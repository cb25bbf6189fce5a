import type { ByteQueue } from './byte-queue.js';
import { NbdError } from './errors.js';
import {
  COMMAND_NAMES,
  errnoName,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_READ,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  readUInt64,
  SIMPLE_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
} from './protocol.js';

/** One block status descriptor: `length` bytes with context-defined `flags`. */
export interface BlockDescriptor {
  length: number;
  flags: number;
}

/** A request sent and not yet answered, as the reply parser sees it. */
export interface InFlightRequest {
  readonly handle: number;
  readonly command: number;
  readonly offset: number;
  readonly length: number;
  /** NBD_CMD_READ: receives exactly `length` bytes. */
  readonly dest?: Buffer;
  /** NBD_CMD_READ with structured replies: bytes described by data/hole chunks so far. */
  covered: number;
  /** NBD_CMD_BLOCK_STATUS: descriptors per metadata context id. */
  blockStatus?: Map<number, BlockDescriptor[]>;
  /** The first error chunk of a structured reply; reported once the final chunk arrives. */
  error?: NbdError;
}

/** Non-data payloads are small; block status of a very fragmented range is the largest we expect. */
const MAX_SMALL_PAYLOAD = 64 << 20;

export function serverError(
  req: InFlightRequest,
  errno: number,
  message = '',
  errorOffset?: number,
): NbdError {
  const command = COMMAND_NAMES[req.command] ?? `command ${req.command}`;
  const name = errnoName(errno);
  const at = errorOffset === undefined ? '' : ` at ${errorOffset}`;
  return new NbdError(
    'NBD_SERVER_ERROR',
    `${command} [${req.offset}, +${req.length}) failed${at}: ${name}${message ? ` (${message})` : ''}`,
    {
      details: {
        errno,
        errnoName: name,
        serverMessage: message,
        command,
        offset: req.offset,
        length: req.length,
        errorOffset,
      },
    },
  );
}

function protocolError(message: string): NbdError {
  return new NbdError('NBD_PROTOCOL', message);
}

enum State {
  Header,
  DataOffset,
  Data,
  Payload,
}

/**
 * Parses simple replies and structured reply chunks as bytes arrive, in any interleaving, and
 * completes requests by handle. Read data goes from the socket buffer straight into the request's
 * destination. Throws NBD_PROTOCOL on anything that breaks the stream (the caller then drops the
 * connection); errors that concern one request only complete that request with an error.
 */
export class ReplyParser {
  private state = State.Header;
  private req: InFlightRequest | undefined;
  private chunkFlags = 0;
  private chunkType = 0;
  private chunkLength = 0;
  /** Data state: where the next byte goes in req.dest, how many remain, and whether it is a simple reply. */
  private pos = 0;
  private remaining = 0;
  private simple = false;

  constructor(
    private readonly queue: ByteQueue,
    private readonly structured: boolean,
    private readonly lookup: (handle: number) => InFlightRequest | undefined,
    private readonly complete: (req: InFlightRequest, err?: NbdError) => void,
  ) {}

  /** True between two replies: a disconnect now loses no partially received message. */
  get idle(): boolean {
    return this.state === State.Header && this.queue.length === 0;
  }

  /** Consumes as much of the queue as forms complete messages (or data for the current one). */
  pump(): void {
    const q = this.queue;
    for (;;) {
      switch (this.state) {
        case State.Header: {
          if (q.length < 4) return;
          const magic = q.peekUInt32();
          if (magic === NBD_SIMPLE_REPLY_MAGIC) {
            if (q.length < SIMPLE_REPLY_HEADER_SIZE) return;
            this.onSimpleHeader(q.take(SIMPLE_REPLY_HEADER_SIZE));
          } else if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
            if (!this.structured)
              throw protocolError('structured reply chunk without NBD_OPT_STRUCTURED_REPLY');
            if (q.length < STRUCTURED_REPLY_HEADER_SIZE) return;
            this.onChunkHeader(q.take(STRUCTURED_REPLY_HEADER_SIZE));
          } else {
            throw protocolError(`bad reply magic 0x${magic.toString(16).padStart(8, '0')}`);
          }
          break;
        }
        case State.DataOffset: {
          if (q.length < 8) return;
          this.onDataOffset(readUInt64(q.take(8), 0));
          break;
        }
        case State.Data: {
          const req = this.req!;
          const n = q.copyInto(req.dest!, this.pos, this.remaining);
          this.pos += n;
          this.remaining -= n;
          if (this.remaining > 0) return;
          if (this.simple) this.finish(req);
          else this.endChunk();
          break;
        }
        case State.Payload: {
          if (q.length < this.chunkLength) return;
          this.onPayload(q.take(this.chunkLength));
          this.endChunk();
          break;
        }
      }
    }
  }

  /**
   * Where the next bytes may go directly (the rest of the payload being received), when at least
   * `minimum` bytes of it remain; undefined otherwise.
   */
  directTarget(minimum: number): Buffer | undefined {
    if (this.state !== State.Data || this.remaining < minimum || this.queue.length > 0) return undefined;
    return this.req!.dest!.subarray(this.pos, this.pos + this.remaining);
  }

  /** `n` bytes were written at the position directTarget() returned. */
  directFilled(n: number): void {
    if (this.state !== State.Data || n > this.remaining)
      throw protocolError('direct read outside a data payload');
    this.pos += n;
    this.remaining -= n;
    if (this.remaining > 0) return;
    if (this.simple) this.finish(this.req!);
    else this.endChunk();
  }

  private find(handle: number): InFlightRequest {
    const req = this.lookup(handle);
    if (!req) throw protocolError(`reply for unknown handle ${handle}`);
    return req;
  }

  private onSimpleHeader(h: Buffer): void {
    const errno = h.readUInt32BE(4);
    const req = this.find(readUInt64(h, 8));
    if (errno !== 0) {
      this.finish(req, serverError(req, errno));
      return;
    }
    if (req.command === NBD_CMD_READ) {
      if (this.structured)
        throw protocolError('simple reply with data to NBD_CMD_READ with structured replies on');
      this.req = req;
      this.simple = true;
      this.pos = 0;
      this.remaining = req.length;
      this.state = State.Data;
      return;
    }
    if (req.command === NBD_CMD_BLOCK_STATUS)
      throw protocolError('simple success reply to NBD_CMD_BLOCK_STATUS');
    this.finish(req);
  }

  private onChunkHeader(h: Buffer): void {
    this.chunkFlags = h.readUInt16BE(4);
    this.chunkType = h.readUInt16BE(6);
    this.chunkLength = h.readUInt32BE(16);
    const req = this.find(readUInt64(h, 8));
    this.req = req;
    this.simple = false;
    const type = this.chunkType;
    if (type === NBD_REPLY_TYPE_OFFSET_DATA) {
      if (req.command !== NBD_CMD_READ)
        throw protocolError('NBD_REPLY_TYPE_OFFSET_DATA to a request other than read');
      if (this.chunkLength < 9)
        throw protocolError(`NBD_REPLY_TYPE_OFFSET_DATA of length ${this.chunkLength}`);
      this.state = State.DataOffset;
    } else if (type === NBD_REPLY_TYPE_NONE) {
      if (this.chunkLength !== 0) throw protocolError(`NBD_REPLY_TYPE_NONE of length ${this.chunkLength}`);
      if (!(this.chunkFlags & NBD_REPLY_FLAG_DONE))
        throw protocolError('NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE');
      this.endChunk();
    } else {
      if (this.chunkLength > MAX_SMALL_PAYLOAD)
        throw protocolError(`reply chunk of ${this.chunkLength} bytes (type ${type})`);
      this.state = State.Payload;
    }
  }

  private onDataOffset(offset: number): void {
    const req = this.req!;
    const n = this.chunkLength - 8;
    this.checkContent(req, offset, n, 'data');
    this.pos = offset - req.offset;
    this.remaining = n;
    this.state = State.Data;
  }

  /** Content chunks must lie inside the request and, together, not describe more than it. */
  private checkContent(req: InFlightRequest, offset: number, length: number, what: string): void {
    if (offset < req.offset || offset + length > req.offset + req.length) {
      throw protocolError(
        `${what} chunk [${offset}, +${length}) outside read [${req.offset}, +${req.length})`,
      );
    }
    req.covered += length;
    if (req.covered > req.length)
      throw protocolError(`overlapping content chunks in read of ${req.length} bytes`);
  }

  private onPayload(p: Buffer): void {
    const req = this.req!;
    const type = this.chunkType;
    if (type === NBD_REPLY_TYPE_OFFSET_HOLE) {
      if (req.command !== NBD_CMD_READ)
        throw protocolError('NBD_REPLY_TYPE_OFFSET_HOLE to a request other than read');
      if (p.length !== 12) throw protocolError(`NBD_REPLY_TYPE_OFFSET_HOLE of length ${p.length}`);
      const offset = readUInt64(p, 0);
      const size = p.readUInt32BE(8);
      if (size === 0) throw protocolError('NBD_REPLY_TYPE_OFFSET_HOLE of size 0');
      this.checkContent(req, offset, size, 'hole');
      req.dest!.fill(0, offset - req.offset, offset - req.offset + size);
    } else if (type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      this.onBlockStatus(req, p);
    } else if (type & NBD_REPLY_TYPE_ERROR_BIT) {
      this.onError(req, p);
    } else {
      throw protocolError(`unknown reply chunk type ${type}`);
    }
  }

  private onBlockStatus(req: InFlightRequest, p: Buffer): void {
    if (req.command !== NBD_CMD_BLOCK_STATUS)
      throw protocolError('NBD_REPLY_TYPE_BLOCK_STATUS to a request other than block status');
    if (p.length < 12 || (p.length - 4) % 8 !== 0)
      throw protocolError(`NBD_REPLY_TYPE_BLOCK_STATUS of length ${p.length}`);
    const contextId = p.readUInt32BE(0);
    req.blockStatus ??= new Map();
    if (req.blockStatus.has(contextId))
      throw protocolError(`two block status chunks for context ${contextId}`);
    const descriptors: BlockDescriptor[] = [];
    for (let at = 4; at < p.length; at += 8) {
      const length = p.readUInt32BE(at);
      if (length === 0) throw protocolError('block status descriptor of length 0');
      descriptors.push({ length, flags: p.readUInt32BE(at + 4) });
    }
    req.blockStatus.set(contextId, descriptors);
  }

  private onError(req: InFlightRequest, p: Buffer): void {
    if (p.length < 6) throw protocolError(`error chunk of length ${p.length}`);
    const errno = p.readUInt32BE(0);
    const messageLength = p.readUInt16BE(4);
    if (messageLength > p.length - 6) throw protocolError('error chunk message overflows the chunk');
    const message = p.subarray(6, 6 + messageLength).toString('utf8');
    let errorOffset: number | undefined;
    if (this.chunkType === NBD_REPLY_TYPE_ERROR_OFFSET) {
      if (p.length < 14 + messageLength)
        throw protocolError('NBD_REPLY_TYPE_ERROR_OFFSET without its offset');
      errorOffset = readUInt64(p, 6 + messageLength);
    }
    req.error ??=
      errno === 0
        ? protocolError(`error chunk with error value 0 for handle ${req.handle}`)
        : serverError(req, errno, message, errorOffset);
  }

  private endChunk(): void {
    this.state = State.Header;
    const req = this.req!;
    this.req = undefined;
    if (!(this.chunkFlags & NBD_REPLY_FLAG_DONE)) return;
    if (req.error) {
      this.finish(req, req.error);
    } else if (req.command === NBD_CMD_READ && req.covered !== req.length) {
      this.finish(
        req,
        new NbdError(
          'NBD_SHORT_READ',
          `read [${req.offset}, +${req.length}) answered with only ${req.covered} bytes`,
          {
            details: { offset: req.offset, length: req.length, received: req.covered },
          },
        ),
      );
    } else if (req.command === NBD_CMD_BLOCK_STATUS && !req.blockStatus) {
      this.finish(req, protocolError('block status reply without any NBD_REPLY_TYPE_BLOCK_STATUS chunk'));
    } else {
      this.finish(req);
    }
  }

  private finish(req: InFlightRequest, err?: NbdError): void {
    this.state = State.Header;
    this.req = undefined;
    this.complete(req, err);
  }
}
