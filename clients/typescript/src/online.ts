/**
 * Where the client learns whether the device is online. While offline it
 * stops reconnecting (and closes its socket); back online it connects at once.
 * @module
 */

/** A source of online/offline changes (React Native: wrap NetInfo). */
export interface OnlineSource {
  /** Whether the platform believes it is online now. */
  isOnline(): boolean;
  /** Calls `listener` on each change; returns the unsubscribe function. */
  subscribe(listener: (online: boolean) => void): () => void;
}

/** Always online: the default where the platform reports nothing (Node). */
export const alwaysOnline: OnlineSource = {
  isOnline: () => true,
  subscribe: () => () => undefined,
};

interface BrowserGlobals {
  navigator?: { onLine?: boolean };
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: (type: string, listener: () => void) => void;
}

/** `navigator.onLine` with the `online`/`offline` events, where they exist. */
export function browserOnlineSource(): OnlineSource | undefined {
  const g = globalThis as BrowserGlobals;
  if (typeof g.navigator?.onLine !== "boolean" || typeof g.addEventListener !== "function") return undefined;
  return {
    isOnline: () => g.navigator?.onLine !== false,
    subscribe(listener) {
      const on = () => listener(true);
      const off = () => listener(false);
      g.addEventListener?.("online", on);
      g.addEventListener?.("offline", off);
      return () => {
        g.removeEventListener?.("online", on);
        g.removeEventListener?.("offline", off);
      };
    },
  };
}

/** An online source the app (or a test) sets by hand. */
export class ManualOnlineSource implements OnlineSource {
  private online: boolean;
  private readonly listeners = new Set<(online: boolean) => void>();
  constructor(initiallyOnline = true) {
    this.online = initiallyOnline;
  }
  isOnline(): boolean {
    return this.online;
  }
  subscribe(listener: (online: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** Reports a change to every subscriber. */
  set(online: boolean): void {
    if (online === this.online) return;
    this.online = online;
    for (const l of [...this.listeners]) l(online);
  }
}
