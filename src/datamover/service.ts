import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { LibvirtHypervisor } from '../hypervisor/libvirt.js';
import { DEFAULT_LIBVIRT_URI } from '../hypervisor/virsh.js';
import { ControllerClient } from './controller-client.js';
import { isDatamoverServiceError, isRetryable } from './service-errors.js';
import { defaultTaskHandlers, type TaskHandlerRegistry } from './task-handlers.js';
import { type DatamoverLog, runClaimedTask, type TaskRunOutcome } from './task-runner.js';

/** How often a datamover whose task slots are all busy tells the controller it is alive. */
const HOST_HEARTBEAT_MS = 30_000;

export interface DatamoverOptions {
  /** Controller base URL (`http://host:port`). */
  controllerUrl: string;
  /** A token of the `datamover` service user (or an admin's). */
  token: string;
  /** Host name in the catalog (default: this machine's hostname). One host, one datamover. */
  name?: string;
  /** How the controller can tell people where this host is (default: the hostname). */
  address?: string;
  libvirtUri?: string;
  version?: string;
  /** Tasks run at the same time (default 2). */
  concurrency?: number;
  handlers?: TaskHandlerRegistry;
  /** How long one claim waits at the controller (default: what the controller offers, ≤ 25 s). */
  claimWaitMs?: number;
  /** Backoff bounds while the controller is unreachable (default 500 ms … 15 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  progressIntervalMs?: number;
  log?: DatamoverLog;
}

/**
 * A datamover: registers its host with the controller, long-polls for tasks, runs them through the
 * handler registry (a few at a time) and reports back. It holds no database credentials and keeps
 * no state the controller needs: when the controller restarts it retries with backoff (and
 * registers again if the controller forgot the host); when it restarts itself, the leases of its
 * previous run expire and the controller requeues or fails those tasks.
 */
export class DatamoverService {
  readonly owner: string;
  readonly name: string;
  private readonly client: ControllerClient;
  private readonly handlers: TaskHandlerRegistry;
  private readonly hypervisor: LibvirtHypervisor;
  private readonly stopper = new AbortController();
  private readonly running = new Set<Promise<TaskRunOutcome>>();
  private loop: Promise<void> | undefined;
  private hostIdValue: string | undefined;
  private registeredResolve!: () => void;
  /** Resolves once the first registration succeeded. */
  readonly registered: Promise<void>;

  constructor(private readonly options: DatamoverOptions) {
    this.name = options.name ?? hostname();
    this.owner = `${this.name}/${process.pid}/${randomBytes(4).toString('hex')}`;
    this.client = new ControllerClient({ url: options.controllerUrl, token: options.token });
    this.handlers = options.handlers ?? defaultTaskHandlers;
    this.hypervisor = new LibvirtHypervisor({ uri: options.libvirtUri ?? DEFAULT_LIBVIRT_URI });
    this.registered = new Promise((resolve) => {
      this.registeredResolve = resolve;
    });
  }

  get hostId(): string | undefined {
    return this.hostIdValue;
  }

  private get log(): DatamoverLog {
    return this.options.log ?? (() => undefined);
  }

  /** Starts the pull loop in the background; `done()` resolves when it ends (stop, or a fatal error). */
  start(): this {
    this.loop ??= this.run();
    return this;
  }

  done(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  /** Stops claiming, aborts running tasks (they are reported failed: DATAMOVER_STOPPING), waits. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await Promise.allSettled([...this.running]);
    await this.loop?.catch(() => undefined);
  }

  private async hostHeartbeatAfter(ms: number, signal: AbortSignal): Promise<void> {
    await sleep(ms, undefined, { signal }).catch(() => undefined);
    if (signal.aborted || !this.hostIdValue) return;
    await this.client.hostHeartbeat(this.hostIdValue).catch((err: unknown) => {
      this.log('warn', `host heartbeat failed: ${(err as Error).message}`);
    });
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let claimWaitMs = this.options.claimWaitMs ?? 25_000;
    let delay = this.options.retryMinMs ?? 500;
    const resetDelay = () => {
      delay = this.options.retryMinMs ?? 500;
    };
    const backoff = async () => {
      await sleep(delay, undefined, { signal }).catch(() => undefined);
      delay = Math.min(delay * 2, this.options.retryMaxMs ?? 15_000);
    };

    while (!signal.aborted) {
      if (!this.hostIdValue) {
        try {
          const answer = await this.client.register({
            name: this.name,
            address: this.options.address ?? hostname(),
            version: this.options.version,
            libvirt_uri: this.hypervisor.uri,
            task_kinds: this.handlers.kinds(),
          });
          this.hostIdValue = answer.host_id;
          claimWaitMs = Math.min(claimWaitMs, answer.claim_wait_ms);
          this.log('info', `registered host ${answer.name} (${answer.host_id}) as ${this.owner}`);
          this.registeredResolve();
          resetDelay();
        } catch (err) {
          if (!isRetryable(err)) throw err;
          this.log('warn', `cannot register with the controller yet: ${(err as Error).message}`);
          await backoff();
          continue;
        }
      }

      if (this.running.size >= (this.options.concurrency ?? 2)) {
        // Busy: no claims go out, so tell the controller the host is alive now and then.
        await Promise.race([...this.running, this.hostHeartbeatAfter(HOST_HEARTBEAT_MS, signal)]);
        continue;
      }

      let task: Awaited<ReturnType<ControllerClient['claim']>>;
      try {
        task = await this.client.claim(this.hostIdValue, this.owner, claimWaitMs, signal);
        resetDelay();
      } catch (err) {
        if (signal.aborted) break;
        if (isDatamoverServiceError(err, 'DATAMOVER_HOST_UNKNOWN')) {
          this.log('warn', 'the controller does not know this host any more: registering again');
          this.hostIdValue = undefined;
          continue;
        }
        if (!isRetryable(err)) throw err;
        this.log('warn', `claim failed, retrying: ${(err as Error).message}`);
        await backoff();
        continue;
      }
      if (!task) continue;
      this.log(
        'info',
        `task ${task.id} (${task.kind}) claimed, attempt ${task.attempt}/${task.max_attempts}`,
      );
      const run: Promise<TaskRunOutcome> = runClaimedTask(
        {
          client: this.client,
          handlers: this.handlers,
          host: { id: this.hostIdValue, name: this.name, libvirtUri: this.hypervisor.uri },
          hypervisor: this.hypervisor,
          owner: this.owner,
          log: this.log,
          stopSignal: signal,
          progressIntervalMs: this.options.progressIntervalMs,
        },
        task,
      ).catch((err: unknown) => {
        this.log('error', `task ${task.id}: ${(err as Error).message}`);
        return 'lost' as const;
      });
      this.running.add(run);
      void run.finally(() => this.running.delete(run));
    }
  }
}
