import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HypervisorError } from '../../hypervisor/errors.js';
import type { LibvirtHypervisor } from '../../hypervisor/libvirt.js';
import { runCommand } from '../../hypervisor/run-command.js';
import { CloudError } from '../errors.js';

/**
 * A tiny demo VM to try Lifeboat on a host that has none: a TCG domain (no KVM needed) with two small
 * disks — a qcow2 and a raw one — holding recognisable data, and no operating system (SeaBIOS finds
 * nothing to boot and idles, which is all a backup needs). Tests reuse it.
 */

export const DEMO_VM_NAME = 'lifeboat-demo';
/** Where libvirt's QEMU (user libvirt-qemu) can reach the disks. */
export const DEMO_VM_BASE_DIR = '/var/lib/libvirt/images';

export interface DemoDiskSpec {
  target: string;
  format: 'qcow2' | 'raw';
  sizeMiB: number;
  /** Byte pattern written over [offsetMiB, offsetMiB + lengthMiB). */
  data: ReadonlyArray<{ pattern: number; offsetMiB: number; lengthMiB: number }>;
}

export const DEMO_DISKS: readonly DemoDiskSpec[] = [
  {
    target: 'vda',
    format: 'qcow2',
    sizeMiB: 64,
    data: [
      { pattern: 0x11, offsetMiB: 0, lengthMiB: 2 },
      { pattern: 0x22, offsetMiB: 16, lengthMiB: 1 },
      { pattern: 0x33, offsetMiB: 40, lengthMiB: 3 },
    ],
  },
  {
    target: 'vdb',
    format: 'raw',
    sizeMiB: 32,
    data: [
      { pattern: 0x44, offsetMiB: 1, lengthMiB: 2 },
      { pattern: 0x55, offsetMiB: 20, lengthMiB: 1 },
    ],
  },
];

export interface DemoVmOptions {
  name?: string;
  /** Directory for the disk files (default /var/lib/libvirt/images/<name>); must be reachable by QEMU. */
  dir?: string;
  /** Start the domain after defining it (default true). */
  start?: boolean;
  memoryMiB?: number;
  disks?: readonly DemoDiskSpec[];
}

export interface DemoVm {
  name: string;
  uuid: string;
  dir: string;
  disks: Array<{ target: string; format: 'qcow2' | 'raw'; path: string; sizeBytes: number }>;
}

const MiB = 1024 * 1024;

export interface DemoVmXmlOptions {
  /** `<description>` of the domain (default: says it is the Lifeboat demo VM). */
  description?: string;
  /** Add the org.qemu.guest_agent.0 channel (nothing answers on it: there is no guest OS). */
  guestAgentChannel?: boolean;
}

/**
 * Domain XML of a demo VM (also the tests' throwaway domains): TCG, no OS, the given disks on virtio,
 * a user-mode NIC.
 */
export function demoVmXml(
  name: string,
  disks: ReadonlyArray<{ target: string; format: 'qcow2' | 'raw'; path: string }>,
  memoryMiB: number,
  options: DemoVmXmlOptions = {},
): string {
  const diskXml = disks
    .map(
      (d) => `    <disk type='file' device='disk'>
      <driver name='qemu' type='${d.format}'/>
      <source file='${xmlEscape(d.path)}'/>
      <target dev='${d.target}' bus='virtio'/>
    </disk>`,
    )
    .join('\n');
  const description =
    options.description ?? 'Lifeboat demo VM: no operating system, two small disks with test data';
  const agentXml = options.guestAgentChannel
    ? `    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n`
    : '';
  // type='qemu' is TCG: works on hosts without KVM. A user-mode NIC (slirp) needs no libvirt network,
  // so the `default` network (dnsmasq, bridge, iptables) is never started.
  return `<domain type='qemu'>
  <name>${xmlEscape(name)}</name>
  <description>${xmlEscape(description)}</description>
  <memory unit='MiB'>${memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
${diskXml}
    <interface type='user'><model type='virtio'/></interface>
${agentXml}    <serial type='pty'/>
  </devices>
</domain>
`;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');
}

async function run(program: string, args: string[]): Promise<void> {
  const res = await runCommand(program, args, { timeoutMs: 60_000 });
  if (res.exitCode !== 0) {
    throw new CloudError('CLOUD_DEMO_VM_FAILED', `${program} ${args[0]}: ${res.stderr.trim() || 'failed'}`);
  }
}

export async function createDemoVm(hv: LibvirtHypervisor, options: DemoVmOptions = {}): Promise<DemoVm> {
  const name = options.name ?? DEMO_VM_NAME;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    throw new CloudError('CLOUD_DEMO_VM_FAILED', `bad demo VM name ${JSON.stringify(name)}`);
  }
  if (await hv.domains.exists(name)) {
    throw new CloudError('CLOUD_DEMO_VM_FAILED', `a domain named ${name} exists already`, {
      details: { name },
    });
  }
  const dir = options.dir ?? join(DEMO_VM_BASE_DIR, name);
  await mkdir(dir, { recursive: true });
  // QEMU runs as libvirt-qemu: it must be able to walk into the directory.
  await chmod(dir, 0o755);
  const disks: DemoVm['disks'] = [];
  try {
    for (const spec of options.disks ?? DEMO_DISKS) {
      const path = join(dir, `${spec.target}.${spec.format}`);
      await run('qemu-img', ['create', '-q', '-f', spec.format, path, `${spec.sizeMiB}M`]);
      for (const d of spec.data) {
        const cmd = `write -q -P ${d.pattern} ${d.offsetMiB * MiB} ${d.lengthMiB * MiB}`;
        await run('qemu-io', ['-f', spec.format, '-c', cmd, path]);
      }
      disks.push({ target: spec.target, format: spec.format, path, sizeBytes: spec.sizeMiB * MiB });
    }
    const { uuid } = await hv.domains.define(demoVmXml(name, disks, options.memoryMiB ?? 64));
    if (options.start ?? true) await hv.domains.start(name);
    return { name, uuid, dir, disks };
  } catch (err) {
    await deleteDemoVm(hv, name, dir).catch(() => undefined);
    if (err instanceof CloudError) throw err;
    throw new CloudError('CLOUD_DEMO_VM_FAILED', `demo VM ${name}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Destroys and undefines the demo VM and deletes its disk directory. Safe when it is gone already. */
export async function deleteDemoVm(hv: LibvirtHypervisor, name = DEMO_VM_NAME, dir?: string): Promise<void> {
  if (await hv.domains.exists(name)) {
    await hv.domains.destroy(name);
    try {
      if (await hv.domains.exists(name)) await hv.domains.undefine(name);
    } catch (err) {
      if (!(err instanceof HypervisorError && err.code === 'DOMAIN_NOT_FOUND')) throw err;
    }
  }
  await rm(dir ?? join(DEMO_VM_BASE_DIR, name), { recursive: true, force: true });
}
