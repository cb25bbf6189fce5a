import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Runs the QEMU reference tools (qemu-img, qemu-io) in tests: they make the images we read and are
 * the oracle our results are compared with. Shared by every disk-layer test.
 */

const run = promisify(execFile);

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/** Runs `qemu-img ARGS...`; rejects with the tool's stderr when it fails. */
export async function qemuImg(...args: string[]): Promise<ToolResult> {
  return tool('qemu-img', args);
}

/**
 * Runs `qemu-io` on one image with one or more `-c` commands, e.g.
 * `qemuIo(img, ['write -P 0xab 0 64k', 'write -z 1M 64k'])`. Pass `format` for non-qcow2 images.
 */
export async function qemuIo(image: string, commands: string[], format = 'qcow2'): Promise<ToolResult> {
  const args = ['-f', format];
  for (const c of commands) args.push('-c', c);
  args.push(image);
  const r = await tool('qemu-io', args);
  // qemu-io reports failed commands on stdout/stderr but still exits 0.
  if (/(failed|error|Error)/.test(r.stdout + r.stderr)) {
    throw new Error(`qemu-io ${commands.join('; ')} on ${image}: ${r.stdout}${r.stderr}`);
  }
  return r;
}

async function tool(cmd: string, args: string[]): Promise<ToolResult> {
  try {
    return await run(cmd, args, { maxBuffer: 256 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

/** One entry of `qemu-img map --output=json`. */
export interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present?: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

export async function qemuImgMap(image: string, format?: string): Promise<QemuMapEntry[]> {
  const args = ['map', '--output=json'];
  if (format) args.push('-f', format);
  args.push(image);
  const { stdout } = await qemuImg(...args);
  return JSON.parse(stdout) as QemuMapEntry[];
}

export interface QemuImgInfo {
  'virtual-size': number;
  format: string;
  'cluster-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  [key: string]: unknown;
}

export async function qemuImgInfo(image: string): Promise<QemuImgInfo> {
  const { stdout } = await qemuImg('info', '--output=json', image);
  return JSON.parse(stdout) as QemuImgInfo;
}

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk);
  return hash.digest('hex');
}

/** SHA-256 of what qemu-img reads from an image: `qemu-img convert -O raw` to a temp file. */
export async function qemuRawSha256(image: string, dir: string): Promise<string> {
  const out = join(dir, `oracle-${process.pid}-${Math.random().toString(36).slice(2)}.raw`);
  try {
    await qemuImg('convert', '-O', 'raw', image, out);
    return await sha256File(out);
  } finally {
    await rm(out, { force: true });
  }
}

/** A temporary directory removed by the returned cleanup function. */
export async function tempDir(
  prefix = 'lifeboat-test-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
