import type { Command } from 'commander';

/** One line per command group; each group lives in its own file beside this one. */
export function registerCommands(_program: Command): void {}
