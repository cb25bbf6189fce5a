import type { Command } from 'commander';
import { registerAdminCommands } from './admin.js';
import { registerImageConvertCommands } from './image-convert.js';
import { registerImageInspectCommands } from './image-inspect.js';
import { registerTargetCommands } from './target.js';

/** One line per command group; each group lives in its own file beside this one. */
export function registerCommands(program: Command): void {
  const image = program.command('image').description('offline tools for disk images (qcow2, raw)');
  registerImageInspectCommands(image);
  registerImageConvertCommands(image);
  registerTargetCommands(program);
  registerAdminCommands(program);
}
