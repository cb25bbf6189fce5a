import type { Command } from 'commander';
import { LifeboatError } from '../errors.js';

/**
 * The CLI's REST client. The controller and the token come from --url/--token, else LIFEBOAT_URL /
 * LIFEBOAT_TOKEN. Every failure is a LifeboatError, so the CLI prints it as one line: the API's own
 * `{code, message}`, or CLIENT_* for what happened before an answer.
 */

export const DEFAULT_CONTROLLER_URL = 'http://127.0.0.1:7780';

export interface ClientOptions {
  url?: string;
  token?: string;
}

/** Adds --url, --token and --json to a command group (its subcommands inherit them). */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', `controller URL (default: $LIFEBOAT_URL or ${DEFAULT_CONTROLLER_URL})`)
    .option('--token <token>', 'API token (default: $LIFEBOAT_TOKEN)')
    .option('--json', 'print JSON');
}

export class LifeboatClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;

  constructor(options: ClientOptions = {}) {
    this.baseUrl = (options.url || process.env.LIFEBOAT_URL || DEFAULT_CONTROLLER_URL).replace(/\/+$/, '');
    this.token = options.token || process.env.LIFEBOAT_TOKEN || undefined;
  }

  static fromCommand(cmd: Command): LifeboatClient {
    return new LifeboatClient(cmd.optsWithGlobals<ClientOptions>());
  }

  get<T>(path: string, query: Record<string, string | number | boolean | undefined> = {}): Promise<T> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return this.request<T>('GET', qs ? `${path}?${qs}` : path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {});
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    if (!this.token) {
      throw new LifeboatError(
        'CLIENT_NO_TOKEN',
        'no API token: pass --token or set LIFEBOAT_TOKEN (lifeboat serve prints one at first start; `lifeboat admin token create` makes more)',
      );
    }
    const url = `${this.baseUrl}${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      const c = (err as { cause?: { code?: string; errors?: Array<{ code?: string }> } }).cause;
      const cause = c?.code ?? c?.errors?.[0]?.code ?? (err as Error).message;
      throw new LifeboatError(
        'CLIENT_UNREACHABLE',
        `cannot reach the controller at ${this.baseUrl} (${cause}): is \`lifeboat serve\` running? (--url / LIFEBOAT_URL)`,
      );
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new LifeboatError('CLIENT_BAD_ANSWER', `${method} ${url}: HTTP ${res.status}, not JSON`);
    }
    if (!res.ok) {
      const e = (json ?? {}) as { code?: unknown; message?: unknown };
      throw new LifeboatError(
        typeof e.code === 'string' ? e.code : `HTTP_${res.status}`,
        typeof e.message === 'string' ? e.message : `${method} ${path}: HTTP ${res.status}`,
      );
    }
    return json as T;
  }
}
