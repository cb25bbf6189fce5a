/**
 * Helpers of the backup tests: an in-memory model of each test disk (the oracle of what a snapshot
 * must hold: the initial fill plus every guest write made before the backup's point in time),
 * guest zero-writes, and checks of a snapshot's chain with our ChainReader and with plain qemu-img.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TargetChainOpener } from '../../src/target/chain.js';
import { diskImageKey } from '../../src/target/layout.js';
import type { Target } from '../../src/target/target.js';
import { diskQdevId, type TestDomain } from './libvirt.js';

const run = promisify(execFile);
export const KiB = 1024;
export const MiB = 1024 * 1024;

/** What a disk must read as: its bytes, kept in memory (test disks are 64 MiB). */
export class DiskModel {
  readonly bytes: Buffer;
  constructor(size: number, fills: ReadonlyArray<{ pattern: number; offset: number; length: number }> = []) {
    this.bytes = Buffer.alloc(size);
    for (const f of fills) this.write(f.pattern, f.offset, f.length);
  }
  write(pattern: number, offset: number, length: number): void {
    this.bytes.fill(pattern, offset, offset + length);
  }
  sha256(): string {
    return createHash('sha256').update(this.bytes).digest('hex');
  }
  clone(): DiskModel {
    const m = new DiskModel(0);
    (m as { bytes: Buffer }).bytes = Buffer.from(this.bytes);
    return m;
  }
}

/** A guest write of zeros that may unmap (like a discard/TRIM): the cluster becomes a hole. */
export async function guestZero(
  domain: TestDomain,
  target: string,
  offset: number,
  length: number,
): Promise<void> {
  const qdev = await diskQdevId(domain.hv, domain.name, target);
  const cmd = `qemu-io -d ${qdev}/virtio-backend "write -z -u ${offset} ${length}"`;
  const out = await domain.hv.virsh.run(['qemu-monitor-command', domain.name, '--hmp', cmd]);
  if (out.trim().length > 0) throw new Error(`guestZero ${domain.name}/${target}: ${out.trim()}`);
}

/** SHA-256 of the whole chain of one disk image on the target, read with our ChainReader. */
export async function chainSha256(
  target: Target,
  wid: string,
  sid: string,
  vmId: string,
  disk: string,
): Promise<string> {
  const chain = await new TargetChainOpener(target.backend).openChain(diskImageKey(wid, sid, vmId, disk));
  try {
    const h = createHash('sha256');
    const step = 4 * MiB;
    for (let off = 0; off < chain.virtualSize; off += step) {
      h.update(await chain.read(off, Math.min(step, chain.virtualSize - off)));
    }
    return h.digest('hex');
  } finally {
    await chain.close();
  }
}

/** SHA-256 of what plain `qemu-img convert -O raw` reads from an image (backing chain included). */
export async function qemuImgRawSha256(image: string, scratch: string): Promise<string> {
  const out = join(scratch, `convert-${process.pid}-${Math.random().toString(36).slice(2)}.raw`);
  await run('qemu-img', ['convert', '-O', 'raw', image, out]);
  try {
    const h = createHash('sha256');
    h.update(await readFile(out));
    return h.digest('hex');
  } finally {
    await run('rm', ['-f', out]);
  }
}

/** `qemu-img check` of one image: throws with qemu-img's report when it finds anything. */
export async function qemuImgCheck(image: string): Promise<void> {
  await run('qemu-img', ['check', '-q', image]);
}

export async function qemuImgInfo(image: string): Promise<Record<string, unknown>> {
  const { stdout } = await run('qemu-img', ['info', '--output=json', image]);
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** PIDs of the qemu-nbd processes whose command line mentions `needle` (an image path). */
export async function qemuNbdPidsFor(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replace(/\0/g, ' ');
      if (cmd.startsWith('qemu-nbd') && cmd.includes(needle)) pids.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

/** The QEMU process of a running test domain (libvirt's pid file). */
export async function qemuPidOf(domain: TestDomain): Promise<number> {
  return Number((await readFile(`/run/libvirt/qemu/${domain.name}.pid`, 'utf8')).trim());
}

/** Waits until `check` returns true (polling), failing after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
