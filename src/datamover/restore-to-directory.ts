import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseDomainXml } from '../hypervisor/domain-xml.js';
import { rewriteDomainXml } from '../hypervisor/domain-xml-rewrite.js';
import type { TargetBackend } from '../target/backend.js';
import { isSafeId } from '../target/keys.js';
import { snapshotKey, vmKey } from '../target/layout.js';
import type { SnapshotMeta, VmMeta } from '../target/metadata/schemas.js';
import type { Target } from '../target/target.js';
import type { RestoreProgress } from './restore-domain.js';
import { abortedError, RestoreError } from './restore-errors.js';
import { openBackupDisk } from './restore-source.js';
import { type RestoreFileFormat, restoreDiskToFile } from './restore-to-file.js';

export interface RestoreToDirectoryOptions {
  target: Target;
  snapshot: SnapshotMeta;
  /** Output directory; created when missing, must not already hold this snapshot's files. */
  dir: string;
  /** Default raw: what any hypervisor or dd takes. */
  format?: RestoreFileFormat;
  /** VM ids or names to restore; default all. */
  vms?: readonly string[];
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface DirectoryVmResult {
  id: string;
  name: string;
  dir: string;
  disks: Array<{ name: string; targetDev: string; path: string; dataBytes: number; virtualSize: number }>;
  /** The saved definition as it was (secrets redacted at backup time). */
  savedXml: string;
  /** The saved definition pointing at the restored images, ready for `virsh define`. */
  restoredXml: string;
}

export interface RestoreToDirectoryResult {
  workloadId: string;
  snapshotId: string;
  dir: string;
  vms: DirectoryVmResult[];
}

/** Folder name of a VM in the output: its id (safe by construction), as on the target. */
function vmFolder(vm: VmMeta): string {
  return isSafeId(vm.id) ? vm.id : vm.id.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * The offline disaster-recovery restore: every VM of a snapshot written to a plain directory —
 * each disk as a synthetic full (raw or qcow2, sparse), the saved domain XML, a copy of vm.json
 * and snapshot.json as stored, and a domain XML whose disks point at the restored files. Needs
 * nothing but the target: no libvirt, no controller, no database.
 *
 *   DIR/snapshot.json
 *   DIR/<vmId>/vm.json  domain.xml  domain-restored.xml  <disk>.<raw|qcow2>
 */
export async function restoreSnapshotToDirectory(
  opts: RestoreToDirectoryOptions,
): Promise<RestoreToDirectoryResult> {
  const { target, snapshot: snap, signal } = opts;
  const backend: TargetBackend = target.backend;
  const format = opts.format ?? 'raw';
  const dir = resolve(opts.dir);
  const entries = snap.vms.filter((v) => !opts.vms || opts.vms.includes(v.id) || opts.vms.includes(v.name));
  for (const want of opts.vms ?? []) {
    if (!snap.vms.some((v) => v.id === want || v.name === want)) {
      throw new RestoreError('RESTORE_VM_NOT_FOUND', `snapshot ${snap.id} has no VM ${want}`);
    }
  }
  const vms: VmMeta[] = [];
  for (const e of entries) {
    const vm = await target.readVm(snap.workloadId, snap.id, e.id);
    if (!vm)
      throw new RestoreError('RESTORE_VM_NOT_FOUND', `snapshot ${snap.id}: vm.json of ${e.id} is missing`);
    vms.push(vm);
  }
  for (const vm of vms) {
    const vmDir = join(dir, vmFolder(vm));
    if (existsSync(vmDir) && (await readdir(vmDir)).length > 0) {
      throw new RestoreError(
        'RESTORE_OUTPUT_EXISTS',
        `${vmDir} exists and is not empty; choose another --to`,
      );
    }
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'snapshot.json'), await backend.readAll(snapshotKey(snap.workloadId, snap.id)));

  const created: string[] = [];
  const results: DirectoryVmResult[] = [];
  try {
    const chainsPerVm = [];
    let bytesTotal = 0;
    for (const vm of vms) {
      const sizes = [];
      for (const d of vm.disks) {
        const c = await openBackupDisk(backend, vm, d);
        try {
          sizes.push((await c.extents()).reduce((n, e) => n + (e.kind === 'data' ? e.length : 0), 0));
        } finally {
          await c.close();
        }
      }
      bytesTotal += sizes.reduce((a, b) => a + b, 0);
      chainsPerVm.push(sizes);
    }
    let before = 0;
    for (const vm of vms) {
      const vmDir = join(dir, vmFolder(vm));
      await mkdir(vmDir, { recursive: true });
      await chmod(vmDir, 0o755);
      created.push(vmDir);
      await writeFile(
        join(vmDir, 'vm.json'),
        await backend.readAll(vmKey(vm.workloadId, vm.snapshotId, vm.id)),
      );
      await writeFile(join(vmDir, 'domain.xml'), vm.domainXml);
      const disks: DirectoryVmResult['disks'] = [];
      for (const d of vm.disks) {
        if (signal?.aborted) throw abortedError(signal, `restore of snapshot ${snap.id}`);
        const path = join(vmDir, `${d.name}.${format}`);
        const chain = await openBackupDisk(backend, vm, d);
        try {
          const r = await restoreDiskToFile(chain, path, {
            format,
            signal,
            onProgress: (done, total) =>
              opts.onProgress?.({
                vmId: vm.id,
                disk: d.name,
                targetDev: d.targetDev,
                diskBytesDone: done,
                diskBytesTotal: total,
                bytesDone: before + done,
                bytesTotal,
              }),
          });
          before += r.dataBytes;
          disks.push({
            name: d.name,
            targetDev: d.targetDev,
            path,
            dataBytes: r.dataBytes,
            virtualSize: r.virtualSize,
          });
        } finally {
          await chain.close();
        }
      }
      const restoredXml = restoredDefinition(vm, disks, format);
      await writeFile(join(vmDir, 'domain-restored.xml'), restoredXml);
      results.push({ id: vm.id, name: vm.name, dir: vmDir, disks, savedXml: vm.domainXml, restoredXml });
    }
  } catch (err) {
    await Promise.all(created.map((d) => rm(d, { recursive: true, force: true })));
    if (signal?.aborted && !(err instanceof RestoreError))
      throw abortedError(signal, `restore of snapshot ${snap.id}`);
    throw err;
  }
  return { workloadId: snap.workloadId, snapshotId: snap.id, dir, vms: results };
}

/**
 * The saved definition with its backed-up disks pointing at the restored files; name, UUID and MACs
 * kept (a DR restore rebuilds the same machine). Disks that were not backed up stay as saved.
 */
function restoredDefinition(
  vm: VmMeta,
  disks: DirectoryVmResult['disks'],
  format: RestoreFileFormat,
): string {
  try {
    const present = new Set(parseDomainXml(vm.domainXml).disks.map((d) => d.target));
    return rewriteDomainXml(vm.domainXml, {
      name: vm.name,
      uuid: vm.uuid || undefined,
      macs: 'keep',
      disks: Object.fromEntries(
        disks.filter((d) => present.has(d.targetDev)).map((d) => [d.targetDev, { path: d.path, format }]),
      ),
    });
  } catch {
    // A definition we cannot parse: the saved one is still written beside it, untouched.
    return vm.domainXml;
  }
}
