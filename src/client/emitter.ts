/**
 * A small typed event emitter for the SDK. Browser-safe (node:events is not available there).
 *
 * Listeners run synchronously in registration order. A listener that throws does not stop the
 * others and does not break the SDK's state machine (the emitter is called from inside frame
 * handling): the exception is reported asynchronously, the way a DOM EventTarget reports it, so it
 * still surfaces as an uncaught error instead of being swallowed.
 */
export type Listener<T> = (event: T) => void;

export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(name, listener);
  }

  /** Adds a listener that runs for the next event only. */
  once<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(name, (event) => {
      off();
      listener(event);
    });
    return off;
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(name)?.delete(listener as Listener<never>);
  }

  listenerCount<K extends keyof Events>(name: K): number {
    return this.#listeners.get(name)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const set = this.#listeners.get(name);
    if (set === undefined) return;
    // A copy: a listener may remove itself (once) or add others while we iterate.
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(event);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}

function reportListenerError(err: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === 'function') report(err);
  else
    queueMicrotask(() => {
      throw err;
    });
}
