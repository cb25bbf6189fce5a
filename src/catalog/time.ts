/**
 * Every time in the catalog is an ISO-8601 UTC string with milliseconds, exactly as
 * `Date.prototype.toISOString()` writes it (`2024-05-01T12:00:00.000Z`). One fixed-width format means
 * the same text column sorts and compares correctly on SQLite and PostgreSQL alike, so lease expiry
 * and "older than" queries are plain string comparisons on both.
 */
export type IsoTime = string;

export function isoNow(): IsoTime {
  return new Date().toISOString();
}

export function isoAt(epochMs: number): IsoTime {
  return new Date(epochMs).toISOString();
}

/** `base` (ISO or epoch ms; default now) plus `ms` milliseconds. */
export function isoPlus(ms: number, base: IsoTime | number = Date.now()): IsoTime {
  const start = typeof base === 'number' ? base : Date.parse(base);
  return new Date(start + ms).toISOString();
}
