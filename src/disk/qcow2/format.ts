/**
 * The qcow2 on-disk format in one import: header parsing and constants (header.ts), table-entry
 * decoders/encoders (entries.ts) and bounds-checked table readers (tables.ts). The reader, the
 * writer, merge and check all build on this and nothing else knows the byte layout.
 *
 * Stable API (the writer and merge depend on it):
 * - readQcow2Header(file) / parseQcow2Header(buf, fileSize, name) -> Qcow2Header (all fields plus
 *   derived clusterSize, l2Entries, l2EntrySize, subclusterSize, refcountBits, refcountBlockEntries,
 *   backingFileName, backingFormat, extensions, extensionsEnd)
 * - L1: l1EntryL2Offset, l1EntryCopied, l1EntryReservedBits, writeL1Entry
 * - L2: decodeL2Entry -> L2Entry {kind, hostOffset, compressedSize, copied, allocMask, zeroMask},
 *   writeStandardL2Entry, writeCompressedL2Entry, fullSubclusterMask
 * - refcounts: refcountTableEntry, writeRefcountTableEntry, readRefcount, writeRefcount, maxRefcount
 * - tables: readL1Table, readL2Table, readRefcountTable, readRefcountBlock, readExact,
 *   refcountPosition, guestClusterPosition, l2EntryFileOffset, readSnapshotTable, readBitmapDirectory
 * - writeU64, fitsInFile, readU64
 */
export * from './entries.js';
export * from './header.js';
export * from './tables.js';
