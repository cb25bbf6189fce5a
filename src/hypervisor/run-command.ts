import { spawn } from 'node:child_process';
import { HypervisorError } from './errors.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when the process was killed by a signal. */
  exitCode: number | null;
  timedOut: boolean;
}

export interface RunOptions {
  /** Kill the process (SIGKILL) after this many milliseconds. */
  timeoutMs: number;
  /** Written to the process's stdin, which is then closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs a program with an argument array — never through a shell, so names and paths with spaces
 * or quotes are passed as they are. The C locale keeps libvirt's and QEMU's messages in English:
 * error classification matches on them.
 */
export function runCommand(
  program: string,
  args: readonly string[],
  options: RunOptions,
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env, LC_ALL: 'C', LANG: 'C' },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT') {
        reject(new HypervisorError('COMMAND_NOT_FOUND', `${program}: command not found`, { cause: e }));
      } else {
        reject(new HypervisorError('VIRSH_FAILED', `${program}: cannot run (${e.message})`, { cause: e }));
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode: code,
        timedOut,
      });
    });
    // A program that exits before reading its stdin makes the write fail with EPIPE; its exit
    // status tells the real story, so that error is ignored.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}
