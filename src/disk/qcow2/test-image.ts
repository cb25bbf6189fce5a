import { writeL1Entry, writeStandardL2Entry } from './entries.js';
import { EXT_BACKING_FORMAT, parseQcow2Header, QCOW2_MAGIC } from './header.js';

/**
 * Builds tiny, valid qcow2 v3 images in memory for unit tests (no qemu-img needed): header, one
 * refcount-table cluster, the L1 table, L2 tables and data clusters filled with one byte each.
 * Refcounts are left empty, so `check` would complain; readers do not care.
 */
export interface TestImageSpec {
  size: number;
  clusterBits?: number;
  backing?: string;
  backingFormat?: string;
  /** Data clusters: guest cluster index -> fill byte. */
  data?: Record<number, number>;
  /** Zero-flagged guest clusters. */
  zero?: number[];
}

export function buildTestQcow2(spec: TestImageSpec): Buffer {
  const bits = spec.clusterBits ?? 16;
  const cs = 2 ** bits;
  const l2Entries = cs / 8;
  const l1Size = Math.max(1, Math.ceil(spec.size / (cs * l2Entries)));
  const data = Object.entries(spec.data ?? {}).map(([c, b]) => [Number(c), b] as const);
  const used = new Set([
    ...data.map(([c]) => Math.floor(c / l2Entries)),
    ...(spec.zero ?? []).map((c) => Math.floor(c / l2Entries)),
  ]);
  const l2Index = [...used].sort((a, b) => a - b);
  // Layout: header | refcount table | L1 | L2 tables... | data clusters...
  const l1Offset = 2 * cs;
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const firstL2 = l1Offset + l1Clusters * cs;
  const firstData = firstL2 + l2Index.length * cs;
  const file = Buffer.alloc(firstData + data.length * cs);

  file.writeUInt32BE(QCOW2_MAGIC, 0);
  file.writeUInt32BE(3, 4);
  file.writeUInt32BE(bits, 20);
  file.writeBigUInt64BE(BigInt(spec.size), 24);
  file.writeUInt32BE(l1Size, 36);
  file.writeBigUInt64BE(BigInt(l1Offset), 40);
  file.writeBigUInt64BE(BigInt(cs), 48);
  file.writeUInt32BE(1, 56);
  file.writeUInt32BE(4, 96);
  file.writeUInt32BE(104, 100);
  let pos = 104;
  if (spec.backingFormat) {
    const f = Buffer.from(spec.backingFormat);
    file.writeUInt32BE(EXT_BACKING_FORMAT, pos);
    file.writeUInt32BE(f.length, pos + 4);
    f.copy(file, pos + 8);
    pos += 8 + Math.ceil(f.length / 8) * 8;
  }
  pos += 8; // end-of-extensions marker (zeros)
  if (spec.backing) {
    const name = Buffer.from(spec.backing);
    file.writeBigUInt64BE(BigInt(pos), 8);
    file.writeUInt32BE(name.length, 16);
    name.copy(file, pos);
  }

  const h = parseQcow2Header(file.subarray(0, cs), file.length, 'test');
  const l1 = file.subarray(l1Offset, l1Offset + l1Size * 8);
  l2Index.forEach((l1i, n) => {
    writeL1Entry(l1, l1i, firstL2 + n * cs);
  });
  const l2Of = (c: number) => {
    const n = l2Index.indexOf(Math.floor(c / l2Entries));
    return file.subarray(firstL2 + n * cs, firstL2 + (n + 1) * cs);
  };
  data.forEach(([c, byte], n) => {
    const host = firstData + n * cs;
    file.fill(byte, host, host + cs);
    writeStandardL2Entry(l2Of(c), c % l2Entries, h, { hostOffset: host });
  });
  for (const c of spec.zero ?? [])
    writeStandardL2Entry(l2Of(c), c % l2Entries, h, { hostOffset: 0, zeroMask: 1 });
  return file;
}
