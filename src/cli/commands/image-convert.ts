import { type Command, InvalidArgumentError, Option } from 'commander';
import { convertImage } from '../../disk/convert.js';
import { openDiskImage } from '../../disk/open.js';
import { commitOverlay } from '../../disk/qcow2/merge.js';

/**
 * `lifeboat image convert|commit`: write sparse qcow2/raw images from any image or chain, and fold
 * an overlay into its backing image. Offline tools: no controller needed.
 */

const SIZE_SUFFIX: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "65536", "64K", "2M": a byte count with an optional binary suffix. */
export function parseByteSize(value: string): number {
  const m = /^(\d+)\s*([bkmg]?)(?:i?b)?$/i.exec(value.trim());
  const n = m ? Number(m[1]) * SIZE_SUFFIX[m[2].toLowerCase()] : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`not a size: ${value}`);
  return n;
}

function parseClusterSize(value: string): number {
  const n = parseByteSize(value);
  if ((n & (n - 1)) !== 0 || n < 512 || n > 2 * 1024 * 1024) {
    throw new InvalidArgumentError('must be a power of two between 512 and 2M');
  }
  return n;
}

/** A percentage on stderr, rewritten in place, when asked for. */
function progressPrinter(enabled: boolean | undefined, label: string) {
  if (!enabled) return undefined;
  let last = -1;
  return (done: number, total: number) => {
    const pct = total > 0 ? Math.floor((done * 100) / total) : 100;
    if (pct === last) return;
    last = pct;
    process.stderr.write(`\r${label}: ${pct}%${pct === 100 ? '\n' : ''}`);
  };
}

export function registerImageConvertCommands(image: Command): void {
  image
    .command('convert')
    .description('copy an image or a whole chain into a new sparse qcow2 or raw image')
    .argument('<src>', 'source image (qcow2 with its backing chain, or raw)')
    .argument('<dst>', 'destination file (replaced atomically when complete)')
    .addOption(
      new Option('-O, --output-format <format>', 'output format').choices(['qcow2', 'raw']).default('qcow2'),
    )
    .option('-B, --backing <file>', 'make DST an overlay of this image, holding only what differs (qcow2)')
    .option('--cluster-size <bytes>', 'qcow2 cluster size, 512..2M (default 64K)', parseClusterSize)
    .option('-p, --progress', 'show progress on stderr')
    .action(
      async (
        src: string,
        dst: string,
        opts: { outputFormat: 'qcow2' | 'raw'; backing?: string; clusterSize?: number; progress?: boolean },
        command: Command,
      ) => {
        if (opts.backing && opts.outputFormat === 'raw') {
          command.error('error: -B needs -O qcow2: a raw image has no backing file', { exitCode: 2 });
        }
        const disk = await openDiskImage(src);
        try {
          const r = await convertImage(disk, dst, {
            format: opts.outputFormat,
            clusterSize: opts.clusterSize,
            backing: opts.backing,
            onProgress: progressPrinter(opts.progress, 'convert'),
          });
          const same =
            r.sameAsBackingBytes === undefined ? '' : `, ${r.sameAsBackingBytes} bytes left to the backing`;
          process.stdout.write(`${dst}: ${opts.outputFormat}, ${r.dataBytes} bytes of data${same}\n`);
        } finally {
          await disk.close();
        }
      },
    );

  image
    .command('commit')
    .description("merge an overlay into its backing image, which then takes the overlay's place")
    .argument('<overlay>', 'qcow2 overlay (crash-safe: run again to resume after an interruption)')
    .option('-p, --progress', 'show progress on stderr')
    .action(async (overlay: string, opts: { progress?: boolean }) => {
      const r = await commitOverlay(overlay, { onProgress: progressPrinter(opts.progress, 'commit') });
      process.stdout.write(
        r.alreadyDone
          ? `${overlay}: already committed\n`
          : `${overlay}: committed into ${r.basePath} (${r.bytesCopied} bytes copied), which now sits at ${r.mergedPath}\n`,
      );
    });
}
