import type { DomainDescription } from '../hypervisor/domain-description.js';
import type { VmInput } from '../target/snapshot-writer.js';

/**
 * The vm.json of a backed-up domain (docs/target-format.md 4.5): the saved definition as libvirt
 * keeps it (persistent XML; SnapshotWriter redacts secrets), the parsed summary a restore plan
 * and a fresh installation need, and one entry per disk written.
 */
export interface VmDiskRecord {
  name: string;
  targetDev: string;
  virtualSize: number;
  allocatedBytes: number;
  backing: string | null;
  mode: 'full' | 'incremental';
  checkpointName: string | null;
  checkpointXml: string | null;
  fallbackWarning: string | null;
}

export function buildVmInput(args: {
  vmId: string;
  description: DomainDescription;
  uuid: string;
  domainXml: string;
  disks: VmDiskRecord[];
  cloud?: Record<string, unknown>;
}): VmInput {
  const d = args.description;
  const networks = [
    ...new Set(d.nics.filter((n) => n.type === 'network' && n.source).map((n) => n.source!)),
  ].map((name) => ({ name }));
  return {
    id: args.vmId,
    name: d.name,
    uuid: args.uuid,
    domainXml: args.domainXml,
    memoryBytes: d.memoryBytes,
    vcpus: d.vcpus,
    nics: d.nics.map((n) => ({
      mac: n.mac ?? null,
      model: n.model ?? null,
      network: n.type === 'network' ? (n.source ?? null) : null,
      bridge: n.type === 'bridge' ? (n.source ?? null) : null,
    })),
    networks,
    disks: args.disks,
    cloud: args.cloud ?? {},
  };
}
