/** Listing window shared by every list query. */
export interface Page {
  limit?: number;
  offset?: number;
}

export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;

export function pageOf(page: Page | undefined): { limit: number; offset: number } {
  const limit = Math.min(Math.max(1, Math.trunc(page?.limit ?? DEFAULT_PAGE_LIMIT)), MAX_PAGE_LIMIT);
  const offset = Math.max(0, Math.trunc(page?.offset ?? 0));
  return { limit, offset };
}

/**
 * A caller's view of projects: null sees everything (admins, the controller itself); a list sees only
 * those projects. An empty list sees nothing.
 */
export type ProjectScope = readonly string[] | null;
