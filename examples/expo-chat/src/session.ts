// One signed-in session: the SDK's realtime client plus what the screens need
// beside its store (peer names and last-seen times, from REST). Everything
// that talks to Duet goes through @duet/client.
import { DuetClient, DuetSession, type components } from "@duet/client";
import { useSyncExternalStore } from "react";

export type User = components["schemas"]["User"];
/** A message from a REST history page (its `payload` is typed looser than the WebSocket `Message`). */
export type HistoryMessage = components["schemas"]["Message"];
/** Messages per history page: the newest page is synced live, earlier ones fetched as you scroll up. */
export const HISTORY_PAGE = Math.min(100, Math.max(1, Number(process.env.EXPO_PUBLIC_HISTORY_PAGE) || 30));

export interface Peer {
  name: string;
  lastSeenAt?: string;
}

/** The default server: `EXPO_PUBLIC_DUET_URL` at build time, else the page's own origin (web). */
export function defaultBaseUrl(): string {
  const fromEnv = process.env.EXPO_PUBLIC_DUET_URL;
  if (fromEnv) return fromEnv;
  const loc = (globalThis as { location?: { origin?: string } }).location;
  return loc?.origin && loc.origin !== "null" ? loc.origin : "http://127.0.0.1:8080";
}

/** Turns an SDK/REST error body into one line for the screen. */
export function errorText(error: unknown): string {
  if (error && typeof error === "object" && "message" in error) return String((error as { message: unknown }).message);
  return String(error);
}

/**
 * Signs up (with `name`) or in; returns the SDK session (the short-lived
 * access token and the refresh token that renews it) and the account. A real
 * app would persist `auth.current` in secure storage through `onTokens`.
 */
export async function authenticate(
  baseUrl: string,
  mode: "signup" | "signin",
  form: { email: string; password: string; name: string },
): Promise<{ auth: DuetSession; user: User }> {
  try {
    const { session, user } =
      mode === "signup"
        ? await DuetSession.register({ baseUrl }, { email: form.email, password: form.password, name: form.name })
        : await DuetSession.login({ baseUrl }, { email: form.email, password: form.password });
    return { auth: session, user };
  } catch (err) {
    throw new Error(errorText(err));
  }
}

export class Session {
  readonly duet: DuetClient;
  private peers: Record<string, Peer> = {};
  private readonly listeners = new Set<() => void>();
  private readonly asked = new Set<string>();

  constructor(
    readonly baseUrl: string,
    readonly user: User,
    private readonly auth: DuetSession,
  ) {
    // The socket and REST use the session's token and refresh it when it expires.
    this.duet = new DuetClient({ baseUrl, ...auth.clientOptions() });
  }

  async start(): Promise<void> {
    const { data } = await this.duet.rest.GET("/conversations", { params: { query: { limit: 50 } } });
    // Follow each conversation from its newest page only; older pages come from REST on demand.
    for (const c of data?.items ?? []) {
      this.rememberPeer(c.peer.id, { name: c.peer.name });
      this.duet.trackConversation(c.id, { peerId: c.peer.id, baselineSeq: Math.max(0, c.lastSeq - HISTORY_PAGE) });
    }
    await this.duet.loadConversations(); // the receipt markers
    this.duet.subscribePresence(Object.keys(this.peers));
    await this.duet.start();
  }

  stop(): void {
    this.duet.stop();
  }

  /** Ends the session on the server too (its refresh token stops working). */
  async signOut(): Promise<void> {
    this.duet.stop();
    await this.auth.logout().catch(() => undefined);
  }

  /** Finds a user by exact email and opens (or creates) the conversation; returns its id. */
  async startConversation(email: string): Promise<string> {
    const found = await this.duet.rest.GET("/users/lookup", { params: { query: { email } } });
    if (!found.data) throw new Error(errorText(found.error));
    const conv = await this.duet.rest.POST("/conversations", { body: { peerId: found.data.id } });
    if (!conv.data) throw new Error(errorText(conv.error));
    this.rememberPeer(found.data.id, { name: found.data.name, ...(found.data.lastSeenAt ? { lastSeenAt: found.data.lastSeenAt } : {}) });
    this.duet.trackConversation(conv.data.id, { peerId: found.data.id, baselineSeq: Math.max(0, conv.data.lastSeq - HISTORY_PAGE) });
    return conv.data.id;
  }

  /** One page of history before `beforeSeq`, oldest first. */
  async earlier(conversationId: string, beforeSeq: number): Promise<{ items: HistoryMessage[]; hasMore: boolean }> {
    const { data, error } = await this.duet.rest.GET("/conversations/{id}/messages", {
      params: { path: { id: conversationId }, query: { beforeSeq, limit: HISTORY_PAGE } },
    });
    if (!data) throw new Error(errorText(error));
    return data;
  }

  /** A peer's name and last seen; fetched once from REST when unknown. */
  peer(id: string | undefined): Peer | undefined {
    if (!id) return undefined;
    const known = this.peers[id];
    if (!known && !this.asked.has(id)) {
      this.asked.add(id);
      void this.duet.rest.GET("/users/{id}", { params: { path: { id } } }).then(({ data }) => {
        if (data) this.rememberPeer(id, { name: data.name, ...(data.lastSeenAt ? { lastSeenAt: data.lastSeenAt } : {}) });
      });
    }
    return known;
  }

  /** Refreshes a peer's last seen (when the chat screen opens). */
  async refreshPeer(id: string): Promise<void> {
    this.duet.refreshPresence([id]);
    const { data } = await this.duet.rest.GET("/users/{id}", { params: { path: { id } } });
    if (data) this.rememberPeer(id, { name: data.name, ...(data.lastSeenAt ? { lastSeenAt: data.lastSeenAt } : {}) });
  }

  private rememberPeer(id: string, peer: Peer): void {
    this.peers = { ...this.peers, [id]: peer };
    this.duet.subscribePresence([id]);
    for (const l of [...this.listeners]) l();
  }

  readonly subscribePeers = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
  readonly getPeers = (): Record<string, Peer> => this.peers;
}

/** The SDK's snapshot, bound to React. */
export function useChat(session: Session) {
  return useSyncExternalStore(session.duet.store.subscribe, session.duet.store.getSnapshot);
}

/** The peer cache, bound to React. */
export function usePeers(session: Session): Record<string, Peer> {
  return useSyncExternalStore(session.subscribePeers, session.getPeers);
}

/** `12:04` today, else `3 Dec 12:04`. */
export function shortTime(iso: string | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toDateString() === new Date().toDateString() ? hm : `${d.toLocaleDateString([], { day: "numeric", month: "short" })} ${hm}`;
}
