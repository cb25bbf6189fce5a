import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Extent } from '../src/disk/extent.js';
import { writeQcow2 } from '../src/disk/qcow2/writer.js';
import type { TargetBackend } from '../src/target/backend.js';
import { WorkloadLease } from '../src/target/lease.js';
import { SnapshotWriter } from '../src/target/snapshot-writer.js';
import { Target } from '../src/target/target.js';

export const M = 1024 * 1024;
export const OWNER = { installationId: 'install-a', host: 'host-a' };

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random bytes (SHA-256 counter stream), so images do not compress away. */
export function patternBytes(seed: string, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let off = 0, i = 0; off < length; off += 32, i++) {
    createHash('sha256')
      .update(`${seed}:${i}`)
      .digest()
      .copy(out, off, 0, Math.min(32, length - off));
  }
  return out;
}

/** A virtual disk made of data ranges over zeros: what the writer reads from. */
export function memoryDisk(size: number, ranges: Array<[number, number, string]>) {
  const data = Buffer.alloc(size);
  for (const [off, len, seed] of ranges) patternBytes(seed, len).copy(data, off);
  const extents: Extent[] = [];
  let pos = 0;
  for (const [off, len] of [...ranges].sort((a, b) => a[0] - b[0])) {
    if (off > pos) extents.push({ offset: pos, length: off - pos, kind: 'unallocated' });
    extents.push({ offset: off, length: len, kind: 'data' });
    pos = off + len;
  }
  if (pos < size) extents.push({ offset: pos, length: size - pos, kind: 'unallocated' });
  return { data, extents, source: { read: async (o: number, l: number) => data.subarray(o, o + l) } };
}

export const DOMAIN_XML = `<domain type='kvm'><name>web1</name><uuid>6b0c8d3e-1111-2222-3333-444455556666</uuid>
<memory unit='KiB'>524288</memory><vcpu>1</vcpu><devices><graphics type='vnc' port='-1' passwd='hunter2'/></devices></domain>`;

/**
 * Writes a workload "wl-1" with one VM "vm-1" (disk "vda", 16 MiB virtual): a full snapshot "s1",
 * then an incremental "s2" whose qcow2 overlay backs onto s1 by relative name.
 */
export async function writeSampleWorkload(backend: TargetBackend, opts: { incremental?: boolean } = {}) {
  const target = await Target.init(backend, { targetId: 'target-test' });
  const lease = await WorkloadLease.acquire(backend, 'wl-1', OWNER);
  const now = new Date().toISOString();
  await target.writeWorkload(lease, {
    id: 'wl-1',
    name: 'web app',
    description: 'web + db',
    labels: { 'project.id': 'p1', 'project.name': 'Project One', 'owner.id': 'u1', 'owner.name': 'alice' },
    vms: [{ id: 'vm-1', name: 'web1' }],
    policy: { name: 'daily', schedule: '0 1 * * *', retention: '7d', fullEvery: 7 },
    createdAt: now,
    updatedAt: now,
  });
  const full = memoryDisk(16 * M, [
    [0, 3 * M, 'a'],
    [8 * M, 2 * M + 4096, 'b'],
  ]);
  await writeSnapshot(target, lease, 's1', null, full, undefined);
  if (opts.incremental !== false) {
    const inc = memoryDisk(16 * M, [[M, M, 'c']]);
    await writeSnapshot(target, lease, 's2', 's1', inc, 'x');
  }
  await lease.release();
  return target;
}

async function writeSnapshot(
  target: Target,
  lease: WorkloadLease,
  sid: string,
  parent: string | null,
  disk: ReturnType<typeof memoryDisk>,
  _tag: string | undefined,
) {
  const w = await SnapshotWriter.begin(target, lease, {
    snapshotId: sid,
    type: parent === null ? 'full' : 'incremental',
    parentSnapshotId: parent,
  });
  const backing = w.backingFor('vm-1', 'vda');
  const sink = await w.createDiskWriter('vm-1', 'vda');
  await writeQcow2(
    {
      virtualSize: 16 * M,
      extents: disk.extents,
      source: disk.source,
      backing: backing === null ? undefined : { name: backing, format: 'qcow2' },
    },
    sink,
  );
  await sink.close();
  await w.writeVm({
    id: 'vm-1',
    name: 'web1',
    uuid: '6b0c8d3e-1111-2222-3333-444455556666',
    domainXml: DOMAIN_XML,
    memoryBytes: 512 * M,
    vcpus: 1,
    disks: [
      {
        name: 'vda',
        targetDev: 'vda',
        virtualSize: 16 * M,
        allocatedBytes: disk.extents.filter((e) => e.kind === 'data').reduce((n, e) => n + e.length, 0),
        backing,
        mode: parent === null ? 'full' : 'incremental',
        checkpointName: `lifeboat-${sid}`,
        checkpointXml: `<domaincheckpoint><name>lifeboat-${sid}</name></domaincheckpoint>`,
        fallbackWarning: null,
      },
    ],
    nics: [{ mac: '52:54:00:00:00:01', model: 'virtio', network: 'default' }],
    networks: [{ name: 'default' }],
  });
  return w.commit();
}
