import { setTimeout as sleep } from 'node:timers/promises';
import type { DomainDescription } from './domain-description.js';
import { parseDomainXml } from './domain-xml.js';
import { HypervisorError } from './errors.js';
import type { Virsh } from './virsh.js';

export type DomainState = 'running' | 'paused' | 'shutoff' | 'other';

export interface DomainSummary {
  name: string;
  uuid: string;
  state: DomainState;
  persistent: boolean;
}

const lines = (s: string): string[] =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);

/** Maps `virsh domstate` words to the four states Lifeboat acts on. */
export function parseDomainState(text: string): DomainState {
  const s = text.trim().toLowerCase();
  if (s.startsWith('running')) return 'running';
  if (s.startsWith('paused')) return 'paused';
  if (s.startsWith('shut off')) return 'shutoff';
  return 'other';
}

/** `virsh domblkinfo DOM --all` rows: target, capacity, allocation, physical (bytes; `-` when empty). */
export function parseDomblkinfoAll(text: string): Map<string, { capacity?: number; allocation?: number }> {
  const out = new Map<string, { capacity?: number; allocation?: number }>();
  for (const l of lines(text)) {
    const [target, capacity, allocation] = l.split(/\s+/);
    if (!target) continue;
    const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
    out.set(target, { capacity: num(capacity), allocation: num(allocation) });
  }
  return out;
}

/** Domain lifecycle through virsh. Domains are named by name or UUID (virsh accepts both). */
export class LibvirtDomains {
  constructor(private readonly virsh: Virsh) {}

  async list(): Promise<DomainSummary[]> {
    const uuidsWith = async (...flags: string[]) =>
      new Set(lines(await this.virsh.run(['list', ...flags, '--uuid'])));
    const all = lines(await this.virsh.run(['list', '--all', '--uuid', '--name']));
    const [running, paused, shutoff, persistent] = await Promise.all([
      uuidsWith('--state-running'),
      uuidsWith('--state-paused'),
      uuidsWith('--all', '--state-shutoff'),
      uuidsWith('--all', '--persistent'),
    ]);
    return all.map((l) => {
      const sp = l.indexOf(' ');
      const uuid = l.slice(0, sp);
      const state: DomainState = running.has(uuid)
        ? 'running'
        : paused.has(uuid)
          ? 'paused'
          : shutoff.has(uuid)
            ? 'shutoff'
            : 'other';
      return { uuid, name: l.slice(sp + 1).trim(), state, persistent: persistent.has(uuid) };
    });
  }

  /** `domain` may be a name, an id or a UUID (`domuuid` would not look a domain up by its UUID). */
  async exists(domain: string): Promise<boolean> {
    try {
      await this.virsh.run(['domstate', domain]);
      return true;
    } catch (err) {
      if (err instanceof HypervisorError && err.code === 'DOMAIN_NOT_FOUND') return false;
      throw err;
    }
  }

  async state(domain: string): Promise<DomainState> {
    return parseDomainState(await this.virsh.run(['domstate', domain]));
  }

  async uuid(domain: string): Promise<string> {
    return (await this.virsh.run(['domuuid', domain])).trim();
  }

  /**
   * The domain XML. `inactive`: the persistent definition (what to save for a restore; no runtime
   * aliases or generated paths). `secure`: include security-sensitive parts (VNC passwords...).
   */
  async dumpXml(domain: string, options: { inactive?: boolean; secure?: boolean } = {}): Promise<string> {
    const args = ['dumpxml', domain];
    if (options.inactive) args.push('--inactive');
    if (options.secure) args.push('--security-info');
    return this.virsh.run(args);
  }

  /** Parsed description, disk sizes filled in from `domblkinfo`. */
  async describe(domain: string): Promise<DomainDescription> {
    const desc = parseDomainXml(await this.dumpXml(domain));
    let sizes: Map<string, { capacity?: number; allocation?: number }>;
    try {
      sizes = parseDomblkinfoAll(await this.virsh.run(['domblkinfo', domain, '--all']));
    } catch {
      // One unreadable disk (a missing file on a shut-off domain) fails --all; ask disk by disk.
      sizes = new Map();
      for (const d of desc.disks) {
        try {
          const out = await this.virsh.run(['domblkinfo', domain, d.target]);
          const cap = /Capacity:\s+(\d+)/.exec(out)?.[1];
          const alloc = /Allocation:\s+(\d+)/.exec(out)?.[1];
          sizes.set(d.target, {
            capacity: cap ? Number(cap) : undefined,
            allocation: alloc ? Number(alloc) : undefined,
          });
        } catch {
          // size stays unknown for this disk
        }
      }
    }
    for (const d of desc.disks) {
      const s = sizes.get(d.target);
      if (s?.capacity !== undefined) d.sizeBytes = s.capacity;
      if (s?.allocation !== undefined) d.allocationBytes = s.allocation;
    }
    return desc;
  }

  /** Defines a persistent domain; returns its name and (possibly libvirt-generated) UUID. */
  async define(xml: string): Promise<{ name: string; uuid: string }> {
    const name = parseDomainXml(xml).name;
    await this.virsh.runWithXmlFiles([xml], ([file]) => ['define', file!]);
    return { name, uuid: await this.uuid(name) };
  }

  async start(domain: string): Promise<void> {
    await this.virsh.run(['start', domain]);
  }

  /** Pulls the plug (QEMU gets SIGTERM, then SIGKILL). No error when it is already off. */
  async destroy(domain: string): Promise<void> {
    try {
      await this.virsh.run(['destroy', domain]);
    } catch (err) {
      if (err instanceof HypervisorError && err.code === 'DOMAIN_NOT_RUNNING') return;
      throw err;
    }
  }

  /**
   * Asks the guest to power off (ACPI) and waits until it is shut off. A guest that ignores the
   * request is destroyed when `forceAfterTimeout` is set, else SHUTDOWN_TIMEOUT is thrown.
   */
  async shutdown(
    domain: string,
    options: { timeoutMs?: number; forceAfterTimeout?: boolean } = {},
  ): Promise<void> {
    if ((await this.state(domain)) === 'shutoff') return;
    await this.virsh.run(['shutdown', domain]);
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    while (Date.now() < deadline) {
      if ((await this.state(domain)) === 'shutoff') return;
      await sleep(500);
    }
    if (options.forceAfterTimeout) return this.destroy(domain);
    throw new HypervisorError('SHUTDOWN_TIMEOUT', `domain ${domain} did not shut down in time`);
  }

  /**
   * Removes the definition together with its checkpoint metadata (libvirt refuses otherwise) and,
   * for UEFI domains, the NVRAM file (it belongs to this domain only). A running domain keeps
   * running as a transient one; destroy it first to get rid of it.
   */
  async undefine(domain: string, options: { keepNvram?: boolean } = {}): Promise<void> {
    const desc = parseDomainXml(await this.dumpXml(domain, { inactive: true }));
    const args = ['undefine', domain, '--checkpoints-metadata'];
    if (desc.os.nvram || desc.os.loader?.type === 'pflash' || desc.os.firmware === 'efi') {
      args.push(options.keepNvram ? '--keep-nvram' : '--nvram');
    }
    await this.virsh.run(args);
  }
}
