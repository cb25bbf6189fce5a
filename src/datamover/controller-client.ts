import type { z } from 'zod';
import {
  type ClaimedTask,
  claimAnswer,
  type FailRequest,
  hostHeartbeatAnswer,
  type LeaseAnswer,
  leaseAnswer,
  PROTOCOL_PREFIX,
  type ProgressRequest,
  type RegisterHostAnswer,
  type RegisterHostRequest,
  registerHostAnswer,
  taskStateAnswer,
} from './protocol.js';
import { DatamoverServiceError } from './service-errors.js';

export interface ControllerClientOptions {
  /** Base URL of the controller, e.g. `http://10.0.0.5:7480`. */
  url: string;
  token: string;
  /** Deadline of one ordinary request (a claim adds its wait time to it). Default 30 s. */
  requestTimeoutMs?: number;
}

/**
 * The datamover's side of the protocol: one method per route, answers checked against the
 * protocol's schemas. Failures are typed so the service knows what to do with them: unreachable
 * (retry later), lease lost (drop the task), host unknown (register again), refused (give up).
 */
export class ControllerClient {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly timeoutMs: number;

  constructor(options: ControllerClientOptions) {
    this.baseUrl = options.url.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  async register(body: RegisterHostRequest): Promise<RegisterHostAnswer> {
    return this.call('POST', '/hosts', body, registerHostAnswer);
  }

  /** Long-polls for the next task of this host; undefined when none came within the wait. */
  async claim(
    hostId: string,
    owner: string,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<ClaimedTask | undefined> {
    const answer = await this.call(
      'POST',
      `/hosts/${encodeURIComponent(hostId)}/claim`,
      { owner, wait_ms: waitMs },
      claimAnswer,
      { extraTimeoutMs: waitMs, signal, allowNoContent: true },
    );
    return answer?.task;
  }

  /** Tells the controller the host is alive while every task slot is busy (no claims going out). */
  async hostHeartbeat(hostId: string): Promise<void> {
    await this.call('POST', `/hosts/${encodeURIComponent(hostId)}/heartbeat`, {}, hostHeartbeatAnswer);
  }

  async progress(taskId: string, body: ProgressRequest): Promise<LeaseAnswer> {
    return this.call('POST', `/tasks/${encodeURIComponent(taskId)}/progress`, body, leaseAnswer);
  }

  async heartbeat(taskId: string, owner: string): Promise<LeaseAnswer> {
    return this.call('POST', `/tasks/${encodeURIComponent(taskId)}/heartbeat`, { owner }, leaseAnswer);
  }

  async complete(taskId: string, owner: string, result: unknown): Promise<void> {
    await this.call(
      'POST',
      `/tasks/${encodeURIComponent(taskId)}/complete`,
      { owner, result: result ?? null },
      taskStateAnswer,
    );
  }

  async fail(taskId: string, body: FailRequest): Promise<void> {
    await this.call('POST', `/tasks/${encodeURIComponent(taskId)}/fail`, body, taskStateAnswer);
  }

  async cancelled(taskId: string, owner: string): Promise<void> {
    await this.call('POST', `/tasks/${encodeURIComponent(taskId)}/cancelled`, { owner }, taskStateAnswer);
  }

  private async call<S extends z.ZodType>(
    method: 'POST',
    path: string,
    body: unknown,
    schema: S,
    options: { extraTimeoutMs?: number; signal?: AbortSignal; allowNoContent: true },
  ): Promise<z.output<S> | undefined>;
  private async call<S extends z.ZodType>(
    method: 'POST',
    path: string,
    body: unknown,
    schema: S,
    options?: { extraTimeoutMs?: number; signal?: AbortSignal; allowNoContent?: false },
  ): Promise<z.output<S>>;
  private async call<S extends z.ZodType>(
    method: 'POST',
    path: string,
    body: unknown,
    schema: S,
    options: { extraTimeoutMs?: number; signal?: AbortSignal; allowNoContent?: boolean } = {},
  ): Promise<z.output<S> | undefined> {
    const url = `${this.baseUrl}${PROTOCOL_PREFIX}${path}`;
    const timeout = AbortSignal.timeout(this.timeoutMs + (options.extraTimeoutMs ?? 0));
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      throw new DatamoverServiceError(
        'DATAMOVER_CONTROLLER_UNREACHABLE',
        `${method} ${url}: ${causeText(err)}`,
        { cause: err },
      );
    }
    if (res.status === 204 && options.allowNoContent) return undefined;
    const text = await res.text().catch(() => '');
    const json = parseJson(text);
    if (!res.ok) throw answerError(res.status, url, json);
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new DatamoverServiceError(
        'DATAMOVER_BAD_ANSWER',
        `${url}: unexpected answer: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
      );
    }
    return parsed.data;
  }
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

function causeText(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

function answerError(status: number, url: string, json: unknown): DatamoverServiceError {
  const body = (json ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof body.code === 'string' ? body.code : `HTTP_${status}`;
  const message = `${url}: ${code}: ${typeof body.message === 'string' ? body.message : `HTTP ${status}`}`;
  const details = { status, code };
  if (status >= 500 || status === 429) {
    return new DatamoverServiceError('DATAMOVER_CONTROLLER_UNREACHABLE', message, { details });
  }
  if (code === 'CATALOG_LEASE_LOST')
    return new DatamoverServiceError('DATAMOVER_LEASE_LOST', message, { details });
  if (status === 404 && /\/hosts\/[^/]+\/claim$/.test(url)) {
    return new DatamoverServiceError('DATAMOVER_HOST_UNKNOWN', message, { details });
  }
  if (status === 404 && /\/tasks\//.test(url)) {
    // The task itself is gone (its job was deleted): as good as a lost lease.
    return new DatamoverServiceError('DATAMOVER_LEASE_LOST', message, { details });
  }
  return new DatamoverServiceError('DATAMOVER_CONTROLLER_REFUSED', message, { details });
}
