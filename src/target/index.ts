/** The backup target layer: layout, metadata, fs and S3 backends, leases, scan, verify, cleanup. */
export type { ObjectInfo, ObjectVersion, TargetBackend } from './backend.js';
export { TargetChainOpener } from './chain.js';
export { type CleanupOptions, type CleanupReport, cleanupUnfinished } from './cleanup.js';
export { isTargetError, TargetError, type TargetErrorCode } from './errors.js';
export { FsBackend } from './fs-backend.js';
export { HashingSink, type ImageDigest } from './hashing-sink.js';
export * as layout from './layout.js';
export { type LeaseOptions, type LeaseOwner, leaseActive, readLease, WorkloadLease } from './lease.js';
export { decodeMetadata, encodeMetadata, type MetadataInput } from './metadata/codec.js';
export * from './metadata/schemas.js';
export { FORMAT_VERSION } from './metadata/version.js';
export { readMetadata, writeMetadata } from './metadata-io.js';
export { type OpenTargetOptions, openBackend } from './open-target.js';
export { S3Backend, type S3BackendOptions } from './s3-backend.js';
export { scanTarget, type TargetScan } from './scan.js';
export { type BeginSnapshot, DiskImageWriter, SnapshotWriter, type VmInput } from './snapshot-writer.js';
export { Target } from './target.js';
export { type VerifyFinding, type VerifyReport, verifyTarget } from './verify.js';
