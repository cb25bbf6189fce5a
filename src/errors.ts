/**
 * The one base class of every error Lifeboat raises on purpose. `code` is stable (API answers, CLI
 * exit messages and tests match on it); `message` is for people. Each layer defines its own
 * subclasses next to its code; this file only holds what all of them share.
 */
export class LifeboatError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;

  constructor(
    code: string,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
  }
}

export function isLifeboatError(err: unknown): err is LifeboatError {
  return err instanceof LifeboatError;
}
