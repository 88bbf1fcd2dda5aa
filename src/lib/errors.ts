/**
 * The project's typed errors. Every error that crosses a boundary (store, cluster, gateway) is a
 * TicksError with a stable `code`, a `retryable` flag and the original `cause`. Callers decide
 * retries by `retryable` and branch on `code`, never on message text.
 */
export class TicksError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { retryable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TicksError';
    this.code = code;
    this.retryable = options.retryable;
  }
}

export function isTicksError(err: unknown, code?: string): err is TicksError {
  return err instanceof TicksError && (code === undefined || err.code === code);
}
