import type { ByteSink } from '../disk/io.js';
import { TargetError } from './errors.js';
import { HashingSink, type ImageDigest } from './hashing-sink.js';
import { assertSafeId } from './keys.js';
import {
  backingReference,
  diskImageKey,
  diskImageName,
  diskManifestKey,
  diskManifestName,
  snapshotKey,
  snapshotPrefix,
  vmKey,
} from './layout.js';
import type { WorkloadLease } from './lease.js';
import type { MetadataInput } from './metadata/codec.js';
import type { SnapshotMeta, VmDiskMeta } from './metadata/schemas.js';
import { writeMetadata } from './metadata-io.js';
import { redactDomainXml } from './redact.js';
import type { Target } from './target.js';

export interface BeginSnapshot {
  snapshotId: string;
  type: 'full' | 'incremental';
  parentSnapshotId: string | null;
  startedAt?: Date;
}

/** What a caller says about one VM; image/manifest names and stored sizes are filled in here. */
export type VmInput = Omit<
  MetadataInput<'vm'>,
  'workloadId' | 'snapshotId' | 'disks' | 'networks' | 'cloud'
> & {
  disks: Array<Omit<VmDiskMeta, 'image' | 'manifest' | 'storedBytes' | 'format'>>;
  networks?: MetadataInput<'vm'>['networks'];
  cloud?: Record<string, unknown>;
};

/** A disk image being streamed to the target; close() also writes its manifest. */
export class DiskImageWriter implements ByteSink {
  private result: ImageDigest | undefined;

  /**
   * Present when the target's sink lends buffers back: the qcow2 writer then reads into recycled
   * buffers instead of a fresh one per chunk (see ByteSink.writeBorrowed).
   */
  readonly writeBorrowed?: (chunk: Buffer, release: () => void) => Promise<void>;

  constructor(
    private readonly sink: HashingSink,
    private readonly onClosed: (digest: ImageDigest) => Promise<void>,
  ) {
    if (sink.writeBorrowed) this.writeBorrowed = sink.writeBorrowed;
  }

  write(chunk: Buffer): Promise<void> {
    return this.sink.write(chunk);
  }

  async close(): Promise<void> {
    await this.sink.close();
    this.result = this.sink.digest();
    await this.onClosed(this.result);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }

  get digest(): ImageDigest | undefined {
    return this.result;
  }
}

/**
 * Writes one snapshot by the commit protocol (docs/target-format.md, "Commit protocol"): the folder
 * fills with images, manifests and vm.json files, and snapshot.json is written last, after the lease
 * is confirmed. Until then scan ignores the folder; abort() removes it.
 */
export class SnapshotWriter {
  private readonly images = new Map<string, ImageDigest>();
  private readonly vms: SnapshotMeta['vms'] = [];
  private readonly sizes = { virtualBytes: 0, allocatedBytes: 0, storedBytes: 0 };
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(
    readonly target: Target,
    readonly lease: WorkloadLease,
    readonly workloadId: string,
    readonly snapshot: Required<BeginSnapshot>,
  ) {}

  static async begin(target: Target, lease: WorkloadLease, spec: BeginSnapshot): Promise<SnapshotWriter> {
    const wid = lease.workloadId;
    assertSafeId(spec.snapshotId, 'snapshot id');
    if ((spec.type === 'incremental') !== (spec.parentSnapshotId !== null)) {
      throw new TargetError('TARGET_STATE', 'an incremental snapshot needs a parent, a full one has none');
    }
    await lease.assertHeld();
    if (await target.backend.stat(snapshotKey(wid, spec.snapshotId))) {
      throw new TargetError(
        'TARGET_EXISTS',
        `snapshot ${spec.snapshotId} of workload ${wid} is already committed`,
      );
    }
    if (spec.parentSnapshotId !== null && !(await target.readSnapshot(wid, spec.parentSnapshotId))) {
      throw new TargetError(
        'TARGET_NOT_FOUND',
        `parent snapshot ${spec.parentSnapshotId} of workload ${wid} is not on the target`,
      );
    }
    return new SnapshotWriter(target, lease, wid, { ...spec, startedAt: spec.startedAt ?? new Date() });
  }

  get snapshotId(): string {
    return this.snapshot.snapshotId;
  }

  /** The relative backing name to store in an incremental image of this disk (null for a full). */
  backingFor(vmId: string, disk: string): string | null {
    const parent = this.snapshot.parentSnapshotId;
    return parent === null ? null : backingReference(this.workloadId, this.snapshotId, parent, vmId, disk);
  }

  /** A sink for one disk image; the manifest is computed as the bytes pass and written on close. */
  async createDiskWriter(vmId: string, disk: string): Promise<DiskImageWriter> {
    this.assertOpen();
    const imageKey = diskImageKey(this.workloadId, this.snapshotId, vmId, disk);
    const inner = await this.target.backend.createWriter(imageKey);
    return new DiskImageWriter(new HashingSink(inner), async (digest) => {
      await writeMetadata(
        this.target.backend,
        'manifest',
        diskManifestKey(this.workloadId, this.snapshotId, vmId, disk),
        {
          ...digest,
        },
      );
      this.images.set(`${vmId}/${disk}`, digest);
    });
  }

  /** Writes vm.json once every disk it lists has been written through createDiskWriter. */
  async writeVm(vm: VmInput): Promise<void> {
    this.assertOpen();
    assertSafeId(vm.id, 'vm id');
    const disks: VmDiskMeta[] = vm.disks.map((d) => {
      const digest = this.images.get(`${vm.id}/${d.name}`);
      if (!digest) throw new TargetError('TARGET_STATE', `vm ${vm.id}: disk ${d.name} was not written`);
      const expected = this.backingFor(vm.id, d.name);
      if (d.mode === 'incremental' && d.backing !== expected) {
        throw new TargetError('TARGET_STATE', `vm ${vm.id} disk ${d.name}: backing must be ${expected}`);
      }
      return {
        ...d,
        format: 'qcow2',
        image: diskImageName(d.name),
        manifest: diskManifestName(d.name),
        storedBytes: digest.size,
      };
    });
    await writeMetadata(this.target.backend, 'vm', vmKey(this.workloadId, this.snapshotId, vm.id), {
      ...vm,
      networks: vm.networks ?? [],
      cloud: vm.cloud ?? {},
      domainXml: redactDomainXml(vm.domainXml),
      workloadId: this.workloadId,
      snapshotId: this.snapshotId,
      disks,
    });
    const stored = disks.reduce((n, d) => n + d.storedBytes, 0);
    this.vms.push({ id: vm.id, name: vm.name, disks: disks.map((d) => d.name), storedBytes: stored });
    for (const d of disks) {
      this.sizes.virtualBytes += d.virtualSize;
      this.sizes.allocatedBytes += d.allocatedBytes;
      this.sizes.storedBytes += d.storedBytes;
    }
  }

  /** Writes snapshot.json — the commit marker — after confirming the lease. */
  async commit(
    opts: { finishedAt?: Date; status?: SnapshotMeta['status']; warnings?: SnapshotMeta['warnings'] } = {},
  ): Promise<SnapshotMeta> {
    this.assertOpen();
    const warnings = opts.warnings ?? [];
    const doc: MetadataInput<'snapshot'> = {
      id: this.snapshotId,
      workloadId: this.workloadId,
      type: this.snapshot.type,
      parentSnapshotId: this.snapshot.parentSnapshotId,
      startedAt: this.snapshot.startedAt.toISOString(),
      finishedAt: (opts.finishedAt ?? new Date()).toISOString(),
      status: opts.status ?? (warnings.length > 0 ? 'warnings' : 'ok'),
      sizes: { ...this.sizes },
      vms: this.vms,
      warnings,
    };
    await this.lease.assertHeld();
    await writeMetadata(this.target.backend, 'snapshot', snapshotKey(this.workloadId, this.snapshotId), doc);
    this.state = 'committed';
    return (await this.target.readSnapshot(this.workloadId, this.snapshotId))!;
  }

  /** Removes everything written so far (the snapshot was never committed). */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.target.backend.deletePrefix(snapshotPrefix(this.workloadId, this.snapshotId));
  }

  private assertOpen(): void {
    if (this.state !== 'open')
      throw new TargetError('TARGET_STATE', `snapshot ${this.snapshotId} is ${this.state}`);
  }
}
