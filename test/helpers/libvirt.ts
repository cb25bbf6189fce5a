/**
 * Throwaway libvirt domains for real-component tests (libvirt + QEMU in TCG mode, no guest OS).
 *
 * - Names are `lbtest-<pid>-<label>-<random>`: the PID lets `removeStaleTestDomains` tell domains of
 *   a crashed earlier run (PID gone) from those of a test file running right now in parallel.
 * - Disks live in `$LIFEBOAT_TEST_VMDIR/<domain name>/` (world-traversable: QEMU runs as
 *   libvirt-qemu); pre-written data is put there with `qemu-io` before the domain is defined.
 * - The domains boot nothing (SeaBIOS finds no bootable disk and idles): enough for checkpoints,
 *   pull backups and block-layer writes. Guest writes are simulated with HMP `qemu-io` on the disk's
 *   qdev (see `guestWrite`).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { demoVmXml } from '../../src/cloud/libvirt/demo-vm.js';
import { parseDomainXml } from '../../src/hypervisor/domain-xml.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt.js';
import { child, childrenNamed, parseXml } from '../../src/hypervisor/xml-tree.js';

const run = promisify(execFile);

export interface LibvirtTestEnv {
  uri: string;
  /** World-accessible directory for test disks, scratch files and NBD sockets. */
  vmDir: string;
}

/** The variables scripts/services/libvirt.sh writes; a missing one is a failure, not a skip. */
export function libvirtTestEnv(): LibvirtTestEnv {
  const uri = process.env.LIBVIRT_DEFAULT_URI;
  const vmDir = process.env.LIFEBOAT_TEST_VMDIR;
  if (!uri || !vmDir) {
    throw new Error(
      'LIBVIRT_DEFAULT_URI / LIFEBOAT_TEST_VMDIR not set: start the libvirt test service (scripts/services/libvirt.sh start STATE_DIR) or run `npm test`',
    );
  }
  return { uri, vmDir };
}

export function testHypervisor(): LibvirtHypervisor {
  return new LibvirtHypervisor({ uri: libvirtTestEnv().uri });
}

export interface TestDiskSpec {
  format: 'qcow2' | 'raw';
  sizeMiB: number;
  /** Data written before the domain starts: `pattern` byte repeated over [offset, offset+length). */
  fill?: ReadonlyArray<{ pattern: number; offset: number; length: number }>;
}

export interface TestDisk {
  target: string;
  path: string;
  format: 'qcow2' | 'raw';
  sizeBytes: number;
}

export interface TestDomain {
  name: string;
  dir: string;
  disks: TestDisk[];
  hv: LibvirtHypervisor;
  /** Destroys, undefines (with checkpoint metadata) and deletes the files. Safe to call twice. */
  cleanup(): Promise<void>;
}

export interface CreateTestDomainOptions {
  /** Short word for the name (`backup`, `roundtrip`). */
  label: string;
  /** 1-3 disks, targets vda, vdb, vdc in order. */
  disks: readonly TestDiskSpec[];
  memoryMiB?: number;
  /** Start the domain after defining it (default true). */
  start?: boolean;
  /** Add the org.qemu.guest_agent.0 channel (nothing answers on it: there is no guest). */
  guestAgentChannel?: boolean;
}

const TARGETS = ['vda', 'vdb', 'vdc', 'vdd'];

async function qemuIo(format: string, path: string, command: string): Promise<void> {
  await run('qemu-io', ['-f', format, '-c', command, path]);
}

/**
 * A fresh `lbtest-<pid>-<label>-<random>` name (see above) for a domain or scratch directory that
 * `removeStaleTestDomains` may clean up after a crashed run.
 */
export function testDomainName(label: string): string {
  return `lbtest-${process.pid}-${label}-${Math.random().toString(36).slice(2, 7)}`;
}

export async function createTestDomain(options: CreateTestDomainOptions): Promise<TestDomain> {
  const env = libvirtTestEnv();
  const hv = testHypervisor();
  if (options.disks.length < 1 || options.disks.length > TARGETS.length) throw new Error('1-4 test disks');
  const name = testDomainName(options.label);
  const dir = join(env.vmDir, name);
  await mkdir(dir, { recursive: true });
  // QEMU (libvirt-qemu) must traverse it; libvirt relabels the image files themselves.
  await chmod(dir, 0o755);
  const disks: TestDisk[] = [];
  for (const [i, spec] of options.disks.entries()) {
    const target = TARGETS[i]!;
    const path = join(dir, `${target}.${spec.format}`);
    await run('qemu-img', ['create', '-q', '-f', spec.format, path, `${spec.sizeMiB}M`]);
    for (const f of spec.fill ?? [])
      await qemuIo(spec.format, path, `write -q -P ${f.pattern} ${f.offset} ${f.length}`);
    disks.push({ target, path, format: spec.format, sizeBytes: spec.sizeMiB * 1024 * 1024 });
  }
  const domain: TestDomain = {
    name,
    dir,
    disks,
    hv,
    cleanup: () => destroyTestDomain(hv, name, dir),
  };
  try {
    await hv.domains.define(
      demoVmXml(name, disks, options.memoryMiB ?? 64, {
        description: 'Lifeboat test domain: no operating system',
        guestAgentChannel: options.guestAgentChannel ?? false,
      }),
    );
    if (options.start ?? true) await hv.domains.start(name);
  } catch (err) {
    await domain.cleanup();
    throw err;
  }
  return domain;
}

/** Destroys and undefines a test domain (checkpoint metadata included) and deletes its directory. */
export async function destroyTestDomain(hv: LibvirtHypervisor, name: string, dir?: string): Promise<void> {
  if (await hv.domains.exists(name)) {
    await hv.domains.destroy(name);
    // A destroyed transient domain is gone already; a persistent one is shut off now.
    if (await hv.domains.exists(name)) await hv.domains.undefine(name);
  }
  await rm(dir ?? join(libvirtTestEnv().vmDir, name), { recursive: true, force: true });
}

function pidOfTestName(name: string): number | undefined {
  const m = /^lbtest-(\d+)-/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Removes `lbtest-` domains and directories left by test processes that no longer exist. */
export async function removeStaleTestDomains(hv: LibvirtHypervisor = testHypervisor()): Promise<string[]> {
  const stale = (name: string) => {
    const pid = pidOfTestName(name);
    return pid !== undefined && pid !== process.pid && !existsSync(`/proc/${pid}`);
  };
  const removed: string[] = [];
  for (const d of await hv.domains.list()) {
    if (!d.name.startsWith('lbtest-') || !stale(d.name)) continue;
    await destroyTestDomain(hv, d.name);
    removed.push(d.name);
  }
  const vmDir = libvirtTestEnv().vmDir;
  for (const entry of existsSync(vmDir) ? await readdir(vmDir) : []) {
    if (entry.startsWith('lbtest-') && stale(entry)) {
      await rm(join(vmDir, entry), { recursive: true, force: true });
      if (!removed.includes(entry)) removed.push(entry);
    }
  }
  return removed;
}

/**
 * The qdev ID of a disk in the running QEMU: libvirt's alias (`virtio-disk0` for vda...). The
 * guest-visible block device of a virtio-blk disk is `<alias>/virtio-backend` (what `info block`
 * shows as "Attached to: /machine/peripheral/virtio-disk0/virtio-backend").
 */
export async function diskQdevId(hv: LibvirtHypervisor, domain: string, target: string): Promise<string> {
  const root = parseXml(await hv.domains.dumpXml(domain));
  for (const disk of childrenNamed(child(root, 'devices'), 'disk')) {
    if (child(disk, 'target')?.attrs.dev !== target) continue;
    const alias = child(disk, 'alias')?.attrs.name;
    if (!alias) throw new Error(`${domain}: disk ${target} has no alias (is the domain running?)`);
    return alias;
  }
  throw new Error(`${domain}: no disk ${target}`);
}

/**
 * Simulates a guest write: `pattern` over [offset, offset+length) of disk `target`, issued through
 * the device's BlockBackend like a guest I/O, so dirty bitmaps and the backup's copy-before-write
 * see it. HMP `qemu-io` prints its own output (and range errors) on QEMU's stdout, not back to us,
 * so the range is checked here; only HMP-level errors (unknown device) come back as text.
 */
export async function guestWrite(
  domain: TestDomain,
  target: string,
  pattern: number,
  offset: number,
  length: number,
): Promise<void> {
  const disk = domain.disks.find((d) => d.target === target);
  if (!disk) throw new Error(`${domain.name}: no disk ${target}`);
  if (offset < 0 || length <= 0 || offset + length > disk.sizeBytes || offset % 512 || length % 512) {
    throw new Error(`guestWrite: bad range ${offset}+${length} for ${disk.sizeBytes}-byte disk`);
  }
  const qdev = await diskQdevId(domain.hv, domain.name, target);
  const cmd = `qemu-io -d ${qdev}/virtio-backend "write -P 0x${pattern.toString(16)} ${offset} ${length}"`;
  const out = await domain.hv.virsh.run(['qemu-monitor-command', domain.name, '--hmp', cmd]);
  if (out.trim().length > 0) throw new Error(`guestWrite ${domain.name}/${target}: ${out.trim()}`);
}

/** Current disk description of a test domain (for assertions). */
export async function describeTestDomain(domain: TestDomain) {
  return parseDomainXml(await domain.hv.domains.dumpXml(domain.name));
}
