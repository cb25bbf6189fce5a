import { NbdError } from './errors.js';
import {
  CLISERV_MAGIC_HI,
  CLISERV_MAGIC_LO,
  encodeOption,
  encodeString32,
  IHAVEOPT_HI,
  IHAVEOPT_LO,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBDMAGIC_HI,
  NBDMAGIC_LO,
  OPTION_REPLY_ERROR_NAMES,
  OPTION_REPLY_MAGIC_HI,
  OPTION_REPLY_MAGIC_LO,
  readUInt64,
} from './protocol.js';
import type { Transport } from './transport.js';

export interface BlockSizeConstraints {
  minimum: number;
  preferred: number;
  maximum: number;
}

export interface HandshakeOptions {
  exportName: string;
  /** Ask for structured replies (default true). Needed for block status and sparse reads. */
  structuredReplies?: boolean;
  /** Metadata contexts to select, e.g. `base:allocation`, `qemu:dirty-bitmap:NAME`. */
  metaContexts?: readonly string[];
}

/** What the handshake settled for the transmission phase. */
export interface NegotiatedExport {
  exportName: string;
  size: number;
  transmissionFlags: number;
  structuredReplies: boolean;
  /** Selected metadata contexts: name -> id the server gave it. */
  metaContexts: Map<string, number>;
  /** What the server advertised with NBD_INFO_BLOCK_SIZE, if it did. */
  blockSize?: BlockSizeConstraints;
}

/** Option replies are small (strings are at most 4 KiB); anything far larger is a broken server. */
const MAX_OPTION_REPLY = 1 << 20;

interface OptionReply {
  type: number;
  data: Buffer;
}

async function readOptionReply(t: Transport, option: number): Promise<OptionReply> {
  const h = await t.readExact(20);
  if (h.readUInt32BE(0) !== OPTION_REPLY_MAGIC_HI || h.readUInt32BE(4) !== OPTION_REPLY_MAGIC_LO) {
    throw new NbdError('NBD_PROTOCOL', `bad option reply magic 0x${h.subarray(0, 8).toString('hex')}`);
  }
  const repOption = h.readUInt32BE(8);
  const type = h.readUInt32BE(12);
  const length = h.readUInt32BE(16);
  if (repOption !== option) {
    throw new NbdError('NBD_PROTOCOL', `option reply for option ${repOption}, expected ${option}`);
  }
  if (length > MAX_OPTION_REPLY) {
    throw new NbdError('NBD_PROTOCOL', `option reply of ${length} bytes is too large`);
  }
  const data = length > 0 ? await t.readExact(length) : Buffer.alloc(0);
  return { type, data };
}

function replyErrorText(reply: OptionReply): string {
  const name = OPTION_REPLY_ERROR_NAMES[reply.type] ?? `error 0x${reply.type.toString(16)}`;
  const msg = reply.data.toString('utf8');
  return msg ? `${name}: ${msg}` : name;
}

function isError(reply: OptionReply): boolean {
  return (reply.type & NBD_REP_FLAG_ERROR) !== 0;
}

function unexpectedReply(what: string, reply: OptionReply): NbdError {
  return new NbdError('NBD_PROTOCOL', `unexpected reply type ${reply.type} to ${what}`);
}

/** Reads the greeting and sends our flags; returns whether fixed newstyle and no-zeroes are on. */
async function greet(t: Transport): Promise<{ fixed: boolean; noZeroes: boolean }> {
  const magic = await t.readExact(16);
  if (magic.readUInt32BE(0) !== NBDMAGIC_HI || magic.readUInt32BE(4) !== NBDMAGIC_LO) {
    throw new NbdError(
      'NBD_PROTOCOL',
      `not an NBD server (greeting 0x${magic.subarray(0, 8).toString('hex')})`,
    );
  }
  const hi = magic.readUInt32BE(8);
  const lo = magic.readUInt32BE(12);
  if (hi === CLISERV_MAGIC_HI && lo === CLISERV_MAGIC_LO) {
    throw new NbdError('NBD_UNSUPPORTED', 'server uses oldstyle negotiation, which is not supported');
  }
  if (hi !== IHAVEOPT_HI || lo !== IHAVEOPT_LO) {
    throw new NbdError('NBD_PROTOCOL', `bad newstyle magic 0x${magic.subarray(8).toString('hex')}`);
  }
  const flags = (await t.readExact(2)).readUInt16BE(0);
  const fixed = (flags & NBD_FLAG_FIXED_NEWSTYLE) !== 0;
  const noZeroes = (flags & NBD_FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.allocUnsafe(4);
  clientFlags.writeUInt32BE(
    (fixed ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0),
    0,
  );
  t.write(clientFlags);
  return { fixed, noZeroes };
}

async function negotiateStructuredReplies(t: Transport): Promise<boolean> {
  t.write(encodeOption(NBD_OPT_STRUCTURED_REPLY));
  const reply = await readOptionReply(t, NBD_OPT_STRUCTURED_REPLY);
  if (reply.type === NBD_REP_ACK) return true;
  if (isError(reply)) return false; // servers that cannot do it answer with an error; we carry on
  throw unexpectedReply('NBD_OPT_STRUCTURED_REPLY', reply);
}

async function selectMetaContexts(
  t: Transport,
  exportName: string,
  queries: readonly string[],
): Promise<Map<string, number>> {
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  const data = Buffer.concat([encodeString32(exportName), count, ...queries.map(encodeString32)]);
  t.write(encodeOption(NBD_OPT_SET_META_CONTEXT, data));
  const contexts = new Map<string, number>();
  for (;;) {
    const reply = await readOptionReply(t, NBD_OPT_SET_META_CONTEXT);
    if (reply.type === NBD_REP_ACK) return contexts;
    // A server that cannot select contexts leaves us without block status; callers see that later.
    if (isError(reply)) return new Map();
    if (reply.type !== NBD_REP_META_CONTEXT || reply.data.length < 4) {
      throw unexpectedReply('NBD_OPT_SET_META_CONTEXT', reply);
    }
    contexts.set(reply.data.subarray(4).toString('utf8'), reply.data.readUInt32BE(0));
  }
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function parseBlockSize(data: Buffer): BlockSizeConstraints {
  if (data.length !== 14) throw new NbdError('NBD_PROTOCOL', `NBD_INFO_BLOCK_SIZE of length ${data.length}`);
  const bs = {
    minimum: data.readUInt32BE(2),
    preferred: data.readUInt32BE(6),
    maximum: data.readUInt32BE(10),
  };
  if (
    !isPowerOfTwo(bs.minimum) ||
    bs.minimum > 65536 ||
    bs.preferred < bs.minimum ||
    bs.maximum < bs.minimum
  ) {
    throw new NbdError(
      'NBD_PROTOCOL',
      `invalid block size constraints min=${bs.minimum} preferred=${bs.preferred} max=${bs.maximum}`,
    );
  }
  return bs;
}

/** NBD_OPT_GO; undefined when the server does not know the option (caller falls back). */
async function go(
  t: Transport,
  exportName: string,
): Promise<{ size: number; flags: number; blockSize?: BlockSizeConstraints } | undefined> {
  const name = encodeString32(exportName);
  const infos = Buffer.allocUnsafe(4);
  infos.writeUInt16BE(1, 0);
  infos.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 2);
  t.write(encodeOption(NBD_OPT_GO, Buffer.concat([name, infos])));
  let exportInfo: { size: number; flags: number } | undefined;
  let blockSize: BlockSizeConstraints | undefined;
  for (;;) {
    const reply = await readOptionReply(t, NBD_OPT_GO);
    if (reply.type === NBD_REP_INFO) {
      if (reply.data.length < 2) throw new NbdError('NBD_PROTOCOL', 'NBD_REP_INFO without a type');
      const infoType = reply.data.readUInt16BE(0);
      if (infoType === NBD_INFO_EXPORT) {
        if (reply.data.length !== 12)
          throw new NbdError('NBD_PROTOCOL', `NBD_INFO_EXPORT of length ${reply.data.length}`);
        exportInfo = { size: readUInt64(reply.data, 2), flags: reply.data.readUInt16BE(10) };
      } else if (infoType === NBD_INFO_BLOCK_SIZE) {
        blockSize = parseBlockSize(reply.data);
      } // other information types are ignored, as the spec requires
      continue;
    }
    if (reply.type === NBD_REP_ACK) {
      if (!exportInfo) throw new NbdError('NBD_PROTOCOL', 'NBD_OPT_GO succeeded without NBD_INFO_EXPORT');
      return { ...exportInfo, blockSize };
    }
    if (reply.type === NBD_REP_ERR_UNSUP) return undefined;
    // Still in option haggling: the spec wants a soft disconnect (NBD_OPT_ABORT) from here on.
    if (isError(reply)) t.write(encodeOption(NBD_OPT_ABORT));
    if (reply.type === NBD_REP_ERR_UNKNOWN) {
      throw new NbdError(
        'NBD_EXPORT_NOT_FOUND',
        `export '${exportName}' not found (${replyErrorText(reply)})`,
        {
          details: { exportName },
        },
      );
    }
    if (reply.type === NBD_REP_ERR_TLS_REQD) {
      throw new NbdError('NBD_UNSUPPORTED', `server requires TLS for export '${exportName}'`);
    }
    if (isError(reply)) {
      throw new NbdError(
        'NBD_OPTION_REFUSED',
        `NBD_OPT_GO '${exportName}' refused: ${replyErrorText(reply)}`,
      );
    }
    throw unexpectedReply('NBD_OPT_GO', reply);
  }
}

/** The old way to pick an export: no error reply, the server just hangs up on an unknown name. */
async function exportName(
  t: Transport,
  name: string,
  noZeroes: boolean,
): Promise<{ size: number; flags: number }> {
  t.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from(name, 'utf8')));
  let reply: Buffer;
  try {
    reply = await t.readExact(noZeroes ? 10 : 134);
  } catch (err) {
    if (err instanceof NbdError && err.code === 'NBD_DISCONNECTED') {
      throw new NbdError('NBD_EXPORT_NOT_FOUND', `server closed the connection on export '${name}'`, {
        cause: err,
        details: { exportName: name },
      });
    }
    throw err;
  }
  return { size: readUInt64(reply, 0), flags: reply.readUInt16BE(8) };
}

/** Runs the fixed-newstyle handshake up to the transmission phase. */
export async function negotiate(t: Transport, opts: HandshakeOptions): Promise<NegotiatedExport> {
  const { fixed, noZeroes } = await greet(t);
  if (!fixed) {
    const exp = await exportName(t, opts.exportName, noZeroes);
    return {
      exportName: opts.exportName,
      size: exp.size,
      transmissionFlags: exp.flags,
      structuredReplies: false,
      metaContexts: new Map(),
    };
  }
  const structuredReplies = opts.structuredReplies === false ? false : await negotiateStructuredReplies(t);
  const queries = opts.metaContexts ?? [];
  const metaContexts =
    structuredReplies && queries.length > 0
      ? await selectMetaContexts(t, opts.exportName, queries)
      : new Map<string, number>();
  const exp: { size: number; flags: number; blockSize?: BlockSizeConstraints } =
    (await go(t, opts.exportName)) ?? (await exportName(t, opts.exportName, noZeroes));
  return {
    exportName: opts.exportName,
    size: exp.size,
    transmissionFlags: exp.flags,
    structuredReplies,
    metaContexts,
    blockSize: exp.blockSize,
  };
}

export interface ExportListing {
  name: string;
  description: string;
}

/** NBD_OPT_LIST, then NBD_OPT_ABORT: the connection is done afterwards. */
export async function listExports(t: Transport): Promise<ExportListing[]> {
  const { fixed } = await greet(t);
  if (!fixed)
    throw new NbdError('NBD_UNSUPPORTED', 'server does not support fixed newstyle, cannot list exports');
  t.write(encodeOption(NBD_OPT_LIST));
  const out: ExportListing[] = [];
  for (;;) {
    const reply = await readOptionReply(t, NBD_OPT_LIST);
    if (reply.type === NBD_REP_ACK) break;
    if (isError(reply))
      throw new NbdError('NBD_OPTION_REFUSED', `NBD_OPT_LIST refused: ${replyErrorText(reply)}`);
    if (reply.type !== NBD_REP_SERVER || reply.data.length < 4) throw unexpectedReply('NBD_OPT_LIST', reply);
    const nameLength = reply.data.readUInt32BE(0);
    if (nameLength > reply.data.length - 4)
      throw new NbdError('NBD_PROTOCOL', 'NBD_REP_SERVER name overflows');
    out.push({
      name: reply.data.subarray(4, 4 + nameLength).toString('utf8'),
      description: reply.data.subarray(4 + nameLength).toString('utf8'),
    });
  }
  t.write(encodeOption(NBD_OPT_ABORT));
  return out;
}
