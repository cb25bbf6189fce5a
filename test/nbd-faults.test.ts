/**
 * NbdClient against a scripted fake server (a net.Server in this file) that breaks the protocol on
 * purpose: every malformed handshake or reply must end in a typed error, never a hang or a crash.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NbdClient, type NbdError, readAllocationExtents, readIncrementalExtents } from '../src/nbd/index.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  readUInt64,
  writeUInt64,
} from '../src/nbd/protocol.js';
import { makeTempDir, rejectsWith, removeDir } from './nbd-servers.js';

const EXPORT_SIZE = 1 << 20;

interface FakeRequest {
  flags: number;
  type: number;
  handle: Buffer;
  offset: number;
  length: number;
}

interface Script {
  /** Replaces the greeting (default: fixed newstyle, no zeroes). */
  greeting?: (s: net.Socket) => void;
  /** Answers an option; return false to get the default answer. */
  option?: (s: net.Socket, option: number, data: Buffer) => boolean;
  /** Answers a transmission request (all of them, unless it returns false for the default). */
  request?: (s: net.Socket, req: FakeRequest) => boolean | undefined;
  /** Extra NBD_REP_INFO payloads sent before the export info on NBD_OPT_GO. */
  goInfos?: Buffer[];
}

function optReply(s: net.Socket, option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(0x0003e889, 0);
  h.writeUInt32BE(0x045565a9, 4);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type >>> 0, 12);
  h.writeUInt32BE(data.length, 16);
  s.write(Buffer.concat([h, data]));
}

function chunkHeader(handle: Buffer, type: number, flags: number, length: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  handle.copy(h, 8);
  h.writeUInt32BE(length >>> 0, 16);
  return h;
}

function simpleReply(handle: Buffer, errno = 0): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(errno, 4);
  handle.copy(h, 8);
  return h;
}

/** A correct reply to a read: one data chunk of zeros then done. */
function goodRead(s: net.Socket, req: FakeRequest, fill = 0): void {
  const off = Buffer.alloc(8);
  writeUInt64(off, req.offset, 0);
  s.write(
    Buffer.concat([
      chunkHeader(req.handle, NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_FLAG_DONE, 8 + req.length),
      off,
      Buffer.alloc(req.length, fill),
    ]),
  );
}

function blockStatusReply(req: FakeRequest, descriptors: [number, number][]): Buffer {
  const p = Buffer.alloc(4 + 8 * descriptors.length);
  p.writeUInt32BE(1, 0);
  descriptors.forEach(([length, flags], i) => {
    p.writeUInt32BE(length, 4 + 8 * i);
    p.writeUInt32BE(flags, 8 + 8 * i);
  });
  return Buffer.concat([
    chunkHeader(req.handle, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_FLAG_DONE, p.length),
    p,
  ]);
}

/** Speaks the server side of the handshake and transmission, with the script's deviations. */
function serve(s: net.Socket, script: Script): void {
  s.on('error', () => {});
  if (script.greeting) script.greeting(s);
  else {
    const g = Buffer.alloc(18);
    g.write('NBDMAGICIHAVEOPT', 0, 'latin1');
    g.writeUInt16BE(3, 16);
    s.write(g);
  }
  let buf = Buffer.alloc(0);
  let phase: 'flags' | 'options' | 'transmission' = 'flags';
  s.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (phase === 'flags') {
        if (buf.length < 4) return;
        buf = buf.subarray(4);
        phase = 'options';
      } else if (phase === 'options') {
        if (buf.length < 16) return;
        const len = buf.readUInt32BE(12);
        if (buf.length < 16 + len) return;
        const option = buf.readUInt32BE(8);
        const data = buf.subarray(16, 16 + len);
        buf = buf.subarray(16 + len);
        if (script.option?.(s, option, data)) continue;
        if (option === NBD_OPT_STRUCTURED_REPLY) optReply(s, option, NBD_REP_ACK);
        else if (option === NBD_OPT_SET_META_CONTEXT) {
          const ctx = Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from('base:allocation')]);
          optReply(s, option, NBD_REP_META_CONTEXT, ctx);
          optReply(s, option, NBD_REP_ACK);
        } else if (option === NBD_OPT_GO) {
          for (const info of script.goInfos ?? []) optReply(s, option, NBD_REP_INFO, info);
          const info = Buffer.alloc(12);
          writeUInt64(info, EXPORT_SIZE, 2);
          info.writeUInt16BE(1 | 4, 10);
          optReply(s, option, NBD_REP_INFO, info);
          optReply(s, option, NBD_REP_ACK);
          phase = 'transmission';
        } else if (option === NBD_OPT_ABORT) {
          optReply(s, option, NBD_REP_ACK);
          s.end();
          return;
        } else optReply(s, option, 0x80000001);
      } else {
        if (buf.length < 28) return;
        const req: FakeRequest = {
          flags: buf.readUInt16BE(4),
          type: buf.readUInt16BE(6),
          handle: Buffer.from(buf.subarray(8, 16)),
          offset: readUInt64(buf, 16),
          length: buf.readUInt32BE(24),
        };
        buf = buf.subarray(28 + (req.type === 1 ? req.length : 0));
        if (req.type === NBD_CMD_DISC) {
          s.end();
          return;
        }
        if (script.request?.(s, req) === false || !script.request) {
          if (req.type === NBD_CMD_READ) goodRead(s, req);
          else if (req.type === NBD_CMD_BLOCK_STATUS) s.write(blockStatusReply(req, [[req.length, 0]]));
          else s.write(simpleReply(req.handle));
        }
      }
    }
  });
}

describe('NbdClient against a misbehaving server', () => {
  let dir: string;
  let server: net.Server;
  let script: Script = {};
  let socketPath: string;
  const sockets = new Set<net.Socket>();
  const connect = (s: Script, options: Parameters<typeof NbdClient.connect>[1] = {}) => {
    script = s;
    return NbdClient.connect({ kind: 'unix', path: socketPath }, { connectTimeoutMs: 5000, ...options });
  };

  before(async () => {
    dir = await makeTempDir('lifeboat-nbd-fake-');
    socketPath = join(dir, 'fake.sock');
    server = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      serve(s, script);
    });
    await new Promise<void>((r) => server.listen(socketPath, r));
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    await removeDir(dir);
  });

  test('the fake server is sane: a well-behaved session works', async () => {
    const c = await connect({});
    assert.equal(c.size, EXPORT_SIZE);
    assert.ok((await c.read(0, 4096)).every((x) => x === 0));
    await c.close();
  });

  test('malformed handshakes', async () => {
    await rejectsWith(connect({ greeting: (s) => s.write('HELLO, I AM NOT NBD SERVER') }), 'NBD_PROTOCOL');
    await rejectsWith(connect({ greeting: (s) => s.end('NBDMAGIC') }), 'NBD_DISCONNECTED');
    await rejectsWith(connect({ greeting: () => {} }, { connectTimeoutMs: 300 }), 'NBD_TIMEOUT');
    const badMagic = (s: net.Socket) => {
      s.write(Buffer.alloc(20, 0x41));
      return true;
    };
    await rejectsWith(connect({ option: badMagic }), 'NBD_PROTOCOL');
    const wrongOption = (s: net.Socket, option: number) => {
      optReply(s, option + 1, NBD_REP_ACK);
      return true;
    };
    await rejectsWith(connect({ option: wrongOption }), 'NBD_PROTOCOL');
    const hugeReply = (s: net.Socket, option: number) => {
      const h = Buffer.alloc(20);
      h.writeUInt32BE(0x0003e889, 0);
      h.writeUInt32BE(0x045565a9, 4);
      h.writeUInt32BE(option, 8);
      h.writeUInt32BE(NBD_REP_ACK, 12);
      h.writeUInt32BE(0xfffffff0, 16);
      s.write(h);
      return true;
    };
    await rejectsWith(connect({ option: hugeReply }), 'NBD_PROTOCOL');
  });

  test('NBD_OPT_GO errors: unknown export, refused, success without export info, bad block sizes', async () => {
    const goAnswer = (type: number) => (s: net.Socket, option: number) => {
      if (option !== NBD_OPT_GO) return false;
      optReply(s, option, type, Buffer.from('nope'));
      return true;
    };
    await rejectsWith(connect({ option: goAnswer(NBD_REP_ERR_UNKNOWN) }), 'NBD_EXPORT_NOT_FOUND');
    await rejectsWith(connect({ option: goAnswer(NBD_REP_ERR_POLICY) }), 'NBD_OPTION_REFUSED');
    await rejectsWith(connect({ option: goAnswer(NBD_REP_ACK) }), 'NBD_PROTOCOL');
    const badBlockSize = Buffer.alloc(14);
    badBlockSize.writeUInt16BE(3, 0);
    badBlockSize.writeUInt32BE(3, 2); // minimum must be a power of two
    badBlockSize.writeUInt32BE(4096, 6);
    badBlockSize.writeUInt32BE(65536, 10);
    await rejectsWith(connect({ goInfos: [badBlockSize] }), 'NBD_PROTOCOL');
  });

  test('a reply with a bad magic rejects every pending request with NBD_PROTOCOL', async () => {
    let seen = 0;
    const c = await connect({
      request: (s) => {
        if (++seen === 5) s.write(Buffer.alloc(32, 0x99));
        return true;
      },
    });
    const reads = Array.from({ length: 5 }, (_, i) => c.read(i * 4096, 4096));
    for (const r of await Promise.allSettled(reads)) {
      assert.equal(r.status, 'rejected');
      assert.equal(((r as PromiseRejectedResult).reason as NbdError).code, 'NBD_PROTOCOL');
    }
    await rejectsWith(c.read(0, 1), 'NBD_DISCONNECTED');
    await c.close();
  });

  test('unknown handle, oversized error chunk, zero-length block status descriptor: NBD_PROTOCOL', async () => {
    const cases: ((s: net.Socket, req: FakeRequest) => void)[] = [
      (s) => s.write(simpleReply(Buffer.from('ABCDEFGH'))),
      (s, req) => s.write(chunkHeader(req.handle, NBD_REPLY_TYPE_ERROR, NBD_REPLY_FLAG_DONE, 0x80000000)),
      (s, req) => s.write(blockStatusReply(req, [[0, 0]])),
    ];
    for (const misbehave of cases) {
      const c = await connect({
        request: (s, req) => {
          misbehave(s, req);
          return true;
        },
      });
      await rejectsWith(c.blockStatus(0, 4096), 'NBD_PROTOCOL');
      await c.close();
    }
  });

  test('server hangs up in the middle of a data payload: NBD_DISCONNECTED', async () => {
    const c = await connect({
      request: (s, req) => {
        const off = Buffer.alloc(8);
        writeUInt64(off, req.offset, 0);
        s.write(Buffer.concat([chunkHeader(req.handle, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + req.length), off]));
        s.write(Buffer.alloc(req.length / 2), () => s.destroy());
      },
    });
    await rejectsWith(c.read(0, 64 * 1024), 'NBD_DISCONNECTED');
    await c.close();
  });

  test('a read that claims success without all its data is NBD_SHORT_READ; the connection goes on', async () => {
    let first = true;
    const c = await connect({
      request: (s, req) => {
        if (!first) return false;
        first = false;
        const off = Buffer.alloc(8);
        writeUInt64(off, req.offset, 0);
        s.write(
          Buffer.concat([
            chunkHeader(req.handle, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + 100),
            off,
            Buffer.alloc(100),
          ]),
        );
        return true;
      },
    });
    await rejectsWith(c.read(0, 4096), 'NBD_SHORT_READ');
    assert.equal((await c.read(0, 4096)).length, 4096);
    await c.close();
  });

  test('block status answered a little at a time is looped over until the range is covered', async () => {
    let requests = 0;
    const c = await connect({
      request: (s, req) => {
        if (req.type !== NBD_CMD_BLOCK_STATUS) return false;
        requests++;
        // One 4 KiB descriptor per reply, alternating data and hole+zero; the last one overshoots.
        const flags = (req.offset / 4096) % 2 === 0 ? 0 : 3;
        s.write(
          blockStatusReply(req, [[Math.min(4096, req.length) + (req.length <= 4096 ? 512 : 0), flags]]),
        );
        return true;
      },
    });
    const extents = await readAllocationExtents(c, 0, 64 * 1024);
    assert.equal(requests, 16);
    assert.equal(extents.length, 16);
    assert.deepEqual(extents[0], { offset: 0, length: 4096, kind: 'data' });
    assert.deepEqual(extents[15], { offset: 15 * 4096, length: 4096, kind: 'zero' });
    await c.close();
  });

  test('two contexts described at different lengths by the same replies: each is covered once', async () => {
    let requests = 0;
    const c = await connect(
      {
        option: (s, option) => {
          if (option !== NBD_OPT_SET_META_CONTEXT) return false;
          for (const [id, name] of [
            [1, 'base:allocation'],
            [2, 'qemu:dirty-bitmap:b'],
          ] as const) {
            const ctx = Buffer.alloc(4);
            ctx.writeUInt32BE(id, 0);
            optReply(s, option, NBD_REP_META_CONTEXT, Buffer.concat([ctx, Buffer.from(name)]));
          }
          optReply(s, option, NBD_REP_ACK);
          return true;
        },
        request: (s, req) => {
          if (req.type !== NBD_CMD_BLOCK_STATUS) return false;
          requests++;
          // base:allocation: 4 KiB at a time, data and hole+zero alternating.
          const alloc = blockStatusReply(req, [[4096, (req.offset / 4096) % 2 === 0 ? 0 : 3]]);
          alloc.writeUInt16BE(0, 4); // not the last chunk
          // the bitmap: 16 KiB at a time from 16 KiB boundaries, dirty and clean alternating.
          const bitmapLength = 16384 - (req.offset % 16384);
          const bitmap = blockStatusReply(req, [
            [bitmapLength, Math.floor(req.offset / 16384) % 2 === 0 ? 1 : 0],
          ]);
          bitmap.writeUInt32BE(2, 20);
          s.write(Buffer.concat([alloc, bitmap]));
          return true;
        },
      },
      { metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b'] },
    );
    const extents = await readIncrementalExtents(c, 'b', 0, 65536);
    assert.equal(requests, 16);
    const K4 = 4096;
    assert.deepEqual(extents, [
      { offset: 0, length: K4, kind: 'data' },
      { offset: K4, length: K4, kind: 'zero' },
      { offset: 2 * K4, length: K4, kind: 'data' },
      { offset: 3 * K4, length: K4, kind: 'zero' },
      { offset: 4 * K4, length: 4 * K4, kind: 'unallocated' },
      { offset: 8 * K4, length: K4, kind: 'data' },
      { offset: 9 * K4, length: K4, kind: 'zero' },
      { offset: 10 * K4, length: K4, kind: 'data' },
      { offset: 11 * K4, length: K4, kind: 'zero' },
      { offset: 12 * K4, length: 4 * K4, kind: 'unallocated' },
    ]);
    await c.close();
  });

  test('close() with a request the server never answers: the request is dropped, close returns', async () => {
    const c = await connect({ request: () => true });
    const hung = c.read(0, 4096);
    const settled = hung.catch((err: NbdError) => err.code);
    await c.close(200);
    assert.equal(await settled, 'NBD_CLOSED');
    await rejectsWith(c.read(0, 1), 'NBD_CLOSED');
  });

  test('a server that goes silent with requests in flight: they fail with NBD_TIMEOUT', async () => {
    // Answers the first read, then never again (a hung QEMU, or a host gone without closing).
    let answered = 0;
    const c = await connect(
      {
        request: (s, req) => {
          if (req.type !== NBD_CMD_READ || answered++ > 0) return true;
          const h = Buffer.alloc(16);
          h.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
          req.handle.copy(h, 8);
          s.write(Buffer.concat([h, Buffer.alloc(req.length)]));
          return true;
        },
      },
      { replyTimeoutMs: 400, structuredReplies: false },
    );
    await c.read(0, 4096);
    // Idle for longer than the timeout with nothing in flight: not a stall.
    await new Promise((r) => setTimeout(r, 600));
    const t0 = Date.now();
    await rejectsWith(c.read(4096, 4096), 'NBD_TIMEOUT');
    assert.ok(Date.now() - t0 >= 350, 'failed before the server was silent for the timeout');
    await rejectsWith(c.read(0, 1), 'NBD_DISCONNECTED'); // the connection was dropped
    await c.close(100).catch(() => {});
  });

  test('ESHUTDOWN from the server: the request fails, new ones are refused, the client disconnects softly', async () => {
    let disconnected = false;
    const c = await connect({
      request: (s, req) => {
        if (req.type === NBD_CMD_READ) s.write(simpleReply(req.handle, 108));
        return true;
      },
    });
    const sock = [...sockets].at(-1)!;
    sock.on('close', () => {
      disconnected = true;
    });
    const err = await rejectsWith(c.read(0, 512), 'NBD_SERVER_ERROR');
    assert.equal(err.errnoName, 'ESHUTDOWN');
    await rejectsWith(c.read(0, 512), 'NBD_SERVER_ERROR');
    await c.close();
    for (let i = 0; i < 50 && !disconnected; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(disconnected);
  });
});
