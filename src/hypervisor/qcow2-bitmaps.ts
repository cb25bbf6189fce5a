import { HypervisorError } from './errors.js';
import { runCommand } from './run-command.js';

export interface Qcow2BitmapInfo {
  name: string;
  granularity: number;
  /** QEMU flags: `auto` = enabled (tracks writes), `in-use` = the image was not closed cleanly. */
  flags: string[];
  enabled: boolean;
  /**
   * The bitmap was open for writing when QEMU stopped without closing it (crash, SIGKILL): its
   * content is unknown and it must not be used for an incremental (fall back to full).
   */
  inconsistent: boolean;
}

interface QemuImgInfo {
  format?: string;
  'format-specific'?: {
    type?: string;
    data?: { bitmaps?: Array<{ name: string; granularity: number; flags: string[] }> };
  };
}

/**
 * Persistent dirty bitmaps stored in a qcow2 image (the top layer only), read with
 * `qemu-img info --output=json`. Used for shut-off domains, whose bitmaps are exported with
 * `qemu-nbd -B NAME`. `--force-share` lets this run while QEMU has the image open, but the answer
 * is only meaningful for an image nobody has open: QEMU 7.2 keeps the bitmaps of a running domain in
 * memory and writes them to the image when it closes it (shutdown, destroy), so a running domain's
 * image lists none — or stale ones flagged in-use.
 */
export async function readQcow2Bitmaps(
  imagePath: string,
  options: { timeoutMs?: number; format?: string } = {},
): Promise<Qcow2BitmapInfo[]> {
  // Pass `format` when it is known (the domain XML has it): probing lets a guest that wrote a qcow2
  // header into its raw disk decide how the host reads that file.
  const format = options.format ? ['-f', options.format] : [];
  const args = ['info', '--output=json', '--force-share', ...format, imagePath];
  const res = await runCommand('qemu-img', args, { timeoutMs: options.timeoutMs ?? 30_000 });
  if (res.exitCode !== 0 || res.timedOut) {
    throw new HypervisorError(
      'QEMU_IMG_FAILED',
      `qemu-img info ${imagePath}: ${res.stderr.trim() || 'timed out'}`,
      {
        details: { command: ['qemu-img', ...args] },
      },
    );
  }
  const info = JSON.parse(res.stdout) as QemuImgInfo;
  if (info.format !== 'qcow2') return [];
  return (info['format-specific']?.data?.bitmaps ?? []).map((b) => ({
    name: b.name,
    granularity: b.granularity,
    flags: b.flags,
    enabled: b.flags.includes('auto'),
    inconsistent: b.flags.includes('in-use'),
  }));
}
