import type { ObjectInfo, TargetBackend } from './backend.js';
import { TargetChainOpener } from './chain.js';
import { TargetError } from './errors.js';
import { digestFile } from './hashing-sink.js';
import { resolveRelativeKey } from './keys.js';
import {
  leaseKey,
  snapshotKey,
  snapshotPrefix,
  vmFileKey,
  vmKey,
  workloadKey,
  workloadPrefix,
} from './layout.js';
import { decodeMetadata, type MetadataOf } from './metadata/codec.js';
import type { MetadataKind } from './metadata/version.js';
import { Target } from './target.js';

export type FindingKind =
  | 'metadata-invalid' // not JSON, fails its schema or its checksum
  | 'format-version' // newer major than this build reads
  | 'missing' // a file that metadata names is not there
  | 'size-mismatch' // an image's size differs from its manifest
  | 'block-mismatch' // a 4 MiB block's SHA-256 differs from its manifest
  | 'broken-chain' // a backing image that does not resolve, or a chain that does not open
  | 'unreadable'; // I/O failure reading a file

export interface VerifyFinding {
  kind: FindingKind;
  key: string;
  message: string;
  blockIndex?: number;
  workloadId?: string;
  snapshotId?: string;
}

export interface VerifyReport {
  location: string;
  snapshots: number;
  checkedFiles: number;
  checkedBytes: number;
  findings: VerifyFinding[];
}

export interface VerifyOptions {
  workloadId?: string;
  onProgress?: (bytesDone: number, key: string) => void;
}

/**
 * Re-reads every metadata file and every image of every committed snapshot (of one workload, or
 * all) and reports every problem found rather than stopping at the first: checksum and schema of
 * each metadata file, each image block against its manifest, missing files, and chains that do not
 * open through their relative backing names. Unfinished snapshots are not verified.
 */
export async function verifyTarget(backend: TargetBackend, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const report: VerifyReport = {
    location: backend.location,
    snapshots: 0,
    checkedFiles: 0,
    checkedBytes: 0,
    findings: [],
  };
  const v = new Verifier(backend, report, opts);
  await v.run();
  return report;
}

class Verifier {
  private readonly chains: TargetChainOpener;

  constructor(
    private readonly backend: TargetBackend,
    private readonly report: VerifyReport,
    private readonly opts: VerifyOptions,
  ) {
    this.chains = new TargetChainOpener(backend);
  }

  private find(f: VerifyFinding): void {
    this.report.findings.push(f);
  }

  /** Reads and decodes one metadata file, turning every failure into a finding. */
  private async meta<K extends MetadataKind>(
    kind: K,
    key: string,
    ctx: { workloadId?: string; snapshotId?: string },
  ): Promise<MetadataOf<K> | undefined> {
    let bytes: Buffer;
    try {
      bytes = await this.backend.readAll(key);
    } catch (err) {
      if (err instanceof TargetError && err.code === 'TARGET_NOT_FOUND') {
        this.find({ kind: 'missing', key, message: `${key} is missing`, ...ctx });
      } else {
        this.find({ kind: 'unreadable', key, message: (err as Error).message, ...ctx });
      }
      return undefined;
    }
    this.report.checkedFiles++;
    this.report.checkedBytes += bytes.length;
    try {
      return decodeMetadata(kind, bytes, key);
    } catch (err) {
      const kindOf =
        err instanceof TargetError && err.code === 'TARGET_FORMAT_VERSION'
          ? 'format-version'
          : 'metadata-invalid';
      this.find({ kind: kindOf, key, message: (err as Error).message, ...ctx });
      return undefined;
    }
  }

  async run(): Promise<void> {
    const target = await Target.open(this.backend); // refuses a location that is not a target at all
    this.report.checkedFiles++;
    const ids = this.opts.workloadId !== undefined ? [this.opts.workloadId] : await target.listWorkloadIds();
    for (const wid of ids) await this.workload(target, wid);
  }

  private async workload(target: Target, wid: string): Promise<void> {
    const objects = new Map<string, ObjectInfo>();
    for await (const o of this.backend.list(workloadPrefix(wid))) objects.set(o.key, o);
    if (objects.size === 0) {
      this.find({
        kind: 'missing',
        key: workloadPrefix(wid),
        message: `workload ${wid} is not on the target`,
        workloadId: wid,
      });
      return;
    }
    await this.meta('workload', workloadKey(wid), { workloadId: wid });
    if (objects.has(leaseKey(wid))) await this.meta('lease', leaseKey(wid), { workloadId: wid });
    const committed = new Set<string>();
    for (const sid of await target.listSnapshotFolders(wid)) {
      if (objects.has(snapshotKey(wid, sid))) committed.add(sid);
    }
    for (const sid of committed) await this.snapshot(wid, sid, objects, committed);
  }

  private async snapshot(
    wid: string,
    sid: string,
    objects: Map<string, ObjectInfo>,
    committed: Set<string>,
  ): Promise<void> {
    const ctx = { workloadId: wid, snapshotId: sid };
    this.report.snapshots++;
    const snap = await this.meta('snapshot', snapshotKey(wid, sid), ctx);
    if (!snap) return;
    if (snap.parentSnapshotId !== null && !committed.has(snap.parentSnapshotId)) {
      this.find({
        kind: 'broken-chain',
        key: snapshotKey(wid, sid),
        message: `parent snapshot ${snap.parentSnapshotId} is missing`,
        ...ctx,
      });
    }
    for (const entry of snap.vms) {
      const vm = await this.meta('vm', vmKey(wid, sid, entry.id), ctx);
      if (!vm) continue;
      for (const d of vm.disks) {
        const imageKey = vmFileKey(wid, sid, vm.id, d.image);
        const manifest = await this.meta('manifest', vmFileKey(wid, sid, vm.id, d.manifest), ctx);
        if (!objects.has(imageKey)) {
          this.find({ kind: 'missing', key: imageKey, message: `image ${imageKey} is missing`, ...ctx });
          continue;
        }
        if (manifest) await this.image(imageKey, manifest, ctx);
        await this.chain(imageKey, d.backing, snap.parentSnapshotId, wid, objects, ctx);
      }
    }
  }

  private async image(
    key: string,
    manifest: MetadataOf<'manifest'>,
    ctx: { workloadId: string; snapshotId: string },
  ): Promise<void> {
    let file: Awaited<ReturnType<TargetBackend['openRead']>>;
    try {
      file = await this.backend.openRead(key);
    } catch (err) {
      this.find({ kind: 'unreadable', key, message: (err as Error).message, ...ctx });
      return;
    }
    try {
      this.report.checkedFiles++;
      if (file.size !== manifest.size) {
        this.find({
          kind: 'size-mismatch',
          key,
          message: `${key}: ${file.size} bytes, manifest says ${manifest.size}`,
          ...ctx,
        });
      }
      const expectedBlocks = Math.ceil(manifest.size / manifest.blockSize);
      if (manifest.blocks.length !== expectedBlocks) {
        this.find({
          kind: 'metadata-invalid',
          key,
          message: `${key}: manifest lists ${manifest.blocks.length} blocks for ${manifest.size} bytes`,
          ...ctx,
        });
      }
      let done = 0;
      await digestFile(
        (o, l) => file.read(o, l),
        file.size,
        manifest.blockSize,
        (i, digest) => {
          done = Math.min(file.size, (i + 1) * manifest.blockSize);
          this.opts.onProgress?.(done, key);
          const want = manifest.blocks[i];
          if (want !== undefined && want !== digest) {
            this.find({
              kind: 'block-mismatch',
              key,
              blockIndex: i,
              message: `${key}: block ${i} (bytes ${i * manifest.blockSize}..) differs from its manifest`,
              ...ctx,
            });
          }
        },
        // Read straight into the hashing memory where the file can (no fresh buffer per block).
        { readInto: file.readInto?.bind(file) },
      );
      this.report.checkedBytes += file.size;
    } catch (err) {
      this.find({ kind: 'unreadable', key, message: (err as Error).message, ...ctx });
    } finally {
      await file.close();
    }
  }

  /** The backing named in vm.json must be the parent's image, and the qcow2 chain must open. */
  private async chain(
    imageKey: string,
    backing: string | null,
    parentSid: string | null,
    wid: string,
    objects: Map<string, ObjectInfo>,
    ctx: { workloadId: string; snapshotId: string },
  ): Promise<void> {
    if (backing !== null) {
      let backingKey: string;
      try {
        backingKey = resolveRelativeKey(imageKey, backing);
      } catch (err) {
        this.find({ kind: 'broken-chain', key: imageKey, message: (err as Error).message, ...ctx });
        return;
      }
      if (!objects.has(backingKey)) {
        this.find({
          kind: 'broken-chain',
          key: imageKey,
          message: `${imageKey}: backing ${backing} does not exist`,
          ...ctx,
        });
        return;
      }
      if (parentSid === null || !backingKey.startsWith(snapshotPrefix(wid, parentSid))) {
        this.find({
          kind: 'broken-chain',
          key: imageKey,
          message: `${imageKey}: backing ${backing} is not in the parent snapshot`,
          ...ctx,
        });
      }
    }
    try {
      const chain = await this.chains.openChain(imageKey);
      try {
        const named = chain.top.backingFileName ?? null;
        if (named !== backing) {
          this.find({
            kind: 'broken-chain',
            key: imageKey,
            message: `${imageKey}: qcow2 header names backing ${named}, vm.json says ${backing}`,
            ...ctx,
          });
        }
      } finally {
        await chain.close();
      }
    } catch (err) {
      this.find({
        kind: 'broken-chain',
        key: imageKey,
        message: `${imageKey}: chain does not open: ${(err as Error).message}`,
        ...ctx,
      });
    }
  }
}
