import { parseDomainXml } from './domain-xml.js';
import { HypervisorError } from './errors.js';
import type { Virsh } from './virsh.js';

export type FreezeResult = { skipped: false; frozenFilesystems: number } | { skipped: true; reason: string };

/**
 * Filesystem freeze through the QEMU guest agent. A VM without an agent (or with a dead one) is
 * still backed up, crash-consistent: freezing is best effort and reports why it was skipped, it
 * never fails the backup. Keep a freeze as short as possible: `withFrozenFilesystems` around the
 * checkpoint creation only, never around the data copy.
 */
export class GuestAgent {
  constructor(
    private readonly virsh: Virsh,
    private readonly pingTimeoutSeconds = 5,
  ) {}

  /** True when the domain has an agent channel and the agent answers guest-ping. */
  async ping(domain: string): Promise<boolean> {
    try {
      await this.virsh.run([
        'qemu-agent-command',
        domain,
        '{"execute":"guest-ping"}',
        '--timeout',
        String(this.pingTimeoutSeconds),
      ]);
      return true;
    } catch (err) {
      if (
        err instanceof HypervisorError &&
        err.code !== 'LIBVIRT_UNREACHABLE' &&
        err.code !== 'DOMAIN_NOT_FOUND'
      ) {
        return false;
      }
      throw err;
    }
  }

  async freeze(domain: string): Promise<FreezeResult> {
    const desc = parseDomainXml(await this.virsh.run(['dumpxml', domain]));
    if (!desc.hasGuestAgentChannel) return { skipped: true, reason: 'the domain has no guest agent channel' };
    if (!(await this.ping(domain))) return { skipped: true, reason: 'the guest agent does not respond' };
    let out: string;
    try {
      out = await this.virsh.run(['domfsfreeze', domain]);
    } catch (err) {
      // A failed freeze may have frozen some filesystems before failing: thaw whatever is frozen.
      await this.thaw(domain).catch(() => {});
      return { skipped: true, reason: `freeze failed: ${(err as Error).message}` };
    }
    const n = /Froze (\d+)/i.exec(out)?.[1];
    return { skipped: false, frozenFilesystems: n ? Number(n) : 0 };
  }

  async thaw(domain: string): Promise<void> {
    await this.virsh.run(['domfsthaw', domain]);
  }

  /** Same as `freeze` (the name the datamover's design uses). */
  freezeFilesystems(domain: string): Promise<FreezeResult> {
    return this.freeze(domain);
  }

  /** Same as `thaw`. */
  thawFilesystems(domain: string): Promise<void> {
    return this.thaw(domain);
  }

  /**
   * Runs `fn` with the guest's filesystems frozen (when an agent answers) and thaws in `finally`.
   * A thaw that fails is retried; if the guest stays frozen, the error is raised — an operator
   * must know.
   */
  async withFrozenFilesystems<T>(domain: string, fn: (freeze: FreezeResult) => Promise<T>): Promise<T> {
    const freeze = await this.freeze(domain);
    try {
      return await fn(freeze);
    } finally {
      if (!freeze.skipped) await this.thawWithRetry(domain);
    }
  }

  private async thawWithRetry(domain: string): Promise<void> {
    let last: unknown;
    for (let i = 0; i < 3; i++) {
      try {
        await this.thaw(domain);
        return;
      } catch (err) {
        last = err;
      }
    }
    throw new HypervisorError('GUEST_AGENT_UNAVAILABLE', `could not thaw the filesystems of ${domain}`, {
      cause: last,
    });
  }
}
