import type { ControllerLog, SweepReport, TaskDispatcher } from './task-dispatch.js';

/**
 * Runs `TaskDispatcher.sweep()` every `intervalMs` (one pass at a time), so expired leases are
 * reaped within about a lease plus an interval. Safe beside other controllers' sweepers: every
 * reap is a conditional UPDATE whose rows only one of them gets back.
 */
export class TaskSweeper {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<SweepReport | undefined> | undefined;

  constructor(
    private readonly dispatcher: TaskDispatcher,
    private readonly intervalMs: number,
    private readonly log: ControllerLog = () => undefined,
  ) {}

  start(): this {
    if (this.timer) return this;
    this.timer = setInterval(() => void this.runOnce(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** One pass now (or the one already under way). */
  runOnce(): Promise<SweepReport | undefined> {
    this.pass ??= this.dispatcher
      .sweep()
      .catch((err: unknown) => {
        this.log('error', `task sweeper: ${(err as Error)?.message ?? String(err)}`);
        return undefined;
      })
      .finally(() => {
        this.pass = undefined;
      });
    return this.pass;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.pass;
  }
}

/** A sweep every third of a lease, between 1 and 10 seconds. */
export function sweepIntervalFor(leaseMs: number): number {
  return Math.min(10_000, Math.max(1000, Math.floor(leaseMs / 3)));
}
