/**
 * Wakes long-polling claimers when work may have appeared in this process (a task created, a lease
 * reaped). Claimers also re-check on a timer, for tasks created by another controller sharing the
 * database.
 */
export class Wakeup {
  private waiters = new Set<() => void>();
  private closed = false;

  notify(): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const w of waiters) w();
  }

  /** Resolves on notify(), after `ms`, when `signal` fires or on close() — whichever comes first. */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }

  close(): void {
    this.closed = true;
    this.notify();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
