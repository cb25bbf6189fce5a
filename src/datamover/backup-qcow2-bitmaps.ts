import { HypervisorError } from '../hypervisor/errors.js';
import { runCommand } from '../hypervisor/run-command.js';

/**
 * Persistent dirty bitmaps of a shut-off domain's qcow2 images, edited with `qemu-img bitmap`.
 * This is how a shut-off domain gets its checkpoint: libvirt 9 cannot create checkpoints of an
 * inactive domain, so the bitmap is added to each image here (enabled: QEMU records every write
 * into it from the next start on) and the checkpoint metadata is then redefined in libvirt.
 * qemu-img takes the image's write lock, so this fails cleanly if QEMU has the image open.
 */
async function qemuImgBitmap(args: string[]): Promise<void> {
  const res = await runCommand('qemu-img', ['bitmap', ...args], { timeoutMs: 120_000 });
  if (res.exitCode !== 0 || res.timedOut) {
    throw new HypervisorError(
      'QEMU_IMG_FAILED',
      `qemu-img bitmap ${args.join(' ')}: ${res.stderr.trim() || (res.timedOut ? 'timed out' : `exit ${res.exitCode}`)}`,
      { details: { command: ['qemu-img', 'bitmap', ...args] } },
    );
  }
}

/** Adds an enabled persistent bitmap `name` to a qcow2 image (64 KiB granularity, libvirt's default). */
export function addQcow2Bitmap(image: string, name: string): Promise<void> {
  return qemuImgBitmap(['--add', '--enable', '-f', 'qcow2', '-g', '65536', image, name]);
}

export function removeQcow2Bitmap(image: string, name: string): Promise<void> {
  return qemuImgBitmap(['--remove', '-f', 'qcow2', image, name]);
}
