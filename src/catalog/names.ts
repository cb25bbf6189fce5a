import { CatalogError } from './errors.js';

/**
 * Names of projects, users, tokens, workloads: what people type and scripts match on. Letters,
 * digits, space and `. _ @ + -`, starting with a letter or digit, at most 128 characters. The API
 * and the CLI both check against this one rule.
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,127}$/;
export const NAME_RULE =
  'letters, digits, space and . _ @ + - only, starting with a letter or digit, at most 128';

export function assertValidName(what: string, name: string): string {
  if (!NAME_PATTERN.test(name)) {
    throw new CatalogError(
      'CATALOG_INVALID_NAME',
      `invalid ${what} name ${JSON.stringify(name)}: ${NAME_RULE}`,
    );
  }
  return name;
}
