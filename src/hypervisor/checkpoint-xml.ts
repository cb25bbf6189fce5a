import { HypervisorError } from './errors.js';
import { child, childrenNamed, element, parseXml, serializeXml, textAt } from './xml-tree.js';

/**
 * Checkpoint and bitmap names end up as QEMU dirty-bitmap names and NBD meta-context names
 * (`qemu:dirty-bitmap:NAME`); keeping them to a plain alphabet avoids every quoting question.
 */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function assertCheckpointName(name: string): void {
  if (!NAME.test(name)) {
    throw new HypervisorError(
      'INVALID_ARGUMENT',
      `checkpoint name '${name}' must be 1-128 characters of letters, digits, '.', '_' and '-'`,
    );
  }
}

export interface CheckpointDiskSpec {
  /** Disk target (`vda`). */
  target: string;
  /** `bitmap`: track changes of this disk from now on; `no`: leave it out (raw disks, cdroms). */
  checkpoint: 'bitmap' | 'no';
}

export interface CheckpointInfo {
  name: string;
  parent?: string;
  /** Seconds since the epoch, as libvirt records it. */
  creationTime?: number;
  description?: string;
  disks: { target: string; checkpoint: 'bitmap' | 'no'; bitmap?: string }[];
}

/** `<domaincheckpoint>` naming every disk as included (bitmap) or excluded. */
export function buildCheckpointXml(
  name: string,
  disks: readonly CheckpointDiskSpec[],
  description?: string,
): string {
  assertCheckpointName(name);
  const root = element('domaincheckpoint', {}, [element('name', {}, [], name)]);
  if (description) root.children.push(element('description', {}, [], description));
  root.children.push(
    element(
      'disks',
      {},
      disks.map((d) => element('disk', { name: d.target, checkpoint: d.checkpoint })),
    ),
  );
  return serializeXml(root);
}

/** Reads `checkpoint-dumpxml` output (with or without the embedded `<domain>`). */
export function parseCheckpointXml(xml: string): CheckpointInfo {
  const root = parseXml(xml);
  if (root.name !== 'domaincheckpoint') {
    throw new HypervisorError('INVALID_XML', `expected <domaincheckpoint>, found <${root.name}>`);
  }
  const name = textAt(root, 'name');
  if (!name) throw new HypervisorError('INVALID_XML', 'checkpoint XML without <name>');
  const created = textAt(root, 'creationTime');
  return {
    name,
    parent: textAt(root, 'parent', 'name'),
    creationTime: created === undefined ? undefined : Number(created),
    description: textAt(root, 'description'),
    disks: childrenNamed(child(root, 'disks'), 'disk').map((d) => ({
      target: d.attrs.name ?? '',
      checkpoint: d.attrs.checkpoint === 'bitmap' ? 'bitmap' : 'no',
      bitmap: d.attrs.bitmap,
    })),
  };
}
