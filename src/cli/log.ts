/** Log lines of the long-running commands (serve, datamover): stderr, one line each, with a time. */
export function stderrLog(prefix: string, options: { quiet?: boolean } = {}) {
  return (level: 'info' | 'warn' | 'error', message: string): void => {
    if (options.quiet && level === 'info') return;
    process.stderr.write(`${new Date().toISOString()} ${prefix} ${level}: ${message}\n`);
  };
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
