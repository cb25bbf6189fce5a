import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HypervisorError, type HypervisorErrorCode } from './errors.js';
import { runCommand } from './run-command.js';

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';

export interface VirshOptions {
  /** libvirt connection URI; default `qemu:///system`. */
  uri?: string;
  /** Default deadline of one virsh call in milliseconds (default 60 s). */
  timeoutMs?: number;
  /** The virsh binary (default `virsh` from PATH). */
  program?: string;
}

export interface VirshCallOptions {
  timeoutMs?: number;
}

/**
 * libvirt's errors reach us only as virsh's stderr ("error: <summary>\nerror: <detail>"); the numeric
 * virErrorNumber is not printed. These patterns match the stable English texts of libvirt 9.x (the
 * runner forces the C locale). Order matters: the first match wins.
 */
const ERROR_PATTERNS: ReadonlyArray<readonly [RegExp, HypervisorErrorCode]> = [
  [
    /failed to connect to the hypervisor|cannot connect to daemon|Failed to connect socket/i,
    'LIBVIRT_UNREACHABLE',
  ],
  [/Domain checkpoint not found|no domain checkpoint with matching/i, 'CHECKPOINT_NOT_FOUND'],
  [/domain (moment|checkpoint) .* already exists/i, 'CHECKPOINT_EXISTS'],
  [
    /checkpoint for disk .* unsupported|checkpoints? (are |is )?not supported|cannot create checkpoint for/i,
    'CHECKPOINT_UNSUPPORTED',
  ],
  [/no domain backup job|backup job id not found|no job is active on the domain/i, 'NO_BACKUP_JOB'],
  [
    /cannot acquire state change lock .*Backup|backup job (is )?already|another (backup )?job is active/i,
    'BACKUP_JOB_ACTIVE',
  ],
  [/cannot acquire state change lock/i, 'DOMAIN_BUSY'],
  [/failed to get domain|Domain not found|no domain with matching/i, 'DOMAIN_NOT_FOUND'],
  [/domain .* already exists|already defined with uuid|already exists with uuid/i, 'DOMAIN_EXISTS'],
  [
    /Domain is already active|domain is already running|domain is active|cannot .*\bactive domain/i,
    'DOMAIN_RUNNING',
  ],
  [/domain is not running|inactive domain/i, 'DOMAIN_NOT_RUNNING'],
  [
    /guest agent is not (responding|configured|connected)|QEMU guest agent is not/i,
    'GUEST_AGENT_UNAVAILABLE',
  ],
  [
    /XML error|failed to parse xml|XML document failed to validate|malformed|Extra content at the end/i,
    'INVALID_XML',
  ],
];

/** Maps virsh's stderr to a stable code (VIRSH_FAILED when nothing more precise matches). */
export function classifyVirshError(stderr: string): HypervisorErrorCode {
  // "cannot create checkpoint for inactive domain" is a state problem, not a missing feature.
  if (/cannot create checkpoint for inactive domain/i.test(stderr)) return 'DOMAIN_NOT_RUNNING';
  for (const [pattern, code] of ERROR_PATTERNS) if (pattern.test(stderr)) return code;
  return 'VIRSH_FAILED';
}

/** The useful part of virsh's stderr: the lines with "error: " stripped of that prefix, joined. */
export function virshErrorText(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^error:\s*/i, ''));
  return lines.join(': ') || 'virsh failed without a message';
}

/**
 * Runs `virsh -c URI ...` with argument arrays. Every failure becomes a HypervisorError whose code
 * says what went wrong and whose details keep the command and libvirt's full text.
 */
export class Virsh {
  readonly uri: string;
  readonly timeoutMs: number;
  readonly program: string;

  constructor(options: VirshOptions = {}) {
    this.uri = options.uri ?? DEFAULT_LIBVIRT_URI;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.program = options.program ?? 'virsh';
  }

  /** Runs one virsh command; resolves with its stdout. */
  async run(args: readonly string[], options: VirshCallOptions = {}): Promise<string> {
    const fullArgs = ['-c', this.uri, '-q', ...args];
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const res = await runCommand(this.program, fullArgs, { timeoutMs });
    const details = { command: ['virsh', ...fullArgs], stderr: res.stderr.trim() };
    if (res.timedOut) {
      throw new HypervisorError('VIRSH_TIMEOUT', `virsh ${args[0]} did not finish within ${timeoutMs} ms`, {
        details,
      });
    }
    if (res.exitCode !== 0) {
      const code = classifyVirshError(res.stderr);
      throw new HypervisorError(code, `virsh ${args[0]}: ${virshErrorText(res.stderr)}`, { details });
    }
    return res.stdout;
  }

  /**
   * Runs a virsh command that reads XML documents from files (define, checkpoint-create,
   * backup-begin): `build` receives the paths of temp files holding `documents`, in order. The files
   * are read by libvirtd/virsh as root only, so a private temp directory is fine.
   */
  async runWithXmlFiles(
    documents: readonly string[],
    build: (paths: string[]) => string[],
    options: VirshCallOptions = {},
  ): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'lifeboat-virsh-'));
    try {
      const paths: string[] = [];
      for (const [i, doc] of documents.entries()) {
        const p = join(dir, `doc${i}.xml`);
        await writeFile(p, doc, { mode: 0o600 });
        paths.push(p);
      }
      return await this.run(build(paths), options);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
