/**
 * Test snapshots for restore tests, built without the backup half: local qcow2 chains made with
 * qemu-img/qemu-io (one image per state: a base, then overlays with writes, zeroes and discards),
 * written to a target through the target layer's SnapshotWriter and the one-pass qcow2 writer —
 * a full from the base, then incrementals holding only each overlay's own clusters, backed by the
 * previous snapshot's image under its relative name. The oracle for state k is what
 * `qemu-img convert -O raw` reads from the local image k.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalFile } from '../src/disk/io.js';
import { ChainReader } from '../src/disk/qcow2/chain.js';
import { Qcow2Image } from '../src/disk/qcow2/reader.js';
import { writeQcow2 } from '../src/disk/qcow2/writer.js';
import { parseDomainXml } from '../src/hypervisor/domain-xml.js';
import type { TargetBackend } from '../src/target/backend.js';
import { WorkloadLease } from '../src/target/lease.js';
import { SnapshotWriter } from '../src/target/snapshot-writer.js';
import { Target } from '../src/target/target.js';
import { qemuImg, qemuIo, qemuRawSha256 } from './helpers/qemu-img.js';

export const MiB = 1024 * 1024;
export const OWNER = { installationId: 'restore-tests', host: 'test-host' };

export interface LocalChain {
  /** images[k] = the disk in state k (k = 0: standalone; k > 0: overlay of images[k-1]). */
  images: string[];
  /** sha256 of the raw content of each state. */
  hashes: string[];
  virtualSize: number;
}

/** What each state writes, as qemu-io commands (state 0 is the base image's content). */
export type StateOps = readonly (readonly string[])[];

export const DEFAULT_OPS: StateOps = [
  ['write -P 0x11 0 3M', 'write -P 0x12 5M 1M', 'write -P 0x13 9M 64k', 'write -P 0x14 15M 1M'],
  ['write -P 0x21 1M 512k', 'write -z 5M 256k', 'write -P 0x22 12M 2M'],
  ['discard 0 1M', 'write -P 0x31 9M 4k', 'write -z 12M 1M'],
  ['write -P 0x41 2M 3M', 'write -P 0x42 15M 64k', 'write -z 9M 64k'],
];

/** Builds one chain of states in `dir`, files named `<label>-<k>.qcow2`. */
export async function buildLocalChain(
  dir: string,
  label: string,
  sizeMiB: number,
  ops: StateOps = DEFAULT_OPS,
): Promise<LocalChain> {
  const images: string[] = [];
  const hashes: string[] = [];
  for (const [k, cmds] of ops.entries()) {
    const img = join(dir, `${label}-${k}.qcow2`);
    if (k === 0) await qemuImg('create', '-q', '-f', 'qcow2', img, `${sizeMiB}M`);
    else await qemuImg('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', `${label}-${k - 1}.qcow2`, img);
    if (cmds.length > 0) await qemuIo(img, [...cmds]);
    images.push(img);
    hashes.push(await qemuRawSha256(img, dir));
  }
  return { images, hashes, virtualSize: sizeMiB * MiB };
}

export interface FixtureDisk {
  name: string;
  targetDev: string;
  chain: LocalChain;
}

export interface FixtureVm {
  id: string;
  name: string;
  uuid: string;
  domainXml: string;
  disks: FixtureDisk[];
}

/** A minimal saved definition with one virtio disk per target and a NIC on libvirt network `network`. */
export function sampleDomainXml(name: string, uuid: string, targets: string[], network = 'default'): string {
  const disks = targets
    .map(
      (t) =>
        `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/${name}-${t}.qcow2'/><target dev='${t}' bus='virtio'/></disk>`,
    )
    .join('');
  return `<domain type='qemu'><name>${name}</name><uuid>${uuid}</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>${disks}<interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='${network}'/><model type='virtio'/></interface></devices></domain>`;
}

/**
 * Writes workload `workloadId` with snapshots `snapshotIds[k]` = state k of every disk of every VM
 * (full first, incrementals after). Returns the target.
 */
export async function writeFixtureSnapshots(
  backend: TargetBackend,
  workloadId: string,
  vms: readonly FixtureVm[],
  snapshotIds: readonly string[],
): Promise<Target> {
  const target = await Target.init(backend);
  const lease = await WorkloadLease.acquire(backend, workloadId, OWNER);
  try {
    const now = new Date().toISOString();
    await target.writeWorkload(lease, {
      id: workloadId,
      name: `restore fixture ${workloadId}`,
      description: '',
      labels: { 'project.name': 'tests' },
      vms: vms.map((v) => ({ id: v.id, name: v.name, uuid: v.uuid })),
      policy: null,
      createdAt: now,
      updatedAt: now,
    });
    for (const [k, sid] of snapshotIds.entries()) {
      const w = await SnapshotWriter.begin(target, lease, {
        snapshotId: sid,
        type: k === 0 ? 'full' : 'incremental',
        parentSnapshotId: k === 0 ? null : snapshotIds[k - 1]!,
        startedAt: new Date(Date.parse('2026-01-01T00:00:00Z') + k * 3600_000),
      });
      for (const vm of vms) {
        const disks = [];
        for (const d of vm.disks) {
          const image = d.chain.images[k]!;
          const merged = await ChainReader.open(await LocalFile.open(image));
          try {
            let extents = await merged.extents();
            if (k > 0) {
              const own = await Qcow2Image.open(await LocalFile.open(image));
              extents = await own.extents();
              await own.close();
            }
            const backing = w.backingFor(vm.id, d.name);
            const sink = await w.createDiskWriter(vm.id, d.name);
            await writeQcow2(
              {
                virtualSize: merged.virtualSize,
                extents,
                source: merged,
                backing: backing === null ? undefined : { name: backing, format: 'qcow2' },
              },
              sink,
            );
            await sink.close();
            disks.push({
              name: d.name,
              targetDev: d.targetDev,
              virtualSize: merged.virtualSize,
              allocatedBytes: (await merged.extents()).reduce(
                (n, e) => n + (e.kind === 'data' ? e.length : 0),
                0,
              ),
              backing,
              mode: (k === 0 ? 'full' : 'incremental') as 'full' | 'incremental',
              checkpointName: `lifeboat-${sid}`,
              checkpointXml: null,
              fallbackWarning: null,
            });
          } finally {
            await merged.close();
          }
        }
        const desc = parseDomainXml(vm.domainXml);
        await w.writeVm({
          id: vm.id,
          name: vm.name,
          uuid: vm.uuid,
          domainXml: vm.domainXml,
          memoryBytes: desc.memoryBytes,
          vcpus: desc.vcpus,
          disks,
          nics: desc.nics.map((n) => ({
            mac: n.mac ?? null,
            model: n.model ?? null,
            network: n.source ?? null,
          })),
          networks: desc.nics
            .filter((n) => n.type === 'network' && n.source)
            .map((n) => ({ name: n.source! })),
        });
      }
      await w.commit({ finishedAt: new Date(Date.parse('2026-01-01T00:10:00Z') + k * 3600_000) });
    }
  } finally {
    await lease.release();
  }
  return target;
}

/** Copies state image k of a chain to a standalone qcow2 (for in-place tests: the "current" disk). */
export async function flattenState(
  chain: LocalChain,
  k: number,
  out: string,
  format: 'qcow2' | 'raw',
): Promise<void> {
  if (format === 'qcow2' && k === 0) {
    await copyFile(chain.images[0]!, out);
    return;
  }
  await qemuImg('convert', '-O', format, chain.images[k]!, out);
}
