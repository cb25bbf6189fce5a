import type { Command } from 'commander';
import { registerImageInspectCommands } from './image-inspect.js';

/** One line per command group; each group lives in its own file beside this one. */
export function registerCommands(program: Command): void {
  const image = program.command('image').description('offline tools for disk images (qcow2, raw)');
  registerImageInspectCommands(image);
}
