import { CatalogError } from '../catalog/errors.js';

/** A status change another writer already made: the race is lost, which is fine. */
export function isCatalogTransitionError(err: unknown): boolean {
  return err instanceof CatalogError && err.code === 'CATALOG_BAD_TRANSITION';
}
