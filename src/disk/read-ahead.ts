/**
 * Runs `read` on the items up to `depth` at a time, ahead of `consume`, which sees the results one
 * by one in item order. This is how every copy overlaps its source reads with its output writes
 * without a promise per cluster: items are multi-megabyte chunks.
 */
export async function readAheadInOrder<T, R = Buffer>(
  items: Iterator<T>,
  read: (item: T) => Promise<R>,
  consume: (item: T, data: R) => Promise<void>,
  depth: number,
  signal?: AbortSignal,
): Promise<void> {
  const window: { item: T; data: Promise<R> }[] = [];
  const fill = (): void => {
    while (window.length < Math.max(1, depth)) {
      const next = items.next();
      if (next.done) return;
      const data = read(next.value);
      data.catch(() => {}); // observed when its turn comes; avoids an unhandled rejection meanwhile
      window.push({ item: next.value, data });
    }
  };
  try {
    fill();
    while (window.length > 0) {
      signal?.throwIfAborted();
      const head = window.shift()!;
      const data = await head.data;
      fill();
      await consume(head.item, data);
    }
  } finally {
    // On failure, let the reads still in flight settle before the caller closes the source.
    await Promise.allSettled(window.map((w) => w.data));
  }
}
