import { DiskError } from '../errors.js';
import type { RandomAccessFile } from '../io.js';

/**
 * The qcow2 header (versions 2 and 3) and its extensions, parsed and bounds-checked against the file
 * size. Spec: QEMU docs/interop/qcow2.txt. Every field an image can lie about is checked here once, so
 * the code that walks tables afterwards can trust offsets and sizes to lie inside the file.
 */

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const QCOW2_V2_HEADER_LENGTH = 72;
export const QCOW2_V3_MIN_HEADER_LENGTH = 104;
/** Header length of a v3 header that carries the compression_type field (plus padding to 8). */
export const QCOW2_V3_HEADER_LENGTH_WITH_COMPRESSION = 112;
export const MIN_CLUSTER_BITS = 9;
/** QEMU's implementation limit (2 MiB clusters); larger images would not open in qemu-img anyway. */
export const MAX_CLUSTER_BITS = 21;
/** Extended L2 entries need at least 16 KiB clusters (32 subclusters of at least 512 bytes). */
export const MIN_EXTENDED_L2_CLUSTER_BITS = 14;
export const MAX_BACKING_FILE_NAME = 1023;
/** QEMU refuses more; an image claiming more is damaged or hostile. */
export const MAX_SNAPSHOTS = 65536;
export const SUBCLUSTERS_PER_CLUSTER = 32;

/** Incompatible feature bits (an unknown one must make the open fail). */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_EXTERNAL_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION_TYPE = 1n << 3n;
export const INCOMPAT_EXTENDED_L2 = 1n << 4n;
export const INCOMPAT_KNOWN =
  INCOMPAT_DIRTY |
  INCOMPAT_CORRUPT |
  INCOMPAT_EXTERNAL_DATA_FILE |
  INCOMPAT_COMPRESSION_TYPE |
  INCOMPAT_EXTENDED_L2;
/** Compatible feature bits (safe to ignore). */
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
/** Autoclear feature bits (a writer must clear the ones it does not know). */
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const COMPRESSION_DEFLATE = 0;
export const COMPRESSION_ZSTD = 1;

/** Header extension types. */
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAME_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_FULL_DISK_ENCRYPTION = 0x0537be77;
export const EXT_EXTERNAL_DATA_FILE = 0x44415441;

export interface Qcow2HeaderExtension {
  type: number;
  /** Offset of the extension's data (after its 8-byte type+length) in the file. */
  dataOffset: number;
  data: Buffer;
}

export interface Qcow2FeatureName {
  /** 0 incompatible, 1 compatible, 2 autoclear. */
  type: number;
  bit: number;
  name: string;
}

export interface Qcow2BitmapsExtension {
  nbBitmaps: number;
  directorySize: number;
  directoryOffset: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  /** Virtual disk size in bytes. */
  size: number;
  cryptMethod: number;
  /** Number of entries of the active L1 table. */
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  /** refcount_bits = 1 << refcountOrder; always 4 for v2. */
  refcountOrder: number;
  /** 72 for v2. */
  headerLength: number;
  /** 0 deflate (the only one we read), 1 zstd. */
  compressionType: number;

  // Derived values, so no caller recomputes them differently.
  clusterSize: number;
  extendedL2: boolean;
  /** Bytes per L2 entry: 8, or 16 with extended L2. */
  l2EntrySize: number;
  /** Entries per L2 table (one cluster). */
  l2Entries: number;
  /** 32 with extended L2, else 1. */
  subclustersPerCluster: number;
  subclusterSize: number;
  refcountBits: number;
  /** Entries per refcount block (one cluster). */
  refcountBlockEntries: number;
  dirty: boolean;
  corrupt: boolean;
  lazyRefcounts: boolean;

  backingFileName?: string;
  /** From the backing-format extension ("qcow2", "raw", ...). */
  backingFormat?: string;
  featureNames: Qcow2FeatureName[];
  bitmaps?: Qcow2BitmapsExtension;
  /** Every extension, known or not, in file order (a writer preserving them needs this). */
  extensions: Qcow2HeaderExtension[];
  /** First byte after the extension area (after the end marker). */
  extensionsEnd: number;
  /** Size of the file the header was parsed against. */
  fileSize: number;
}

function malformed(name: string, what: string, details?: Record<string, unknown>): DiskError {
  return new DiskError('QCOW2_MALFORMED', `${name}: ${what}`, { details });
}

function unsupported(name: string, what: string): DiskError {
  return new DiskError('QCOW2_UNSUPPORTED', `${name}: ${what}`);
}

/** Reads a big-endian u64 as a number; values beyond 2^53 are refused (no file is that large). */
export function readU64(buf: Buffer, offset: number, name: string, field: string): number {
  const v = buf.readBigUInt64BE(offset);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(name, `${field} out of range (${v})`);
  return Number(v);
}

/** True when a file of `fileSize` bytes holds [offset, offset+length). */
export function fitsInFile(offset: number, length: number, fileSize: number): boolean {
  return offset >= 0 && length >= 0 && offset <= fileSize && length <= fileSize - offset;
}

/** Reads the header of `file` (the first cluster, or less at end of file) and parses it. */
export async function readQcow2Header(file: RandomAccessFile): Promise<Qcow2Header> {
  const head = await file.read(0, Math.min(file.size, 4096));
  if (head.length < 4 || head.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw new DiskError('QCOW2_BAD_MAGIC', `${file.name}: not a qcow2 image`);
  }
  if (head.length < 24) throw malformed(file.name, 'header truncated');
  const clusterBits = head.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw malformed(
      file.name,
      `cluster_bits ${clusterBits} outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`,
    );
  }
  const firstCluster = Math.min(file.size, 2 ** clusterBits);
  const buf = firstCluster > head.length ? await file.read(0, firstCluster) : head;
  return parseQcow2Header(buf, file.size, file.name);
}

/**
 * Parses a header from `buf` = the first cluster of the file (or the whole file when shorter).
 * Throws QCOW2_BAD_MAGIC, QCOW2_MALFORMED or QCOW2_UNSUPPORTED.
 */
export function parseQcow2Header(buf: Buffer, fileSize: number, name = 'image'): Qcow2Header {
  if (buf.length < 4 || buf.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw new DiskError('QCOW2_BAD_MAGIC', `${name}: not a qcow2 image`);
  }
  if (buf.length < QCOW2_V2_HEADER_LENGTH) throw malformed(name, 'header truncated');
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) {
    throw unsupported(name, `qcow2 version ${version} (only 2 and 3 are supported)`);
  }
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw malformed(name, `cluster_bits ${clusterBits} outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  const clusterSize = 2 ** clusterBits;
  const h = {
    version,
    backingFileOffset: readU64(buf, 8, name, 'backing_file_offset'),
    backingFileSize: buf.readUInt32BE(16),
    clusterBits,
    size: readU64(buf, 24, name, 'size'),
    cryptMethod: buf.readUInt32BE(32),
    l1Size: buf.readUInt32BE(36),
    l1TableOffset: readU64(buf, 40, name, 'l1_table_offset'),
    refcountTableOffset: readU64(buf, 48, name, 'refcount_table_offset'),
    refcountTableClusters: buf.readUInt32BE(56),
    nbSnapshots: buf.readUInt32BE(60),
    snapshotsOffset: readU64(buf, 64, name, 'snapshots_offset'),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: QCOW2_V2_HEADER_LENGTH,
    compressionType: COMPRESSION_DEFLATE,
  };
  if (version === 3) {
    if (buf.length < QCOW2_V3_MIN_HEADER_LENGTH) throw malformed(name, 'v3 header truncated');
    h.incompatibleFeatures = buf.readBigUInt64BE(72);
    h.compatibleFeatures = buf.readBigUInt64BE(80);
    h.autoclearFeatures = buf.readBigUInt64BE(88);
    h.refcountOrder = buf.readUInt32BE(96);
    h.headerLength = buf.readUInt32BE(100);
    if (h.headerLength < QCOW2_V3_MIN_HEADER_LENGTH || h.headerLength % 8 !== 0) {
      throw malformed(name, `header_length ${h.headerLength} invalid`);
    }
    if (h.headerLength > Math.min(clusterSize, buf.length)) {
      throw malformed(name, `header_length ${h.headerLength} beyond the first cluster`);
    }
    if (h.headerLength > 104) h.compressionType = buf.readUInt8(104);
  }

  if (h.cryptMethod !== 0) throw unsupported(name, `encrypted image (crypt_method ${h.cryptMethod})`);
  if (h.refcountOrder > 6) throw malformed(name, `refcount_order ${h.refcountOrder} > 6`);
  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  const extendedL2 = (h.incompatibleFeatures & INCOMPAT_EXTENDED_L2) !== 0n;
  if (extendedL2 && clusterBits < MIN_EXTENDED_L2_CLUSTER_BITS) {
    throw malformed(name, `extended L2 entries with ${clusterSize}-byte clusters`);
  }
  if ((h.incompatibleFeatures & INCOMPAT_COMPRESSION_TYPE) !== 0n) {
    if (h.compressionType === COMPRESSION_DEFLATE) {
      throw malformed(name, 'compression type bit set but compression_type is deflate');
    }
  } else if (h.compressionType !== COMPRESSION_DEFLATE) {
    throw malformed(name, `compression_type ${h.compressionType} without the compression type bit`);
  }

  // Header extensions sit between the header and the backing file name (or the end of the first
  // cluster): old v2 images put the name right after the header with no end marker.
  const backingOffset = readU64(buf, 8, name, 'backing_file_offset');
  let areaEnd = Math.min(clusterSize, buf.length);
  if (backingOffset >= h.headerLength && backingOffset < areaEnd) areaEnd = backingOffset;
  const extensions: Qcow2HeaderExtension[] = [];
  const featureNames: Qcow2FeatureName[] = [];
  let backingFormat: string | undefined;
  let bitmaps: Qcow2BitmapsExtension | undefined;
  let pos = h.headerLength;
  let extensionsEnd = pos;
  for (;;) {
    if (pos + 8 > areaEnd) {
      // v2 images written by old tools may end the header without an end marker.
      extensionsEnd = pos;
      break;
    }
    const type = buf.readUInt32BE(pos);
    const len = buf.readUInt32BE(pos + 4);
    if (type === EXT_END) {
      extensionsEnd = pos + 8;
      break;
    }
    const dataOffset = pos + 8;
    if (len > areaEnd - dataOffset) {
      throw malformed(name, `header extension 0x${type.toString(16)} overruns the first cluster`);
    }
    const data = buf.subarray(dataOffset, dataOffset + len);
    extensions.push({ type, dataOffset, data });
    switch (type) {
      case EXT_BACKING_FORMAT:
        backingFormat = data.toString('latin1');
        break;
      case EXT_FEATURE_NAME_TABLE:
        for (let i = 0; i + 48 <= data.length; i += 48) {
          const raw = data.subarray(i + 2, i + 48);
          const nul = raw.indexOf(0);
          featureNames.push({
            type: data[i],
            bit: data[i + 1],
            name: raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8'),
          });
        }
        break;
      case EXT_BITMAPS:
        // Tolerated: we never use bitmaps to read, only `check` walks them.
        if (len >= 24) {
          const directorySize = Number(data.readBigUInt64BE(8));
          const directoryOffset = Number(data.readBigUInt64BE(16));
          bitmaps = { nbBitmaps: data.readUInt32BE(0), directorySize, directoryOffset };
        }
        break;
      case EXT_FULL_DISK_ENCRYPTION:
        throw unsupported(name, 'full disk encryption');
      case EXT_EXTERNAL_DATA_FILE:
        throw unsupported(name, 'external data file');
      default:
        break; // unknown extensions are safe to ignore
    }
    pos = dataOffset + Math.ceil(len / 8) * 8;
  }

  if (unknown !== 0n) {
    const names: string[] = [];
    for (let bit = 0; bit < 64; bit++) {
      if ((unknown & (1n << BigInt(bit))) === 0n) continue;
      const f = featureNames.find((n) => n.type === 0 && n.bit === bit);
      names.push(f ? f.name : `bit ${bit}`);
    }
    throw unsupported(name, `unknown incompatible features: ${names.join(', ')}`);
  }
  if ((h.incompatibleFeatures & INCOMPAT_EXTERNAL_DATA_FILE) !== 0n)
    throw unsupported(name, 'external data file');
  if (h.compressionType === COMPRESSION_ZSTD) throw unsupported(name, 'unsupported compression type zstd');
  if (h.compressionType !== COMPRESSION_DEFLATE) {
    throw unsupported(name, `unsupported compression type ${h.compressionType}`);
  }

  const l2EntrySize = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / l2EntrySize;
  const refcountBits = 2 ** h.refcountOrder;
  const header: Qcow2Header = {
    ...h,
    version: version as 2 | 3,
    clusterSize,
    extendedL2,
    l2EntrySize,
    l2Entries,
    subclustersPerCluster: extendedL2 ? SUBCLUSTERS_PER_CLUSTER : 1,
    subclusterSize: extendedL2 ? clusterSize / SUBCLUSTERS_PER_CLUSTER : clusterSize,
    refcountBits,
    refcountBlockEntries: (clusterSize * 8) / refcountBits,
    dirty: (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    corrupt: (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
    lazyRefcounts: (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    featureNames,
    extensions,
    extensionsEnd,
    fileSize,
    backingFormat,
    bitmaps,
  };
  validateLayout(header, buf, name);
  return header;
}

/** Bounds of the tables the header points at, and the backing file name. */
function validateLayout(h: Qcow2Header, buf: Buffer, name: string): void {
  const { clusterSize, fileSize } = h;
  const aligned = (v: number) => v % clusterSize === 0;

  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize === 0 || h.backingFileSize > MAX_BACKING_FILE_NAME) {
      throw malformed(name, `backing file name length ${h.backingFileSize} invalid`);
    }
    if (!fitsInFile(h.backingFileOffset, h.backingFileSize, Math.min(clusterSize, buf.length))) {
      throw malformed(name, 'backing file name outside the first cluster');
    }
    h.backingFileName = buf
      .subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize)
      .toString('utf8');
  }

  // The L1 table must cover the virtual size and lie inside the file.
  const bytesPerL1Entry = clusterSize * h.l2Entries;
  const l1Needed = Math.ceil(h.size / bytesPerL1Entry);
  if (h.l1Size < l1Needed) {
    throw malformed(
      name,
      `L1 table too small (${h.l1Size} entries, ${l1Needed} needed for the virtual size)`,
    );
  }
  if (h.l1Size > 0) {
    if (!aligned(h.l1TableOffset) || h.l1TableOffset === 0) {
      throw malformed(name, `L1 table offset ${h.l1TableOffset} invalid`);
    }
    if (!fitsInFile(h.l1TableOffset, h.l1Size * 8, fileSize)) {
      throw malformed(name, 'L1 table beyond the end of the file', { l1Size: h.l1Size });
    }
  }

  if (h.refcountTableClusters === 0 || !aligned(h.refcountTableOffset) || h.refcountTableOffset === 0) {
    throw malformed(name, 'refcount table offset or size invalid');
  }
  if (!fitsInFile(h.refcountTableOffset, h.refcountTableClusters * clusterSize, fileSize)) {
    throw malformed(name, 'refcount table beyond the end of the file');
  }

  if (h.nbSnapshots > MAX_SNAPSHOTS) throw malformed(name, `too many snapshots (${h.nbSnapshots})`);
  if (h.nbSnapshots > 0) {
    if (!aligned(h.snapshotsOffset) || !fitsInFile(h.snapshotsOffset, h.nbSnapshots * 40, fileSize)) {
      throw malformed(name, 'snapshot table outside the file');
    }
  }
}
