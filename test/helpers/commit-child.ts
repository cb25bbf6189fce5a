/**
 * Child process for the commit crash test: runs commitOverlay(OVERLAY) with small batches and kills
 * itself with SIGKILL at the KILL_AT-th crash-relevant step (never when KILL_AT is -1). Prints the
 * result and the number of steps as JSON on success.
 *   node --import tsx test/helpers/commit-child.ts OVERLAY KILL_AT BATCH_BYTES
 */
import { commitOverlay } from '../../src/disk/qcow2/merge.js';

const [overlay, killAtArg, batchArg] = process.argv.slice(2);
const killAt = Number(killAtArg ?? -1);
const steps: string[] = [];
// The parent times random kills from this line, not from the process start (tsx takes longer).
process.stderr.write('commit-start\n');
const t0 = performance.now();
const result = await commitOverlay(overlay, {
  batchBytes: Number(batchArg ?? 1 << 20),
  chunkBytes: 256 * 1024,
  onStep: (step) => {
    steps.push(step);
    if (steps.length === killAt) process.kill(process.pid, 'SIGKILL');
  },
});
process.stderr.write(`commit-ms ${Math.ceil(performance.now() - t0)}\n`);
process.stdout.write(`${JSON.stringify({ ...result, steps })}\n`);
