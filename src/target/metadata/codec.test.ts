import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { isTargetError } from '../errors.js';
import { checkChecksum } from './checksum.js';
import { decodeMetadata, encodeMetadata } from './codec.js';

const NOW = '2026-01-02T03:04:05.000Z';
const workload = {
  id: 'wl-1',
  name: 'web',
  description: '',
  labels: { 'owner.name': 'alice' },
  vms: [],
  policy: null,
  createdAt: NOW,
  updatedAt: NOW,
};

describe('metadata codec', () => {
  it('round-trips a document with its format version and checksum', () => {
    const bytes = encodeMetadata('workload', workload);
    assert.ok(checkChecksum(bytes).ok);
    const doc = decodeMetadata('workload', bytes, 'w.json');
    assert.deepEqual(doc.formatVersion, { major: 1, minor: 0 });
    assert.equal(doc.kind, 'workload');
    assert.equal(doc.labels['owner.name'], 'alice');
  });

  it('finds one flipped byte anywhere in the file, whitespace included', () => {
    const bytes = encodeMetadata('workload', workload);
    for (let i = 0; i < bytes.length; i++) {
      const bad = Buffer.from(bytes);
      bad[i] ^= 0x01;
      assert.throws(
        () => decodeMetadata('workload', bad, 'w.json'),
        (e) => isTargetError(e),
        `byte ${i}`,
      );
    }
  });

  it('reads a newer minor version and keeps its unknown members', () => {
    const text = encodeMetadata('workload', workload).toString('utf8');
    const raw = JSON.parse(text);
    raw.formatVersion.minor = 7;
    raw.futureField = { a: 1 };
    const bytes = encodeMetadataLike(raw);
    const doc = decodeMetadata('workload', bytes, 'w.json') as Record<string, unknown>;
    assert.deepEqual(doc.futureField, { a: 1 });
  });

  it('refuses a newer major version with TARGET_FORMAT_VERSION', () => {
    const raw = JSON.parse(encodeMetadata('workload', workload).toString('utf8'));
    raw.formatVersion.major = 2;
    assert.throws(
      () => decodeMetadata('workload', encodeMetadataLike(raw), 'w.json'),
      (e) => isTargetError(e, 'TARGET_FORMAT_VERSION') && /upgrade Lifeboat/.test(e.message),
    );
  });

  it('migrates a format 0 document on read', () => {
    const v0 = {
      version: 0,
      id: 's1',
      workload_id: 'wl-1',
      snapshot_type: 'full',
      parent_snapshot_id: null,
      started_at: NOW,
      finished_at: NOW,
      status: 'ok',
      sizes: { virtual_bytes: 10, allocated_bytes: 5, stored_bytes: 6 },
      vms: [{ id: 'vm-1', name: 'web1', disks: ['vda'], stored_bytes: 6 }],
    };
    const doc = decodeMetadata('snapshot', Buffer.from(JSON.stringify(v0)), 'snapshot.json');
    assert.equal(doc.type, 'full');
    assert.equal(doc.workloadId, 'wl-1');
    assert.equal(doc.sizes.storedBytes, 6);
    assert.deepEqual(doc.formatVersion, { major: 1, minor: 0 });
    assert.deepEqual(doc.warnings, []);
  });

  it('refuses documents that fail their schema or are not JSON', () => {
    assert.throws(
      () => decodeMetadata('workload', Buffer.from('{"formatVersion"'), 'x'),
      (e) => isTargetError(e, 'TARGET_METADATA_INVALID'),
    );
    assert.throws(
      () => encodeMetadata('workload', { ...workload, id: '../evil' }),
      (e) => isTargetError(e, 'TARGET_METADATA_INVALID'),
    );
  });
});

/** Re-encodes a raw object the way another implementation might (compact JSON), checksum included. */
function encodeMetadataLike(raw: Record<string, unknown>): Buffer {
  const text = JSON.stringify({ ...raw, checksum: `sha256:${'0'.repeat(64)}` });
  const digest = createHash('sha256').update(text).digest('hex');
  return Buffer.from(text.replace('0'.repeat(64), digest));
}
