/**
 * A tiny typed event emitter (no dependency on Node's `events`, so it runs in
 * browsers and React Native unchanged).
 * @module
 */

/** Listener bookkeeping for a map of event names to payload types. */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => this.off(event, listener);
  }

  /** Removes a listener added with {@link Emitter.on}. */
  off<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): void {
    this.listeners.get(event)?.delete(listener as (payload: never) => void);
  }

  /** Calls every listener of `event`; a throwing listener does not stop the others. */
  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (payload: Events[K]) => void)(payload);
      } catch (err) {
        // A listener's bug must not break the connection logic that emitted.
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
