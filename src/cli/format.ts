/** Terminal output helpers shared by the commands that talk to the controller. */

import type { Command } from 'commander';

/** `--json` given on the command or any of its parents. */
export const wantsJson = (cmd: Command): boolean => cmd.optsWithGlobals<{ json?: boolean }>().json === true;

/** Columns padded to their widest cell: readable in a terminal, easy to grep. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function write(text: string): void {
  process.stdout.write(text);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${UNITS[u]}`;
}

/** `[#########...........]  45%  1.2 GiB / 2.7 GiB` */
export function progressBar(
  done: number,
  total: number,
  width = 24,
  unit: 'bytes' | 'units' = 'bytes',
): string {
  if (total <= 0) return `[${'.'.repeat(width)}]`;
  const ratio = Math.min(1, Math.max(0, done / total));
  const filled = Math.round(ratio * width);
  const amounts = unit === 'bytes' ? `${formatBytes(done)} / ${formatBytes(total)}` : `${done} / ${total}`;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}%  ${amounts}`;
}
