import { HypervisorError } from './errors.js';
import {
  child,
  childrenNamed,
  element,
  parseXml,
  serializeXml,
  textAt,
  type XmlElement,
} from './xml-tree.js';

/** Where QEMU's NBD server of a pull backup listens. UNIX sockets need a directory QEMU can write. */
export type NbdServerSpec =
  | { transport: 'unix'; socket: string }
  | { transport: 'tcp'; host: string; port: number };

export interface PullBackupDiskSpec {
  target: string;
  /** false: the disk is not exported (raw disks in an incremental, cdroms). */
  backup: boolean;
  /**
   * Where QEMU keeps the point-in-time copy of blocks the guest overwrites while the backup runs.
   * libvirt creates it (qcow2) and deletes it when the job ends.
   */
  scratchFile?: string;
  /**
   * Per-disk override of the job's `incremental` (libvirt >= 7.x honours backupmode/incremental on
   * each disk): a checkpoint name = changes since it; null = this disk is exported in full (a disk
   * without a usable bitmap falls back to full without failing the job); undefined = the job's.
   */
  incremental?: string | null;
}

export interface PullBackupSpec {
  server: NbdServerSpec;
  /** Checkpoint name: export the changes since it (`qemu:dirty-bitmap:...` context); omitted = full. */
  incremental?: string;
  disks: readonly PullBackupDiskSpec[];
}

/** `<domainbackup mode='pull'>` for `virsh backup-begin`. */
export function buildPullBackupXml(spec: PullBackupSpec): string {
  const root = element('domainbackup', { mode: 'pull' });
  if (spec.incremental) root.children.push(element('incremental', {}, [], spec.incremental));
  root.children.push(
    spec.server.transport === 'unix'
      ? element('server', { transport: 'unix', socket: spec.server.socket })
      : element('server', { transport: 'tcp', name: spec.server.host, port: String(spec.server.port) }),
  );
  const disks = spec.disks.map((d) => {
    if (!d.backup) return element('disk', { name: d.target, backup: 'no' });
    const attrs: Record<string, string> = { name: d.target, backup: 'yes', type: 'file' };
    if (d.incremental === null) attrs.backupmode = 'full';
    else if (d.incremental !== undefined) {
      attrs.backupmode = 'incremental';
      attrs.incremental = d.incremental;
    }
    const el = element('disk', attrs);
    if (d.scratchFile) el.children.push(element('scratch', { file: d.scratchFile }));
    return el;
  });
  root.children.push(element('disks', {}, disks));
  return serializeXml(root);
}

/** One disk exported by a running pull backup, as `backup-dumpxml` reports it. */
export interface BackupExport {
  target: string;
  /** NBD export name (libvirt 9 uses the disk target: `vda`). */
  exportName: string;
  mode: 'full' | 'incremental';
  /** Checkpoint the incremental is relative to. */
  incremental?: string;
  /** Bitmap exported beside the data (`backup-vda`), incrementals only. */
  exportBitmap?: string;
  /** The NBD meta context that carries it: `qemu:dirty-bitmap:backup-vda`. */
  dirtyBitmapContext?: string;
  scratchFile?: string;
}

export interface BackupJobDescription {
  server?: NbdServerSpec;
  incremental?: string;
  exports: BackupExport[];
}

function parseServer(el: XmlElement | undefined): NbdServerSpec | undefined {
  if (!el) return undefined;
  if (el.attrs.transport === 'unix' && el.attrs.socket) return { transport: 'unix', socket: el.attrs.socket };
  if (el.attrs.port)
    return { transport: 'tcp', host: el.attrs.name ?? 'localhost', port: Number(el.attrs.port) };
  return undefined;
}

/** Reads `virsh backup-dumpxml` of a running pull backup. */
export function parseBackupXml(xml: string): BackupJobDescription {
  const root = parseXml(xml);
  if (root.name !== 'domainbackup') {
    throw new HypervisorError('INVALID_XML', `expected <domainbackup>, found <${root.name}>`);
  }
  const exports: BackupExport[] = [];
  for (const d of childrenNamed(child(root, 'disks'), 'disk')) {
    if (d.attrs.backup !== 'yes' || !d.attrs.name) continue;
    const bitmap = d.attrs.exportbitmap;
    exports.push({
      target: d.attrs.name,
      exportName: d.attrs.exportname ?? d.attrs.name,
      mode: d.attrs.backupmode === 'incremental' ? 'incremental' : 'full',
      incremental: d.attrs.incremental,
      exportBitmap: bitmap,
      dirtyBitmapContext: bitmap ? `qemu:dirty-bitmap:${bitmap}` : undefined,
      scratchFile: child(d, 'scratch')?.attrs.file,
    });
  }
  return { server: parseServer(child(root, 'server')), incremental: textAt(root, 'incremental'), exports };
}
