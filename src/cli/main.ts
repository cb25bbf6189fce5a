import { Command, CommanderError } from 'commander';
import { isLifeboatError } from '../errors.js';
import { registerCommands } from './commands/index.js';

/**
 * The `lifeboat` command. Every failure ends as one clear line on stderr and a non-zero exit code:
 * our typed errors print `lifeboat: CODE: message`; anything else is a bug and prints its stack when
 * LIFEBOAT_DEBUG is set.
 */
const program = new Command('lifeboat')
  .description('Agentless backup and disaster recovery for KVM clouds')
  .showHelpAfterError()
  .exitOverride();

registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (isLifeboatError(err)) {
    process.stderr.write(`lifeboat: ${err.code}: ${err.message}\n`);
    process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 1;
  } else {
    const e = err as Error;
    process.stderr.write(`lifeboat: ${e?.message ?? String(err)}\n`);
    if (process.env.LIFEBOAT_DEBUG) process.stderr.write(`${e?.stack}\n`);
    process.exitCode = 1;
  }
}
