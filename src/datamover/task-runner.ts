import { setTimeout as sleep } from 'node:timers/promises';
import { isLifeboatError } from '../errors.js';
import type { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import type { ControllerClient } from './controller-client.js';
import type { ClaimedTask, FailRequest, LeaseAnswer } from './protocol.js';
import { DatamoverServiceError, isDatamoverServiceError, isRetryable } from './service-errors.js';
import type { TaskContext, TaskHandlerRegistry, TaskProgress } from './task-handlers.js';

export type DatamoverLog = (level: 'info' | 'warn' | 'error', message: string) => void;

export interface TaskRunnerDeps {
  client: ControllerClient;
  handlers: TaskHandlerRegistry;
  host: { id: string; name: string; libvirtUri: string };
  hypervisor: LibvirtHypervisor;
  /** This datamover run's lease owner name. */
  owner: string;
  log: DatamoverLog;
  /** Fires when the datamover shuts down: running handlers are aborted. */
  stopSignal: AbortSignal;
  /** Least time between two progress reports (default 1 s); heartbeats fill the gaps. */
  progressIntervalMs?: number;
  /** How long to keep retrying the final report while the controller is unreachable (default 10 min). */
  reportDeadlineMs?: number;
}

/** How a task run ended, from the datamover's point of view. */
export type TaskRunOutcome = 'succeeded' | 'failed' | 'cancelled' | 'lost';

/**
 * Runs one claimed task: the handler, with a lease keeper beside it that reports progress (at most
 * once a progress interval) and heartbeats (a third of the lease) and aborts the handler when the
 * controller answers that the job is being cancelled or that the lease is gone. Then reports the
 * outcome, retrying through controller restarts. A lost lease means someone else may hold the task
 * now: the result is dropped, never reported.
 */
export async function runClaimedTask(deps: TaskRunnerDeps, task: ClaimedTask): Promise<TaskRunOutcome> {
  const abort = new AbortController();
  const onStop = () =>
    abort.abort(new DatamoverServiceError('DATAMOVER_STOPPING', 'the datamover is stopping'));
  if (deps.stopSignal.aborted) onStop();
  else deps.stopSignal.addEventListener('abort', onStop, { once: true });

  const keeper = new LeaseKeeper(deps, task, abort);
  const ctx: TaskContext = {
    task,
    signal: abort.signal,
    progress: (p) => keeper.record(p),
    host: deps.host,
    hypervisor: deps.hypervisor,
    log: (level, message) => deps.log(level, `task ${task.id} (${task.kind}): ${message}`),
  };

  let outcome: { ok: true; result: unknown } | { ok: false; error: unknown };
  try {
    const handler = deps.handlers.get(task.kind);
    if (!handler) {
      throw new DatamoverServiceError(
        'DATAMOVER_NO_HANDLER',
        `this datamover has no handler for task kind ${task.kind} (it runs: ${deps.handlers.kinds().join(', ')})`,
      );
    }
    keeper.start();
    outcome = { ok: true, result: await handler(ctx) };
  } catch (error) {
    outcome = { ok: false, error };
  } finally {
    deps.stopSignal.removeEventListener('abort', onStop);
  }
  await keeper.stop();
  if (keeper.lost) {
    deps.log('warn', `task ${task.id} (${task.kind}): lease lost, result dropped`);
    return 'lost';
  }

  const reason = abort.signal.aborted ? abort.signal.reason : undefined;
  const report = new OutcomeReporter(deps, task);
  // A handler that finished before noticing the cancellation keeps its real outcome.
  if (outcome.ok)
    return report.send('succeeded', () => deps.client.complete(task.id, deps.owner, outcome.result));
  if (isDatamoverServiceError(reason, 'DATAMOVER_TASK_CANCELLED')) {
    return report.send('cancelled', () => deps.client.cancelled(task.id, deps.owner));
  }
  const failure = describeFailure(
    isDatamoverServiceError(reason, 'DATAMOVER_STOPPING') ? reason : outcome.error,
  );
  deps.log('warn', `task ${task.id} (${task.kind}) failed: ${failure.code}: ${failure.message}`);
  return report.send('failed', () => deps.client.fail(task.id, { owner: deps.owner, ...failure }));
}

/** What the controller records of a failure: a stable code and a message for people. */
export function describeFailure(err: unknown): Omit<FailRequest, 'owner'> {
  if (isLifeboatError(err)) {
    return {
      code: err.code.slice(0, 64),
      message: err.message.slice(0, 4000),
      ...(err.details ? { details: jsonSafe(err.details) } : {}),
    };
  }
  const e = err as Error | undefined;
  return { code: 'DATAMOVER_HANDLER_FAILED', message: String(e?.message ?? err).slice(0, 4000) };
}

function jsonSafe(details: Record<string, unknown>): Record<string, unknown> | undefined {
  try {
    const text = JSON.stringify(details);
    return text.length <= 16_384 ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the lease alive and carries progress to the controller while a handler runs. */
class LeaseKeeper {
  lost = false;
  private latest: TaskProgress = {};
  private dirty = false;
  private lastSentAt = Date.now();
  private heartbeatMs: number;
  private readonly progressMs: number;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly deps: TaskRunnerDeps,
    private readonly task: ClaimedTask,
    private readonly abort: AbortController,
  ) {
    this.heartbeatMs = heartbeatEvery(task.lease_ms);
    this.progressMs = deps.progressIntervalMs ?? 1000;
  }

  start(): void {
    this.timer = setInterval(
      () => this.tick(),
      Math.max(50, Math.min(this.progressMs, this.heartbeatMs) / 2),
    );
    this.timer.unref();
  }

  record(p: TaskProgress): void {
    if (p.done !== undefined) this.latest.done = Math.max(0, Math.floor(p.done));
    if (p.total !== undefined) this.latest.total = Math.max(0, Math.floor(p.total));
    if (p.message !== undefined) this.latest.message = p.message.slice(0, 1000);
    this.dirty = true;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
    // The last numbers reach the job before its outcome does.
    if (this.dirty && !this.lost) await this.send();
  }

  private tick(): void {
    if (this.inFlight || this.lost) return;
    const since = Date.now() - this.lastSentAt;
    if ((this.dirty && since >= this.progressMs) || since >= this.heartbeatMs) {
      this.inFlight = this.send().finally(() => {
        this.inFlight = undefined;
      });
    }
  }

  private async send(): Promise<void> {
    const withProgress = this.dirty;
    const body = { owner: this.deps.owner, ...this.latest };
    this.dirty = false;
    this.latest.message = undefined;
    try {
      const answer: LeaseAnswer = withProgress
        ? await this.deps.client.progress(this.task.id, body)
        : await this.deps.client.heartbeat(this.task.id, this.deps.owner);
      this.lastSentAt = Date.now();
      this.heartbeatMs = heartbeatEvery(answer.lease_ms);
      if (answer.cancel_requested && !this.abort.signal.aborted) {
        this.deps.log('info', `task ${this.task.id} (${this.task.kind}): cancellation requested`);
        this.abort.abort(new DatamoverServiceError('DATAMOVER_TASK_CANCELLED', 'the job was cancelled'));
      }
    } catch (err) {
      if (withProgress) this.dirty = true;
      if (isDatamoverServiceError(err, 'DATAMOVER_LEASE_LOST')) {
        this.lost = true;
        this.abort.abort(err);
        return;
      }
      // Unreachable controller: keep working and keep trying; if the lease runs out meanwhile, the
      // next answer says so.
      this.deps.log('warn', `task ${this.task.id}: report failed: ${(err as Error).message}`);
    }
  }
}

/** A third of the lease: two reports may be lost before the lease runs out. */
function heartbeatEvery(leaseMs: number): number {
  return Math.max(100, Math.floor(leaseMs / 3));
}

class OutcomeReporter {
  constructor(
    private readonly deps: TaskRunnerDeps,
    private readonly task: ClaimedTask,
  ) {}

  async send(outcome: Exclude<TaskRunOutcome, 'lost'>, call: () => Promise<void>): Promise<TaskRunOutcome> {
    // A stopping datamover tries briefly: its process is about to end, and the lease runs out anyway.
    const budget = this.deps.stopSignal.aborted ? 10_000 : (this.deps.reportDeadlineMs ?? 600_000);
    const deadline = Date.now() + budget;
    let delay = 250;
    for (;;) {
      try {
        await call();
        this.deps.log('info', `task ${this.task.id} (${this.task.kind}) ${outcome}`);
        return outcome;
      } catch (err) {
        if (isDatamoverServiceError(err, 'DATAMOVER_LEASE_LOST')) {
          this.deps.log('warn', `task ${this.task.id}: lease lost before its outcome was reported`);
          return 'lost';
        }
        if (!isRetryable(err) || Date.now() + delay > deadline) {
          this.deps.log(
            'error',
            `task ${this.task.id}: could not report ${outcome}: ${(err as Error).message}`,
          );
          return 'lost';
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }
}
