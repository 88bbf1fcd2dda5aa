import { createRequire } from 'node:module';
import uWS from 'uWebSockets.js';
import { TicksError } from '../lib/errors.js';

/**
 * Loads uWebSockets.js and refuses its pure-JS fallback. The package's loader (src/uws.js) requires
 * the native binary for this platform and Node ABI and, when that fails, prints a warning and
 * returns a slow JavaScript re-implementation from `dist/`. A node on the fallback would run, slowly
 * and with different limits, so it refuses to start instead.
 *
 * Detection: the native module is the `exports` of a `.node` entry in the require cache (the
 * loader returns the addon object itself); the fallback is a `.js` module.
 */
export type Uws = typeof uWS;
/**
 * `close()` closes the listen socket and every connection (firing their close handlers). The
 * native addon has it; the typings of this version omit it. A worker thread must close every uWS
 * socket before it ends, or the whole process aborts (`uv_loop_close() while having open handles`).
 */
export type UwsApp = uWS.TemplatedApp & { close(): void };

/** Creates an App and checks that it has `close()` (see UwsApp). */
export function createApp(u: Uws): UwsApp {
  const app = u.App() as Partial<UwsApp> & uWS.TemplatedApp;
  if (typeof app.close !== 'function') throw new UwsFallbackError('App.close is missing');
  return app as UwsApp;
}

export class UwsFallbackError extends TicksError {
  constructor(detail: string) {
    super(
      'gateway.uws_fallback',
      `uWebSockets.js loaded its pure-JS fallback instead of the native binary (${detail}); the node refuses to start. ` +
        `Use a Node version with a bundled binary (ABI 93/108/115: Node 16/18/20) on glibc Linux, macOS or Windows, and unset UWS_USE_FALLBACK.`,
      { retryable: false },
    );
    this.name = 'UwsFallbackError';
  }
}

type Cache = Record<string, { exports?: unknown } | undefined>;

/** True when `mod` is the exports of a native addon (`.node`) in `cache`. Pure, for unit tests. */
export function isNativeUws(mod: unknown, cache: Cache): boolean {
  if (typeof mod !== 'object' || mod === null) return false;
  const m = mod as Record<string, unknown>;
  if (typeof m.App !== 'function' || typeof m.SSLApp !== 'function') return false;
  return Object.entries(cache).some(([id, entry]) => id.endsWith('.node') && entry?.exports === mod);
}

/** Throws UwsFallbackError unless `mod` is the native addon. */
export function assertNativeUws(mod: unknown, cache: Cache): void {
  if (!isNativeUws(mod, cache)) {
    const nodes = Object.keys(cache).filter((id) => id.endsWith('.node') && /uws/i.test(id));
    throw new UwsFallbackError(nodes.length === 0 ? 'no native uws_*.node module is loaded' : 'the loaded module is not the native addon');
  }
}

let checked = false;

/** The native uWebSockets.js module; throws UwsFallbackError on the pure-JS fallback. */
export function loadUws(): Uws {
  if (!checked) {
    assertNativeUws(uWS, createRequire(import.meta.url).cache as Cache);
    checked = true;
  }
  return uWS;
}
