import { EventEmitter } from 'node:events';
import {
  getHost,
  type Host,
  markSilentHostsOffline,
  recordHostHeartbeat,
  registerHost,
} from '../catalog/hosts.js';
import {
  appendJobMessage,
  claimNextTask,
  createJob,
  createTask,
  expireStaleTasks,
  finishTask,
  getJob,
  getTask,
  heartbeatTask,
  type Job,
  type NewJob,
  requestJobCancel,
} from '../catalog/jobs.js';
import type { CatalogDb } from '../catalog/schema.js';
import { isTerminal } from '../catalog/status.js';
import { getTargetSecrets } from '../catalog/targets.js';
import type { Task } from '../catalog/tasks.js';
import { isoPlus } from '../catalog/time.js';
import { DispatchError } from './dispatch-errors.js';
import {
  aggregateJobProgress,
  cancelOrphanedTasks,
  jobsWithoutLiveTasks,
  settleJob,
} from './job-settlement.js';
import { TaskHookRegistry } from './task-hooks.js';
import { Wakeup } from './wakeup.js';

export type ControllerLog = (level: 'info' | 'warn' | 'error', message: string) => void;

export interface TaskDispatchOptions {
  /** Lease of a claimed task: a datamover silent this long loses it (default 60 s). */
  leaseMs?: number;
  /** Longest a claim is held open when there is nothing to do (default 25 s). */
  claimWaitMs?: number;
  /** How often a held claim re-checks the database (tasks made by other controllers; default 1 s). */
  claimPollMs?: number;
  /** A host is offline after this long without a claim or registration (default 90 s). */
  hostOfflineAfterMs?: number;
  /** Jobs left without live tasks are settled by the sweeper after this quiet time (default 30 s). */
  settleQuietMs?: number;
  log?: ControllerLog;
}

export interface NewTaskSpec {
  kind: string;
  /** The host whose datamover must run it; null/undefined: any datamover. */
  hostId?: string | null;
  payload?: Record<string, unknown>;
  /** Attempts before a task whose lease keeps expiring fails (default 3). */
  maxAttempts?: number;
}

export interface LeaseState {
  cancelRequested: boolean;
  leaseExpiresAt: string | null;
  leaseMs: number;
}

export interface ProgressUpdate {
  done?: number;
  total?: number;
  message?: string;
}

export interface TaskFailure {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface SweepReport {
  requeued: Task[];
  failed: Task[];
  cancelled: Task[];
  hostsOffline: Host[];
  jobsSettled: Job[];
}

/**
 * The controller's side of the datamover protocol, free of HTTP: hosts register, claim tasks (held
 * open until work appears), report progress (which renews the lease and rolls up into the job's
 * progress) and outcomes. Outcomes run the per-kind hooks that domain services registered, then
 * settle the job (job-settlement.ts). `sweep()` — run periodically by the TaskSweeper — reaps
 * expired leases so a datamover that died never leaves a job hanging.
 */
export class TaskDispatcher {
  readonly hooks = new TaskHookRegistry();
  readonly leaseMs: number;
  readonly claimWaitMs: number;
  private readonly claimPollMs: number;
  private readonly wakeup = new Wakeup();
  private readonly events = new EventEmitter();
  /** Last progress message per running task, so a repeated message is not appended again. */
  private readonly lastMessage = new Map<string, string>();

  constructor(
    readonly db: CatalogDb,
    private readonly options: TaskDispatchOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 60_000;
    this.claimWaitMs = options.claimWaitMs ?? 25_000;
    this.claimPollMs = options.claimPollMs ?? 1000;
    this.events.setMaxListeners(0);
  }

  private log(level: 'info' | 'warn' | 'error', message: string): void {
    this.options.log?.(level, message);
  }

  async registerHost(input: {
    name: string;
    address: string;
    version?: string | null;
    libvirtUri?: string;
    taskKinds?: string[];
  }): Promise<Host> {
    const host = await registerHost(this.db, {
      name: input.name,
      address: input.address,
      version: input.version ?? null,
      capabilities: { libvirt_uri: input.libvirtUri ?? null, task_kinds: input.taskKinds ?? [] },
    });
    this.log('info', `host ${host.name} (${host.id}) registered from ${host.address}`);
    return host;
  }

  /** The host's datamover is alive (it also counts every claim as one). */
  async hostHeartbeat(hostId: string): Promise<Host> {
    return recordHostHeartbeat(this.db, hostId);
  }

  /** Creates a job and its first tasks, and wakes the datamovers waiting for work. */
  async submitJob(job: NewJob, tasks: readonly NewTaskSpec[]): Promise<{ job: Job; tasks: Task[] }> {
    const created = await this.db.transaction().execute(async (trx) => {
      const j = await createJob(trx, job);
      const ts: Task[] = [];
      for (const t of tasks) ts.push(await createTask(trx, { jobId: j.id, ...t }));
      return { job: j, tasks: ts };
    });
    this.wakeup.notify();
    return created;
  }

  /** More tasks for a live job (e.g. from a hook, continuing a multi-step job). */
  async addTasks(jobId: string, tasks: readonly NewTaskSpec[]): Promise<Task[]> {
    const out: Task[] = [];
    for (const t of tasks) out.push(await createTask(this.db, { jobId, ...t }));
    this.wakeup.notify();
    return out;
  }

  /**
   * The next task for this host, waiting up to `waitMs` (capped at claimWaitMs) for one to appear.
   * Counts as the host's heartbeat. CATALOG_NOT_FOUND when the host is not registered.
   */
  async claim(
    hostId: string,
    owner: string,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<Task | undefined> {
    await getHost(this.db, hostId);
    await recordHostHeartbeat(this.db, hostId);
    const deadline = Date.now() + Math.min(waitMs, this.claimWaitMs);
    for (;;) {
      if (this.wakeup.isClosed) return undefined;
      const task = await claimNextTask(this.db, hostId, this.leaseMs, { owner });
      if (task) {
        this.log('info', `task ${task.id} (${task.kind}) claimed by ${owner}, attempt ${task.attempts}`);
        return withTargetSecrets(this.db, task);
      }
      const left = deadline - Date.now();
      if (left <= 0 || signal?.aborted) return undefined;
      await this.wakeup.wait(Math.min(left, this.claimPollMs), signal);
    }
  }

  async heartbeat(taskId: string, owner: string): Promise<LeaseState> {
    return this.progress(taskId, owner, {});
  }

  /** Renews the lease, records progress and rolls it up into the job; says whether to stop. */
  async progress(taskId: string, owner: string, update: ProgressUpdate): Promise<LeaseState> {
    const { task, cancelRequested } = await heartbeatTask(this.db, taskId, owner, this.leaseMs, {
      done: update.done,
      total: update.total,
    });
    if (update.done !== undefined || update.total !== undefined)
      await aggregateJobProgress(this.db, task.job_id);
    if (update.message && this.lastMessage.get(taskId) !== update.message) {
      this.lastMessage.set(taskId, update.message);
      await appendJobMessage(this.db, task.job_id, 'info', `${task.kind}: ${update.message}`);
    }
    // A job that already failed (another of its tasks did) wants its remaining tasks to stop too.
    const job = await getJob(this.db, task.job_id);
    return {
      cancelRequested: cancelRequested || isTerminal('job', job.status),
      leaseExpiresAt: task.lease_expires_at ?? isoPlus(this.leaseMs),
      leaseMs: this.leaseMs,
    };
  }

  async complete(taskId: string, owner: string, result: unknown): Promise<Task> {
    const task = await finishTask(this.db, taskId, owner, { status: 'succeeded', result });
    this.lastMessage.delete(taskId);
    const job = await getJob(this.db, task.job_id);
    await this.runTaskHooks(task, job, (h) => h.onTaskSucceeded?.({ db: this.db, task, job }));
    await this.settle(task);
    return task;
  }

  async fail(taskId: string, owner: string, failure: TaskFailure): Promise<Task> {
    const reason = `${failure.code}: ${failure.message}`;
    const task = await finishTask(this.db, taskId, owner, { status: 'failed', error: reason });
    this.lastMessage.delete(taskId);
    await this.afterFailure(task, reason, false);
    return task;
  }

  async cancelled(taskId: string, owner: string): Promise<Task> {
    const task = await finishTask(this.db, taskId, owner, { status: 'cancelled' });
    this.lastMessage.delete(taskId);
    await this.afterCancel(task);
    return task;
  }

  /**
   * One pass of the sweeper: expired leases are requeued, failed or cancelled (and their hooks
   * run), silent hosts go offline, and jobs left without live tasks are settled.
   */
  async sweep(now = new Date()): Promise<SweepReport> {
    const nowIso = now.toISOString();
    const expired = await expireStaleTasks(this.db, nowIso);
    for (const task of expired.requeued) {
      this.lastMessage.delete(task.id);
      await appendJobMessage(
        this.db,
        task.job_id,
        'warning',
        `${task.kind} task ${task.id}: lease expired (the datamover stopped reporting); queued again after attempt ${task.attempts} of ${task.max_attempts}`,
      );
    }
    if (expired.requeued.length > 0) {
      await cancelOrphanedTasks(this.db);
      this.wakeup.notify();
    }
    for (const task of expired.failed) {
      this.lastMessage.delete(task.id);
      this.log('warn', `task ${task.id} (${task.kind}) failed: ${task.error}`);
      await this.afterFailure(task, task.error ?? 'lease expired', true);
    }
    for (const task of expired.cancelled) {
      this.lastMessage.delete(task.id);
      await this.afterCancel(task);
    }
    const hostsOffline = await markSilentHostsOffline(
      this.db,
      new Date(now.getTime() - (this.options.hostOfflineAfterMs ?? 90_000)).toISOString(),
    );
    for (const h of hostsOffline) this.log('warn', `host ${h.name} is offline (no datamover heard from)`);
    const jobsSettled: Job[] = [];
    const quietSince = new Date(now.getTime() - (this.options.settleQuietMs ?? 30_000)).toISOString();
    for (const jobId of await jobsWithoutLiveTasks(this.db, quietSince)) {
      const job = await settleJob(this.db, jobId);
      if (job) {
        jobsSettled.push(job);
        await this.finished(job);
      }
    }
    return { ...expired, hostsOffline, jobsSettled };
  }

  /**
   * Waits until the job is finished and returns it (the event from this process, or a re-read every
   * half second for jobs finished by another controller). DISPATCH_WAIT_TIMEOUT after `timeoutMs`.
   */
  async waitForJob(jobId: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<Job> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const job = await getJob(this.db, jobId);
      if (isTerminal('job', job.status)) return job;
      if (this.wakeup.isClosed) throw new DispatchError('DISPATCH_CLOSED', 'the controller is shutting down');
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new DispatchError(
          'DISPATCH_WAIT_TIMEOUT',
          `job ${jobId} (${job.kind}) did not finish in time`,
          {
            details: { jobId, status: job.status },
          },
        );
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.events.off(`job:${jobId}`, done);
          options.signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 500));
        this.events.once(`job:${jobId}`, done);
        options.signal?.addEventListener('abort', done, { once: true });
      });
      if (options.signal?.aborted) throw options.signal.reason;
    }
  }

  /**
   * Runs one task on one host as a job of its own and returns the task's result: for quick
   * questions to a datamover (host.inventory). The job is cancelled when the wait times out.
   */
  async runTask(
    hostId: string,
    kind: string,
    payload: Record<string, unknown>,
    options: { timeoutMs: number },
  ): Promise<unknown> {
    const { job, tasks } = await this.submitJob({ kind, resourceType: 'host', resourceId: hostId }, [
      { kind, hostId, payload, maxAttempts: 1 },
    ]);
    let finished: Job;
    try {
      finished = await this.waitForJob(job.id, options);
    } catch (err) {
      await requestJobCancel(this.db, job.id).catch(() => undefined);
      throw err;
    }
    if (finished.status !== 'succeeded') {
      throw new DispatchError('DISPATCH_JOB_FAILED', finished.error ?? `job ${job.id} ${finished.status}`, {
        details: { jobId: job.id, status: finished.status },
      });
    }
    return (await getTask(this.db, tasks[0].id)).result;
  }

  /** Ends every held claim (they answer "nothing to do") and refuses to wait any longer. */
  close(): void {
    this.wakeup.close();
  }

  private async afterFailure(task: Task, reason: string, leaseExpired: boolean): Promise<void> {
    const job = await getJob(this.db, task.job_id);
    await this.runTaskHooks(task, job, (h) =>
      h.onTaskFailed?.({ db: this.db, task, job, reason, leaseExpired }),
    );
    await this.settle(task);
  }

  private async afterCancel(task: Task): Promise<void> {
    const job = await getJob(this.db, task.job_id);
    await this.runTaskHooks(task, job, (h) => h.onTaskCancelled?.({ db: this.db, task, job }));
    await this.settle(task);
  }

  private async settle(task: Task): Promise<void> {
    const job = await settleJob(this.db, task.job_id, task);
    if (job) await this.finished(job);
  }

  private async finished(job: Job): Promise<void> {
    this.log(
      job.status === 'succeeded' ? 'info' : 'warn',
      `job ${job.id} (${job.kind}) ${job.status}${job.error ? `: ${job.error}` : ''}`,
    );
    for (const h of this.hooks.jobHooks(job.kind)) {
      await this.guardHook(job.id, `job ${job.kind} hook`, () => h.onJobFinished?.({ db: this.db, job }));
    }
    this.events.emit(`job:${job.id}`);
  }

  private async runTaskHooks(
    task: Task,
    job: Job,
    call: (hooks: ReturnType<TaskHookRegistry['taskHooks']>[number]) => Promise<void> | void,
  ): Promise<void> {
    for (const h of this.hooks.taskHooks(task.kind)) {
      await this.guardHook(job.id, `${task.kind} task hook`, () => call(h));
    }
  }

  private async guardHook(jobId: string, what: string, run: () => Promise<void> | void): Promise<void> {
    try {
      await run();
    } catch (err) {
      const text = `${what} failed: ${(err as Error)?.message ?? String(err)}`;
      this.log('error', `job ${jobId}: ${text}`);
      await appendJobMessage(this.db, jobId, 'warning', text).catch(() => undefined);
    }
  }

  /** For tests and diagnostics. */
  getTask(id: string): Promise<Task> {
    return getTask(this.db, id);
  }
}

/**
 * The task as its datamover gets it: a payload naming a catalog target (`target.id`) gets that
 * target's credentials here, at claim time, so they are never stored in the task's payload (which
 * stays in the catalog with the job history). A target without stored credentials gets none (a
 * directory, or S3 with the datamover's own AWS_* environment).
 */
async function withTargetSecrets(db: CatalogDb, task: Task): Promise<Task> {
  const target = task.payload.target as { id?: unknown } | undefined;
  if (typeof target !== 'object' || target === null || typeof target.id !== 'string') return task;
  const secrets = await getTargetSecrets(db, target.id);
  return { ...task, payload: { ...task.payload, target: { ...target, secrets } } };
}
