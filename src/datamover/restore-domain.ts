import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ChainReader } from '../disk/qcow2/chain.js';
import { parseDomainXml } from '../hypervisor/domain-xml.js';
import { type NicTarget, rewriteDomainXml } from '../hypervisor/domain-xml-rewrite.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { child, childrenNamed, parseXml, serializeXml } from '../hypervisor/xml-tree.js';
import type { TargetBackend } from '../target/backend.js';
import type { VmMeta } from '../target/metadata/schemas.js';
import { abortedError, RestoreError } from './restore-errors.js';
import { type HostNetworks, planDisks, planNetworks, type SkippedDisk } from './restore-plan.js';
import { openBackupDisk } from './restore-source.js';
import { type RestoreFileFormat, restoreDiskToFile } from './restore-to-file.js';

/** Progress of a restore: the disk being written and the totals over every disk. */
export interface RestoreProgress {
  vmId: string;
  disk: string;
  targetDev: string;
  diskBytesDone: number;
  diskBytesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface RestoreDomainOptions {
  backend: TargetBackend;
  /** The VM to restore (from findSnapshot + findVm). */
  vm: VmMeta;
  hypervisor: LibvirtHypervisor;
  /** Name of the new domain; it must not exist. */
  name: string;
  /** Where the new images go (created when missing). */
  dir: string;
  /** Image format of the new disks (default qcow2). */
  format?: RestoreFileFormat;
  /** Saved network/bridge name (or `user`) -> where the new NIC is plugged. */
  networkMap?: Readonly<Record<string, NicTarget>>;
  /** Where NICs go whose network does not exist here (else such a restore fails up front). */
  defaultNetwork?: NicTarget;
  /** Target devices (or disk names) to restore; default every backed-up disk. */
  disks?: readonly string[];
  start?: boolean;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface RestoredDisk {
  targetDev: string;
  name: string;
  path: string;
  format: RestoreFileFormat;
  virtualSize: number;
  dataBytes: number;
}

export interface RestoreDomainResult {
  name: string;
  uuid: string;
  xml: string;
  disks: RestoredDisk[];
  skipped: SkippedDisk[];
  started: boolean;
}

/** libvirt networks and host interfaces, to check a restored NIC has somewhere to plug in. */
export async function hostNetworks(hv: LibvirtHypervisor): Promise<HostNetworks> {
  const out = await hv.virsh.run(['net-list', '--all', '--name']);
  const networks = new Set(
    out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0),
  );
  const interfaces = new Set(existsSync('/sys/class/net') ? await readdir('/sys/class/net') : []);
  return { networks, interfaces };
}

/** Empties removable-media drives whose image is not on this host (the domain would not start). */
function ejectDrives(xml: string, targets: readonly string[]): string {
  if (targets.length === 0) return xml;
  const root = parseXml(xml);
  for (const disk of childrenNamed(child(root, 'devices'), 'disk')) {
    const dev = child(disk, 'target')?.attrs.dev;
    if (dev && targets.includes(dev)) disk.children = disk.children.filter((c) => c.name !== 'source');
  }
  return serializeXml(root);
}

/**
 * Restores one VM of a snapshot as a NEW domain: every selected disk is read as a synthetic full
 * (the whole chain through one merged map, ranged reads on S3) into a new sparse image in `dir`,
 * then a domain is defined from the saved definition with a new name, UUID and MACs, the new disk
 * paths and formats, and the mapped networks, and started when asked.
 *
 * Everything that can be checked is checked before the first byte is written (name free, networks
 * present, output files absent, chains open). On failure or cancel, the images written so far are
 * removed and no domain is defined.
 */
export async function restoreDomain(opts: RestoreDomainOptions): Promise<RestoreDomainResult> {
  const { vm, hypervisor: hv, signal } = opts;
  const format = opts.format ?? 'qcow2';
  const what = `restore of ${vm.name} (${vm.id}) from snapshot ${vm.snapshotId}`;
  if (await hv.domains.exists(opts.name)) {
    throw new RestoreError(
      'RESTORE_DOMAIN_EXISTS',
      `a domain named ${opts.name} exists already on ${hv.uri}`,
    );
  }
  const saved = parseDomainXml(vm.domainXml);
  const diskPlan = planDisks(saved.disks, vm.disks, { select: opts.disks, fileExists: existsSync });
  const networks = planNetworks(
    saved.nics,
    opts.networkMap ?? {},
    await hostNetworks(hv),
    opts.defaultNetwork,
  );

  const dir = resolve(opts.dir);
  const outputs = diskPlan.restore.map((d) => ({
    meta: d,
    path: join(dir, `${opts.name}-${d.targetDev}.${format}`),
  }));
  for (const o of outputs) {
    if (existsSync(o.path)) {
      throw new RestoreError('RESTORE_OUTPUT_EXISTS', `${o.path} already exists; it is never overwritten`);
    }
  }
  if (!existsSync(dir)) {
    await mkdir(dir, { recursive: true });
    // QEMU runs as libvirt-qemu: it must be able to reach the images.
    await chmod(dir, 0o755);
  }

  const chains: ChainReader[] = [];
  const written: RestoredDisk[] = [];
  try {
    for (const o of outputs) chains.push(await openBackupDisk(opts.backend, vm, o.meta));
    const totals = await Promise.all(
      chains.map(async (c) =>
        (await c.extents()).reduce((n, e) => n + (e.kind === 'data' ? e.length : 0), 0),
      ),
    );
    const bytesTotal = totals.reduce((a, b) => a + b, 0);
    let before = 0;
    for (const [i, o] of outputs.entries()) {
      if (signal?.aborted) throw abortedError(signal, what);
      const r = await restoreDiskToFile(chains[i]!, o.path, {
        format,
        signal,
        onProgress: (done, total) =>
          opts.onProgress?.({
            vmId: vm.id,
            disk: o.meta.name,
            targetDev: o.meta.targetDev,
            diskBytesDone: done,
            diskBytesTotal: total,
            bytesDone: before + done,
            bytesTotal,
          }),
      });
      before += r.dataBytes;
      written.push({ targetDev: o.meta.targetDev, name: o.meta.name, ...r });
    }
    if (signal?.aborted) throw abortedError(signal, what);

    const uuid = randomUUID();
    let xml = rewriteDomainXml(vm.domainXml, {
      name: opts.name,
      uuid,
      macs: 'generate',
      disks: Object.fromEntries(written.map((w) => [w.targetDev, { path: w.path, format: w.format }])),
      removeDisks: diskPlan.remove,
      networks,
    });
    xml = ejectDrives(xml, diskPlan.eject);
    const defined = await hv.domains.define(xml);
    const result: RestoreDomainResult = {
      name: defined.name,
      uuid: defined.uuid,
      xml,
      disks: written,
      skipped: diskPlan.skipped,
      started: false,
    };
    if (opts.start) {
      try {
        await hv.domains.start(defined.name);
      } catch (err) {
        // The domain and its disks stay: they are the restore; only booting failed.
        throw new RestoreError(
          'RESTORE_START_FAILED',
          `domain ${defined.name} was restored and defined but did not start: ${(err as Error).message}`,
          { cause: err, details: { domain: defined.name, uuid: defined.uuid } },
        );
      }
      result.started = true;
    }
    return result;
  } catch (err) {
    if (!(err instanceof RestoreError && err.code === 'RESTORE_START_FAILED')) {
      await Promise.all(written.map((w) => rm(w.path, { force: true })));
    }
    if (signal?.aborted && !(err instanceof RestoreError && err.code === 'RESTORE_ABORTED')) {
      throw abortedError(signal, what);
    }
    throw err;
  } finally {
    await Promise.all(chains.map((c) => c.close().catch(() => {})));
  }
}
