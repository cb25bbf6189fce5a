/**
 * `lifeboat datamover` with one extra task kind for tests: `test.sleep` runs for `durationMs`,
 * reporting progress every `stepMs`, and stops when its AbortSignal fires — after writing the abort
 * reason's code to `markerFile` (so a test can see that the cancellation reached the handler).
 *
 *   node --import tsx test/helpers/datamover-with-test-handlers.ts datamover --controller URL ...
 */
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { registerTaskHandler } from '../../src/datamover/task-handlers.js';

registerTaskHandler('test.sleep', async (ctx) => {
  const payload = ctx.task.payload as { durationMs?: number; stepMs?: number; markerFile?: string };
  const total = payload.durationMs ?? 60_000;
  const step = payload.stepMs ?? 100;
  let done = 0;
  ctx.progress({ done, total, message: 'sleeping' });
  try {
    while (done < total) {
      await sleep(step, undefined, { signal: ctx.signal });
      done = Math.min(total, done + step);
      ctx.progress({ done, total });
    }
  } catch (err) {
    if (ctx.signal.aborted && payload.markerFile) {
      const reason = ctx.signal.reason as { code?: string } | undefined;
      writeFileSync(payload.markerFile, String(reason?.code ?? 'aborted'));
    }
    throw err;
  }
  return { slept: done };
});

await import('../../src/cli/main.js');
