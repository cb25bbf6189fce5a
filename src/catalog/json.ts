/**
 * JSON columns are TEXT on both databases (not JSONB) so that both store and return the same thing;
 * the query modules parse them on the way out. A corrupt value reads as the fallback instead of
 * failing a whole listing.
 */
export function parseJson<T>(text: string | null | undefined, fallback: T): T {
  if (text === null || text === undefined || text === '') return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

export function toJson(value: unknown): string {
  return JSON.stringify(value ?? null);
}
