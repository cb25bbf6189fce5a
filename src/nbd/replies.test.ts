import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByteQueue } from './byte-queue.js';
import type { NbdError } from './errors.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  writeUInt64,
} from './protocol.js';
import { type InFlightRequest, ReplyParser } from './replies.js';

function chunk(handle: number, type: number, flags: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  writeUInt64(h, handle, 8);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

function simple(handle: number, errno: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(errno, 4);
  writeUInt64(h, handle, 8);
  return Buffer.concat([h, data]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  writeUInt64(b, n, 0);
  return b;
}

function dataChunk(handle: number, offset: number, data: Buffer, done = false): Buffer {
  return chunk(
    handle,
    NBD_REPLY_TYPE_OFFSET_DATA,
    done ? NBD_REPLY_FLAG_DONE : 0,
    Buffer.concat([u64(offset), data]),
  );
}

function holeChunk(handle: number, offset: number, size: number, done = false): Buffer {
  const p = Buffer.alloc(12);
  writeUInt64(p, offset, 0);
  p.writeUInt32BE(size, 8);
  return chunk(handle, NBD_REPLY_TYPE_OFFSET_HOLE, done ? NBD_REPLY_FLAG_DONE : 0, p);
}

function errorChunk(handle: number, errno: number, message: string, offset?: number): Buffer {
  const msg = Buffer.from(message);
  const p = Buffer.alloc(6);
  p.writeUInt32BE(errno, 0);
  p.writeUInt16BE(msg.length, 4);
  const parts: Buffer[] = [p, msg];
  if (offset !== undefined) parts.push(u64(offset));
  const type = offset === undefined ? NBD_REPLY_TYPE_ERROR : NBD_REPLY_TYPE_ERROR_OFFSET;
  return chunk(handle, type, NBD_REPLY_FLAG_DONE, Buffer.concat(parts));
}

function harness(structured: boolean, reqs: Partial<InFlightRequest>[]) {
  const queue = new ByteQueue();
  const pending = new Map<number, InFlightRequest>();
  const done = new Map<number, NbdError | null>();
  for (const r of reqs) {
    const req = { covered: 0, offset: 0, length: 0, command: NBD_CMD_READ, ...r } as InFlightRequest;
    pending.set(req.handle, req);
  }
  const parser = new ReplyParser(
    queue,
    structured,
    (h) => pending.get(h),
    (req, err) => {
      pending.delete(req.handle);
      done.set(req.handle, err ?? null);
    },
  );
  /** Feeds bytes in pieces of `step` bytes through a reused buffer, like the socket does. */
  const feed = (bytes: Buffer, step = bytes.length) => {
    const shared = Buffer.alloc(step);
    for (let at = 0; at < bytes.length; at += step) {
      const n = bytes.copy(shared, 0, at, Math.min(bytes.length, at + step));
      queue.push(shared.subarray(0, n), true);
      parser.pump();
      queue.detach();
      shared.fill(0xee);
    }
  };
  return { feed, done, pending, parser };
}

test('structured read: data and hole chunks of two interleaved requests, fed byte by byte', () => {
  const a = Buffer.alloc(100);
  const b = Buffer.alloc(50);
  const h = harness(true, [
    { handle: 1, offset: 1000, length: 100, dest: a.fill(0x55) },
    { handle: 2, offset: 0, length: 50, dest: b },
  ]);
  const stream = Buffer.concat([
    dataChunk(1, 1060, Buffer.alloc(40, 7)),
    dataChunk(2, 0, Buffer.alloc(50, 9), true),
    holeChunk(1, 1000, 60),
    chunk(1, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE),
  ]);
  for (const step of [1, 3, 17, stream.length]) {
    a.fill(0x55);
    b.fill(0);
    h.done.clear();
    for (const [handle, off, len, dest] of [
      [1, 1000, 100, a],
      [2, 0, 50, b],
    ] as const) {
      h.pending.set(handle, { handle, command: NBD_CMD_READ, offset: off, length: len, dest, covered: 0 });
    }
    h.feed(stream, step);
    assert.deepEqual(
      [...h.done.entries()],
      [
        [2, null],
        [1, null],
      ],
    );
    assert.ok(a.subarray(0, 60).every((x) => x === 0));
    assert.ok(a.subarray(60).every((x) => x === 7));
    assert.ok(b.every((x) => x === 9));
    assert.ok(h.parser.idle);
  }
});

test('structured read that does not cover the range is a short read; error chunks are server errors', () => {
  const h = harness(true, [
    { handle: 1, offset: 0, length: 100, dest: Buffer.alloc(100) },
    { handle: 2, offset: 0, length: 100, dest: Buffer.alloc(100) },
    { handle: 3, command: NBD_CMD_WRITE, offset: 4096, length: 512 },
  ]);
  h.feed(Buffer.concat([dataChunk(1, 0, Buffer.alloc(60), true), errorChunk(2, 5, 'disk on fire', 10)]));
  h.feed(errorChunk(3, 28, ''));
  assert.equal(h.done.get(1)?.code, 'NBD_SHORT_READ');
  const e2 = h.done.get(2)!;
  assert.equal(e2.code, 'NBD_SERVER_ERROR');
  assert.equal(e2.errnoName, 'EIO');
  assert.match(e2.message, /disk on fire/);
  assert.equal(e2.details?.errorOffset, 10);
  assert.equal(h.done.get(3)?.errnoName, 'ENOSPC');
});

test('simple replies: read data follows the header; errors carry no payload', () => {
  const dest = Buffer.alloc(8);
  const h = harness(false, [
    { handle: 7, offset: 0, length: 8, dest },
    { handle: 8, offset: 0, length: 8, dest: Buffer.alloc(8) },
    { handle: 9, command: NBD_CMD_WRITE, offset: 0, length: 8 },
  ]);
  h.feed(Buffer.concat([simple(7, 0, Buffer.from('abcdefgh')), simple(8, 1), simple(9, 0)]), 5);
  assert.equal(dest.toString(), 'abcdefgh');
  assert.equal(h.done.get(7), null);
  assert.equal(h.done.get(8)?.errnoName, 'EPERM');
  assert.equal(h.done.get(9), null);
});

test('block status chunks are collected per context id', () => {
  const req = { handle: 3, command: NBD_CMD_BLOCK_STATUS, offset: 0, length: 4096, blockStatus: new Map() };
  const h = harness(true, [req]);
  const p = Buffer.alloc(4 + 16);
  p.writeUInt32BE(5, 0);
  p.writeUInt32BE(1024, 4);
  p.writeUInt32BE(3, 8);
  p.writeUInt32BE(3072, 12);
  p.writeUInt32BE(0, 16);
  h.feed(chunk(3, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_FLAG_DONE, p));
  assert.equal(h.done.get(3), null);
  assert.deepEqual(req.blockStatus.get(5), [
    { length: 1024, flags: 3 },
    { length: 3072, flags: 0 },
  ]);
});

test('stream-breaking violations throw NBD_PROTOCOL', () => {
  const cases: [string, boolean, Buffer][] = [
    ['bad magic', true, Buffer.from('0123456789abcdefghij')],
    ['unknown handle', true, chunk(99, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE)],
    ['structured without negotiation', false, chunk(1, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE)],
    ['data outside the request', true, dataChunk(1, 90, Buffer.alloc(20), true)],
    [
      'overlapping chunks',
      true,
      Buffer.concat([dataChunk(1, 0, Buffer.alloc(60)), holeChunk(1, 50, 50, true)]),
    ],
    ['unknown non-error chunk type', true, chunk(1, 77, NBD_REPLY_FLAG_DONE, Buffer.alloc(4))],
    ['NONE without DONE', true, chunk(1, NBD_REPLY_TYPE_NONE, 0)],
    ['simple reply with data under structured replies', true, simple(1, 0)],
    [
      'error message longer than the chunk',
      true,
      chunk(1, NBD_REPLY_TYPE_ERROR, 1, Buffer.from([0, 0, 0, 5, 0, 99])),
    ],
  ];
  for (const [name, structured, bytes] of cases) {
    const h = harness(structured, [{ handle: 1, offset: 0, length: 100, dest: Buffer.alloc(100) }]);
    assert.throws(
      () => h.feed(bytes),
      (err: NbdError) => err.code === 'NBD_PROTOCOL',
      name,
    );
  }
});
