/**
 * The little of a WebSocket the client needs, so the app can inject the
 * platform's: the browser's global, React Native's (which takes `headers` in
 * its third argument), or the `ws` package in Node 20 (which has no global
 * WebSocket).
 * @module
 */

/** The events the client reads from a socket. */
export interface SocketMessageEvent {
  readonly data: unknown;
}
/** A close event. */
export interface SocketCloseEvent {
  readonly code: number;
  readonly reason: string;
}

/** A WebSocket instance, as the client uses it. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: never) => void): void;
}

/**
 * A WebSocket constructor. The third argument carries `headers` where the
 * platform supports them (React Native, `ws`); browsers ignore it.
 */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  options?: { headers?: Record<string, string> },
) => WebSocketLike;

/** The `ws` package's extra event, used only when present: the HTTP status of a refused upgrade. */
interface WsUpgradeEvents {
  once(event: "unexpected-response", listener: (req: unknown, res: UpgradeResponse) => void): void;
}
interface UpgradeResponse {
  statusCode?: number;
  headers?: Record<string, string | string[] | undefined>;
}

/** A refused upgrade (HTTP status and `Retry-After` in ms), where the platform exposes it. */
export interface UpgradeRefusal {
  status: number;
  retryAfterMs?: number;
}

/**
 * Listens for a refused upgrade on sockets that expose it (`ws`); browsers and
 * React Native do not, and a refusal there looks like a plain close (1006).
 */
export function onUpgradeRefused(socket: WebSocketLike, listener: (refusal: UpgradeRefusal) => void): void {
  const ws = socket as unknown as Partial<WsUpgradeEvents>;
  if (typeof ws.once !== "function") return;
  ws.once("unexpected-response", (_req, res) => {
    const header = res.headers?.["retry-after"];
    const value = Array.isArray(header) ? header[0] : header;
    const seconds = value !== undefined ? Number(value) : NaN;
    listener({
      status: res.statusCode ?? 0,
      ...(Number.isFinite(seconds) ? { retryAfterMs: seconds * 1000 } : {}),
    });
    // Closing while CONNECTING makes `ws` abort the request and emit error + close.
    socket.close();
  });
}

/** `http(s)://host/base` → `ws(s)://host/base/ws`. */
export function websocketUrl(baseUrl: string): string {
  const url = baseUrl.replace(/\/+$/, "").replace(/^http(s?):\/\//, "ws$1://");
  return url.endsWith("/ws") ? url : `${url}/ws`;
}
