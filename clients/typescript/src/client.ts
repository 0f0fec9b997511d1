/**
 * The realtime client: one WebSocket to `<baseUrl>/ws`, kept up across drops
 * and node restarts, feeding a {@link ChatStore}.
 *
 * What it guarantees the app (see the README): every message of a tracked
 * conversation once, in seq order, whatever the connection missed (after each
 * connect it resumes with `chat.sync` from the last contiguous seq it holds,
 * and a live message past a gap triggers a sync of that conversation); every
 * message composed is sent until acknowledged, with the same `clientMsgId`
 * (the outbox); receipts and typing are coalesced and throttled.
 *
 * Reconnects follow centrifuge-js: capped exponential backoff with full
 * jitter, reset after a successful `auth.ok`; close codes decide the rest
 * (4401: refresh the token; 1012: at once; HTTP 429: `Retry-After`).
 * @module
 */
import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import type {
  Ack,
  ClientFrame,
  ErrorCode,
  ErrorData,
  Message,
  MessageType,
  ReceiptOut,
  ServerFrame,
  SyncConversation,
  SyncResult,
} from "./generated/protocol.js";
import { randomId } from "./ids.js";
import { alwaysOnline, browserOnlineSource, type OnlineSource } from "./online.js";
import { MemoryOutboxStorage, PERMANENT_SEND_ERRORS, type OutboxEntry, type OutboxStorage } from "./outbox.js";
import { createRestClient, type DuetRestClient } from "./rest.js";
import { DuetPrivacy } from "./privacy.js";
import { DuetAttachments, type NewAttachment } from "./attachments.js";
import { MessageChanges, applyChangeFrame, applySyncChanges } from "./changes.js";
import { ChatStore, type ChatMessage, type ConnectionStatus, type ConversationModel } from "./store.js";
import {
  onUpgradeRefused,
  websocketUrl,
  type SocketCloseEvent,
  type SocketMessageEvent,
  type UpgradeRefusal,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./transport.js";

/** Options of {@link DuetClient}. */
export interface DuetClientOptions {
  /** The server, `https://chat.example.com`; the socket goes to `<baseUrl>/ws`. */
  baseUrl: string;
  /** An access token, or a function returning the current one (asked before each connect and request). */
  token: string | (() => string | Promise<string>);
  /**
   * Called after a close 4401 (expired or invalid token) or a REST 401 `token_expired`: return a new
   * token (the request is retried once). Without it the client stops as `unauthorized`; so it does
   * when the hook throws an error with `sessionEnded` (a {@link SessionEndedError}). A
   * {@link DuetSession}'s `clientOptions()` provides both `token` and `refreshToken`.
   */
  refreshToken?: () => Promise<string>;
  /** The WebSocket constructor; default: the global one. Node 20 has none: pass `ws`. */
  WebSocket?: WebSocketConstructor;
  /**
   * How to authenticate: `header` (`Authorization: Bearer`, React Native and `ws`) or
   * `frame` (a first `auth` frame; browsers). Default: `header` with an injected
   * constructor or in React Native, else `frame`.
   */
  authTransport?: "header" | "frame";
  /** Where the outbox lives; default in memory. */
  outboxStorage?: OutboxStorage;
  /** Online/offline reports; default `navigator.onLine` where present, else always online. */
  online?: OnlineSource;
  /** Reconnect backoff bounds. */
  backoff?: BackoffOptions;
  /** Messages per conversation per sync page (1 to 500; default 100). */
  syncLimit?: number;
  /** Least time between two receipt flushes, ms (default 250). */
  receiptIntervalMs?: number;
  /** Least time between two `typing start` frames of one conversation, ms (default 3000). */
  typingThrottleMs?: number;
  /** Idle time after which typing stops by itself, ms (default 5000). */
  typingIdleMs?: number;
  /** How long a connect (to `auth.ok`) or a request may take before the socket is dropped, ms (default 15 000). */
  requestTimeoutMs?: number;
  /** Send delivered receipts when messages reach the device (default true). */
  autoDelivered?: boolean;
  /** A `fetch` for the REST client. */
  fetch?: typeof globalThis.fetch;
}

/** How a send ended. */
export type SendResult =
  | { readonly status: "sent"; readonly message: Message }
  | { readonly status: "failed"; readonly code: ErrorCode; readonly message: string };

/** What {@link DuetClient.send} returns. */
export interface SendHandle {
  readonly clientMsgId: string;
  /** Settles when the server acknowledged it or refused it for good; never rejects. */
  readonly result: Promise<SendResult>;
}

/** Events of {@link DuetClient}. */
export interface DuetClientEvents {
  /** The connection status changed. */
  status: ConnectionStatus;
  /** `auth.ok` arrived. */
  connected: { readonly userId: string; readonly sessionId: string };
  /**
   * The socket closed (code 1006 when it just dropped). `httpStatus` and
   * `retryAfterMs` when the upgrade was refused and the platform tells (`ws`).
   */
  disconnected: { readonly code: number; readonly reason: string; readonly httpStatus?: number; readonly retryAfterMs?: number };
  /** A full resync after a connect finished: the view holds everything the server had. */
  synced: { readonly durationMs: number; readonly messages: number };
  /** Messages entered the view (live, synced or acknowledged), in seq order. */
  messages: readonly Message[];
  /**
   * Held messages changed (edited, unsent, reactions, hidden by you: a stub
   * with `hiddenAt`), each in its new state, once per change however it
   * arrived (live, in a sync, as the answer to your call).
   */
  messagesChanged: readonly Message[];
  /** An `error` frame the client did not handle itself. */
  serverError: ErrorData;
  /** Every parsed server frame (diagnostics). */
  frame: ServerFrame;
}

/** An `error` frame as an exception (for requests). */
export class DuetServerError extends Error {
  constructor(readonly data: ErrorData) {
    super(`${data.code}: ${data.message}`);
    this.name = "DuetServerError";
  }
}

interface PendingRequest {
  resolve(frame: ServerFrame): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

interface OutboxSlot {
  entry: OutboxEntry;
  waiters: Array<(result: SendResult) => void>;
}

const OPEN = 1;

/**
 * The text as the server stores it: trimmed of Unicode white space (Rust's
 * `str::trim`, which unlike JavaScript's keeps U+FEFF); an empty caption is none.
 */
function storedText(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.replace(/^[^\S\uFEFF]+|[^\S\uFEFF]+$/g, "");
  return trimmed === "" ? undefined : trimmed;
}

/** The Duet realtime client (with the REST client as {@link DuetClient.rest}). */
export class DuetClient extends Emitter<DuetClientEvents> {
  /** The observable view of the chat. */
  readonly store = new ChatStore();
  /** The typed REST client, authenticated with the same token. */
  readonly rest: DuetRestClient;
  /** Presence privacy, blocks and reports (REST). */
  readonly privacy: DuetPrivacy;
  /** Attachments: upload to object storage, download URLs (REST + presigned URLs). */
  readonly attachments: DuetAttachments;
  private readonly changes: MessageChanges;

  private readonly opts: DuetClientOptions;
  private readonly online: OnlineSource;
  private readonly storage: OutboxStorage;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly authTransport: "header" | "frame";
  private tokenValue: string | undefined;

  private socket: WebSocketLike | undefined;
  /** Bumped per socket; events of an older socket are ignored. */
  private generation = 0;
  private connected = false;
  private stopped = true;
  private attempt = 0;
  private unauthorizedInARow = 0;
  private userId: string | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatMs = 20_000;
  private lastFrameAt = 0;
  private frameCounter = 0;
  private readonly requests = new Map<string, PendingRequest>();
  private unsubscribeOnline: (() => void) | undefined;

  private readonly outbox = new Map<string, OutboxSlot>();
  /** Send frame id → clientMsgId, for this socket's acks and errors. */
  private readonly inflight = new Map<string, string>();
  private outboxLoaded: Promise<void> | undefined;

  private syncing = false;
  private needFullSync = false;
  private readonly gapQueue = new Set<string>();
  private syncStartedAt = 0;

  private readonly receiptQueue = new Map<string, { delivered?: number; read?: number }>();
  private receiptTimer: ReturnType<typeof setTimeout> | undefined;
  private lastReceiptFlush = 0;
  /** Read markers asked for by the app, not yet echoed by the server. */
  private readonly readWanted = new Map<string, number>();

  private readonly typingState = new Map<string, { lastStart: number; idle: ReturnType<typeof setTimeout> }>();
  private readonly peerTypingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly presenceSubscriptions = new Set<string>();

  constructor(options: DuetClientOptions) {
    super();
    this.opts = options;
    this.tokenValue = typeof options.token === "string" ? options.token : undefined;
    this.online = options.online ?? browserOnlineSource() ?? alwaysOnline;
    this.storage = options.outboxStorage ?? new MemoryOutboxStorage();
    this.WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const reactNative = (globalThis as { navigator?: { product?: string } }).navigator?.product === "ReactNative";
    this.authTransport = options.authTransport ?? (options.WebSocket || reactNative ? "header" : "frame");
    const refresh = options.refreshToken;
    this.rest = createRestClient({
      baseUrl: options.baseUrl,
      getToken: () => this.currentToken(),
      ...(refresh ? { refreshToken: async () => (this.tokenValue = await refresh()) } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    this.privacy = new DuetPrivacy(this.rest);
    this.attachments = new DuetAttachments(this.rest, options.fetch);
    this.changes = new MessageChanges({
      rest: this.rest,
      connected: () => this.connected,
      request: (frame) => this.request(frame),
      applyUpdated: (message) => this.onChanged(message.conversationId, [this.store.applyUpdate(message)]),
      applyHidden: (conversationId, messageId, changeSeq) =>
        this.onChanged(conversationId, [this.store.applyHidden(conversationId, messageId, changeSeq)]),
    });
  }

  // ------------------------------------------------------------------ lifecycle

  /** Loads the outbox and connects; reconnects on its own until {@link DuetClient.stop}. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribeOnline = this.online.subscribe((online) => this.onOnlineChange(online));
    await this.loadOutbox();
    this.connectNow();
  }

  /** Closes the socket and stops reconnecting. The outbox is kept. */
  stop(): void {
    this.stopped = true;
    this.unsubscribeOnline?.();
    this.unsubscribeOnline = undefined;
    clearTimeout(this.reconnectTimer);
    const socket = this.socket;
    this.abandonSocket();
    try {
      socket?.close(1000, "client stopped");
    } catch {
      // already closed
    }
    this.afterDisconnect();
    for (const t of this.peerTypingTimers.values()) clearTimeout(t);
    for (const t of this.typingState.values()) clearTimeout(t.idle);
    clearTimeout(this.receiptTimer);
    this.receiptTimer = undefined;
    this.setStatus("closed");
  }

  /** Drops the current socket (if any) and connects again at once. */
  reconnect(): void {
    if (this.stopped) return;
    this.dropSocket(4000, "reconnect requested", 0);
  }

  /** The signed-in user's id, once known (`auth.ok`). */
  get currentUserId(): string | undefined {
    return this.userId;
  }

  /** Whether the socket is authenticated now. */
  get isConnected(): boolean {
    return this.connected;
  }

  // ---------------------------------------------------------------- public API

  /**
   * Starts following a conversation (the app learned it from REST): it is
   * synced after every connect from the last seq held. `baselineSeq` starts
   * the view after that seq instead of at the first message.
   */
  trackConversation(conversationId: string, options: { peerId?: string; baselineSeq?: number } = {}): void {
    const m = this.store.ensure(conversationId, options.baselineSeq ?? 0);
    if (options.peerId && !m.peerId) {
      m.peerId = options.peerId;
      this.store.touch(m);
    }
    if (this.connected) {
      this.gapQueue.add(conversationId);
      void this.syncLoop();
    }
  }

  /** Loads the conversation list over REST (first page) and tracks each conversation. */
  async loadConversations(limit = 50): Promise<void> {
    const { data, error } = await this.rest.GET("/conversations", { params: { query: { limit } } });
    if (error || !data) throw new Error(`GET /conversations failed: ${JSON.stringify(error)}`);
    for (const c of data.items) {
      this.trackConversation(c.id, { peerId: c.peer.id });
      const m = this.store.ensure(c.id);
      m.myDeliveredSeq = Math.max(m.myDeliveredSeq, c.lastDeliveredSeq ?? 0);
      m.myReadSeq = Math.max(m.myReadSeq, c.lastReadSeq ?? 0);
      m.peerDeliveredSeq = Math.max(m.peerDeliveredSeq, c.peerLastDeliveredSeq ?? 0);
      m.peerReadSeq = Math.max(m.peerReadSeq, c.peerLastReadSeq ?? 0);
      this.store.touch(m);
    }
  }

  /**
   * Sends a message. It shows at once in the conversation's `outbox` as
   * `pending`, is sent now or after the next connect, and resent with the
   * same `clientMsgId` until acknowledged; then it moves to `messages`.
   */
  send(
    conversationId: string,
    content: string | { type?: MessageType; text?: string; payload?: { [k: string]: unknown }; replyTo?: string },
  ): SendHandle {
    const c = typeof content === "string" ? { text: content } : content;
    const entry: OutboxEntry = {
      clientMsgId: randomId(),
      conversationId,
      type: c.type ?? "text",
      ...(c.text !== undefined ? { text: c.text } : {}),
      ...(c.payload !== undefined ? { payload: c.payload } : {}),
      ...(c.replyTo !== undefined ? { replyTo: c.replyTo } : {}),
      composedAt: new Date().toISOString(),
      status: "pending",
    };
    const slot: OutboxSlot = { entry, waiters: [] };
    const result = new Promise<SendResult>((resolve) => slot.waiters.push(resolve));
    this.outbox.set(entry.clientMsgId, slot);
    const m = this.store.ensure(conversationId);
    m.outbox.set(entry.clientMsgId, entry);
    this.store.touch(m, true);
    this.stopTyping(conversationId);
    void Promise.resolve()
      .then(() => this.storage.put(entry))
      .catch(() => undefined)
      .then(() => this.transmit(entry.clientMsgId));
    return { clientMsgId: entry.clientMsgId, result };
  }

  /**
   * Uploads a file (see {@link DuetAttachments.upload}) and sends it as a
   * message of its kind with `payload: {attachmentId, ...metadata}` and the
   * caption as its text, through the outbox like {@link DuetClient.send}.
   * Resolves once the upload is complete (it rejects if the upload fails:
   * nothing is sent then).
   */
  async sendAttachment(
    conversationId: string,
    upload: NewAttachment & { caption?: string; replyTo?: string; metadata?: { [k: string]: unknown } },
  ): Promise<SendHandle> {
    const attachment = await this.attachments.upload(conversationId, upload);
    return this.send(conversationId, {
      type: upload.kind,
      ...(upload.caption !== undefined ? { text: upload.caption } : {}),
      payload: { ...upload.metadata, attachmentId: attachment.attachmentId },
      ...(upload.replyTo !== undefined ? { replyTo: upload.replyTo } : {}),
    });
  }

  /**
   * Edits the text of your own message (within the server's edit window).
   * Over the socket, or REST when not connected; retried with the same
   * `clientEditId`. Resolves with the message as it is now; rejects with a
   * {@link DuetServerError} (`not_message_sender`, `edit_window_closed`, `message_deleted`, …).
   * Not queued offline (see the README).
   */
  edit(conversationId: string, messageId: string, text: string): Promise<Message> {
    return this.changes.edit(conversationId, messageId, text);
  }

  /** Unsends your own message for both of you; resolves with the tombstone. */
  unsend(conversationId: string, messageId: string): Promise<Message> {
    return this.changes.unsend(conversationId, messageId);
  }

  /** Deletes a message for you only (it leaves your view on every device). */
  hide(conversationId: string, messageId: string): Promise<void> {
    return this.changes.hide(conversationId, messageId);
  }

  /** Sets or changes your reaction to a message (one per user); `null` removes it. */
  react(conversationId: string, messageId: string, emoji: string | null): Promise<Message> {
    return this.changes.react(conversationId, messageId, emoji);
  }

  /** Puts a failed message back in the queue (same `clientMsgId`). */
  retry(clientMsgId: string): Promise<SendResult> | undefined {
    const slot = this.outbox.get(clientMsgId);
    if (!slot) return undefined;
    const { error: _error, ...rest } = slot.entry;
    this.updateEntry(slot, { ...rest, status: "pending" });
    const result = new Promise<SendResult>((resolve) => slot.waiters.push(resolve));
    this.transmit(clientMsgId);
    return result;
  }

  /** Removes a message from the outbox (pending or failed) without sending it further. */
  discard(clientMsgId: string): void {
    const slot = this.outbox.get(clientMsgId);
    if (!slot) return;
    this.outbox.delete(clientMsgId);
    const m = this.store.model(slot.entry.conversationId);
    if (m?.outbox.delete(clientMsgId)) this.store.touch(m);
    void Promise.resolve(this.storage.delete(clientMsgId)).catch(() => undefined);
  }

  /** Marks everything held in the conversation read (a cumulative `chat.message.read`, coalesced). */
  markRead(conversationId: string): void {
    const m = this.store.model(conversationId);
    if (!m || m.lastSeq <= Math.max(m.myReadSeq, this.readWanted.get(conversationId) ?? 0)) return;
    this.readWanted.set(conversationId, m.lastSeq);
    this.applyReadWanted(m);
    this.queueReceipt(conversationId, "read", m.lastSeq);
  }

  /** Call on every keystroke: sends `typing start` at most every `typingThrottleMs`, `stop` after `typingIdleMs` idle. */
  typing(conversationId: string): void {
    const now = Date.now();
    const state = this.typingState.get(conversationId);
    if (state) clearTimeout(state.idle);
    const idle = setTimeout(() => this.stopTyping(conversationId), this.opts.typingIdleMs ?? 5000);
    if (!state || now - state.lastStart >= (this.opts.typingThrottleMs ?? 3000)) {
      this.typingState.set(conversationId, { lastStart: now, idle });
      this.sendFrame({ type: "chat.typing", data: { conversationId, state: "start" } });
    } else {
      state.idle = idle;
    }
  }

  /** Ends typing at once (also done on send). */
  stopTyping(conversationId: string): void {
    const state = this.typingState.get(conversationId);
    if (!state) return;
    clearTimeout(state.idle);
    this.typingState.delete(conversationId);
    this.sendFrame({ type: "chat.typing", data: { conversationId, state: "stop" } });
  }

  /**
   * Asks again for these users' presence now, even if already followed: who
   * may see whom changes (a first message makes a contact, a privacy setting
   * or a block changes), and the server tells a follower only its own changes.
   * Call it when a chat opens.
   */
  refreshPresence(userIds: readonly string[]): void {
    for (const id of userIds) this.presenceSubscriptions.add(id);
    if (this.connected && userIds.length) this.sendPresenceSubscribe([...userIds]);
  }

  /** Follows these users' presence (peers only); renewed after every connect. */
  subscribePresence(userIds: readonly string[]): void {
    const fresh = userIds.filter((id) => !this.presenceSubscriptions.has(id));
    for (const id of fresh) this.presenceSubscriptions.add(id);
    if (this.connected && fresh.length) this.sendPresenceSubscribe(fresh);
  }

  /** Runs a full resync now (it also runs after every connect). */
  sync(): Promise<void> {
    this.needFullSync = true;
    return this.syncLoop();
  }

  // ---------------------------------------------------------------- connection

  private async currentToken(): Promise<string | undefined> {
    const t = this.opts.token;
    // A function is the source of truth (it knows of refreshes); a fixed token is replaced by refreshes.
    if (typeof t === "function") return await t();
    return this.tokenValue ?? t;
  }

  private setStatus(status: ConnectionStatus): void {
    this.store.setConnection(status, this.userId);
    this.emit("status", status);
  }

  private onOnlineChange(online: boolean): void {
    if (this.stopped) return;
    if (!online) {
      clearTimeout(this.reconnectTimer);
      const socket = this.socket;
      this.abandonSocket();
      try {
        socket?.close(1000, "offline");
      } catch {
        // already closed
      }
      this.afterDisconnect();
      this.setStatus("offline");
    } else if (!this.socket) {
      this.attempt = 0;
      this.connectNow();
    }
  }

  private connectNow(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.stopped || this.socket) return;
    if (!this.online.isOnline()) {
      this.setStatus("offline");
      return;
    }
    const generation = ++this.generation;
    this.setStatus(this.attempt === 0 && this.userId === undefined ? "connecting" : "reconnecting");
    void this.currentToken().then(
      (token) => {
        if (generation === this.generation && !this.stopped) this.openSocket(generation, token ?? "");
      },
      (error: unknown) => {
        if (generation !== this.generation) return;
        // The session ended (a DuetSession refused to refresh): nothing to retry.
        if ((error as { sessionEnded?: boolean } | undefined)?.sessionEnded) this.setStatus("unauthorized");
        else this.scheduleReconnect();
      },
    );
  }

  private openSocket(generation: number, token: string): void {
    const WS = this.WS;
    if (!WS) throw new Error("No WebSocket constructor: pass `WebSocket` in the options (Node 20: the `ws` package).");
    const url = websocketUrl(this.opts.baseUrl);
    const header = this.authTransport === "header";
    let socket: WebSocketLike;
    try {
      socket = header ? new WS(url, [], { headers: { Authorization: `Bearer ${token}` } }) : new WS(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    let refusal: UpgradeRefusal | undefined;
    onUpgradeRefused(socket, (r) => (refusal = r));
    this.connectTimer = setTimeout(() => {
      if (generation === this.generation) this.dropSocket(4000, "connect timeout");
    }, this.opts.requestTimeoutMs ?? 15_000);
    socket.addEventListener("open", () => {
      if (generation !== this.generation) return;
      if (!header) this.sendFrame({ type: "auth", data: { token } }, true);
    });
    socket.addEventListener("message", (ev: SocketMessageEvent) => {
      if (generation === this.generation) this.onRaw(ev.data);
    });
    socket.addEventListener("close", (ev: SocketCloseEvent) => {
      if (generation !== this.generation) return;
      this.abandonSocket();
      this.afterDisconnect();
      this.emit("disconnected", {
        code: ev.code,
        reason: ev.reason,
        ...(refusal ? { httpStatus: refusal.status } : {}),
        ...(refusal?.retryAfterMs !== undefined ? { retryAfterMs: refusal.retryAfterMs } : {}),
      });
      void this.planReconnect(ev.code, refusal);
    });
    socket.addEventListener("error", () => {
      // A close event follows; nothing to do here.
    });
  }

  /** Forgets the current socket: its later events are ignored. */
  private abandonSocket(): void {
    this.generation++;
    this.socket = undefined;
    clearTimeout(this.connectTimer);
    clearTimeout(this.heartbeatTimer);
  }

  /** Gives up on a socket that looks dead or stuck and reconnects. */
  private dropSocket(code: number, reason: string, delayMs?: number): void {
    const socket = this.socket;
    this.abandonSocket();
    try {
      socket?.close(code, reason);
    } catch {
      // already closed
    }
    this.afterDisconnect();
    this.emit("disconnected", { code, reason });
    if (delayMs !== undefined) this.scheduleReconnect(delayMs);
    else void this.planReconnect(code, undefined);
  }

  /** State that ends with a connection. */
  private afterDisconnect(): void {
    const wasConnected = this.connected;
    this.connected = false;
    this.inflight.clear();
    for (const [id, req] of this.requests) {
      clearTimeout(req.timer);
      req.reject(new Error("disconnected"));
      this.requests.delete(id);
    }
    for (const [id, t] of this.peerTypingTimers) {
      clearTimeout(t);
      const m = this.store.model(id);
      if (m?.peerTyping) {
        m.peerTyping = false;
        this.store.touch(m);
      }
    }
    this.peerTypingTimers.clear();
    if (wasConnected) this.needFullSync = true;
  }

  private async planReconnect(code: number, refusal: UpgradeRefusal | undefined): Promise<void> {
    if (this.stopped) return;
    if (!this.online.isOnline()) {
      this.setStatus("offline");
      return;
    }
    const backoff = () => backoffDelay(this.attempt, this.opts.backoff);
    if (code === 4401 || refusal?.status === 401) {
      this.unauthorizedInARow++;
      if (!this.opts.refreshToken) {
        this.setStatus("unauthorized");
        return;
      }
      this.setStatus("reconnecting");
      try {
        this.tokenValue = await this.opts.refreshToken();
      } catch (error) {
        if ((error as { sessionEnded?: boolean } | undefined)?.sessionEnded) {
          this.setStatus("unauthorized");
          return;
        }
        this.scheduleReconnect(backoff());
        return;
      }
      // A fresh token that is refused again must not spin: back off after the first retry.
      this.scheduleReconnect(this.unauthorizedInARow > 1 ? backoff() : 0);
      return;
    }
    if (refusal?.status === 429) {
      this.scheduleReconnect(refusal.retryAfterMs ?? Math.max(1000, backoff()));
    } else if (code === 1012 && this.attempt === 0) {
      this.scheduleReconnect(0);
    } else if (code === 1013) {
      this.scheduleReconnect(Math.max(1000, backoff()));
    } else {
      this.scheduleReconnect(backoff());
    }
  }

  private scheduleReconnect(delayMs = backoffDelay(this.attempt, this.opts.backoff)): void {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.attempt++;
    if (!this.connected) this.setStatus("reconnecting");
    this.reconnectTimer = setTimeout(() => this.connectNow(), delayMs);
  }

  private startHeartbeat(): void {
    clearTimeout(this.heartbeatTimer);
    const interval = this.heartbeatMs;
    const jittered = interval * (0.8 + 0.4 * Math.random());
    this.heartbeatTimer = setTimeout(() => {
      if (!this.connected) return;
      // Nothing heard for two intervals (not even the last pong): the socket is dead.
      if (Date.now() - this.lastFrameAt > 2 * interval + 1000) {
        this.dropSocket(4000, "heartbeat timeout");
        return;
      }
      this.sendFrame({ type: "presence.ping", id: this.nextId(), data: {} });
      this.startHeartbeat();
    }, jittered);
  }

  private nextId(): string {
    return `f${++this.frameCounter}`;
  }

  /** Sends a frame when the socket is open; returns whether it was written. */
  private sendFrame(frame: ClientFrame, beforeAuth = false): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN || (!this.connected && !beforeAuth)) return false;
    try {
      socket.send(JSON.stringify({ ...frame, ts: Date.now() }));
      return true;
    } catch {
      return false;
    }
  }

  /** Sends a frame and waits for the server frame that carries its id as `ref`. */
  private request(frame: ClientFrame): Promise<ServerFrame> {
    const id = this.nextId();
    return new Promise<ServerFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(id);
        reject(new Error(`${frame.type} timed out`));
        this.dropSocket(4000, "request timeout");
      }, this.opts.requestTimeoutMs ?? 15_000);
      this.requests.set(id, { resolve, reject, timer });
      if (!this.sendFrame({ ...frame, id })) {
        clearTimeout(timer);
        this.requests.delete(id);
        reject(new Error("not connected"));
      }
    });
  }

  // ------------------------------------------------------------ server frames

  private onRaw(raw: unknown): void {
    this.lastFrameAt = Date.now();
    if (typeof raw !== "string") return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return;
    }
    if (!parsed || typeof parsed !== "object") return;
    const candidate = parsed as { type?: unknown; data?: unknown };
    if (typeof candidate.type !== "string" || !candidate.data || typeof candidate.data !== "object") return;
    const frame = parsed as ServerFrame;
    this.emit("frame", frame);
    this.onFrame(frame);
  }

  /** Announces the messages a change replaced (none for a repeat) and touches their conversation. */
  private onChanged(conversationId: string, changed: ReadonlyArray<Message | undefined>): void {
    const real = changed.filter((m): m is Message => m !== undefined);
    if (!real.length) return;
    const m = this.store.model(conversationId);
    if (m) this.store.touch(m);
    this.emit("messagesChanged", real);
  }

  private onFrame(frame: ServerFrame): void {
    const ref = "ref" in frame.data ? frame.data.ref : undefined;
    switch (frame.type) {
      case "auth.ok":
        this.onAuthOk(frame.data.userId, frame.data.sessionId, frame.data.heartbeatIntervalMs);
        return;
      case "chat.message.ack":
        this.onAck(frame.data);
        return;
      case "chat.message.new":
        this.onMessages([frame.data.message]);
        return;
      case "chat.message.delivered":
      case "chat.message.read":
        this.onReceipt(frame.type === "chat.message.read" ? "read" : "delivered", frame.data);
        return;
      case "chat.typing":
        this.onTyping(frame.data.conversationId, frame.data.userId, frame.data.state === "start");
        return;
      case "presence.update":
        this.store.setPresence(frame.data.userId, {
          status: frame.data.status,
          ...(frame.data.lastSeenAt ? { lastSeenAt: frame.data.lastSeenAt } : {}),
        });
        return;
      case "chat.message.updated":
      case "chat.message.hidden": {
        // Applied first, so a caller awaiting its answer finds the store current.
        const changed = applyChangeFrame(this.store, frame);
        const first = changed[0];
        if (first) this.onChanged(first.conversationId, changed);
        if (ref !== undefined) this.settleRequest(ref, frame);
        return;
      }
      case "error":
        this.onError(frame.data);
        return;
      case "presence.pong":
      case "chat.sync.result":
        if (ref !== undefined) this.settleRequest(ref, frame);
        return;
      default: {
        const unknownFrame: never = frame;
        void unknownFrame; // a newer server's frame type: ignored
      }
    }
  }

  private settleRequest(ref: string, frame: ServerFrame | Error): void {
    const req = this.requests.get(ref);
    if (!req) return;
    this.requests.delete(ref);
    clearTimeout(req.timer);
    if (frame instanceof Error) req.reject(frame);
    else req.resolve(frame);
  }

  private onAuthOk(userId: string, sessionId: string, heartbeatIntervalMs: number): void {
    clearTimeout(this.connectTimer);
    this.connected = true;
    this.attempt = 0;
    this.unauthorizedInARow = 0;
    this.userId = userId;
    this.heartbeatMs = heartbeatIntervalMs > 0 ? heartbeatIntervalMs : 20_000;
    this.startHeartbeat();
    this.setStatus("connected");
    this.emit("connected", { userId, sessionId });
    if (this.presenceSubscriptions.size) this.sendPresenceSubscribe([...this.presenceSubscriptions]);
    for (const clientMsgId of this.outbox.keys()) this.transmit(clientMsgId);
    this.needFullSync = true;
    this.syncStartedAt = Date.now();
    void this.syncLoop();
  }

  private sendPresenceSubscribe(userIds: string[]): void {
    for (let i = 0; i < userIds.length; i += 100) {
      const chunk = userIds.slice(i, i + 100);
      const [first, ...more] = chunk;
      if (first !== undefined) this.sendFrame({ type: "presence.subscribe", id: this.nextId(), data: { userIds: [first, ...more] } });
    }
  }

  private onError(data: ErrorData): void {
    const ref = data.ref;
    if (ref !== undefined && this.inflight.has(ref)) {
      const clientMsgId = this.inflight.get(ref) ?? "";
      this.inflight.delete(ref);
      const slot = this.outbox.get(clientMsgId);
      if (!slot) return;
      if (PERMANENT_SEND_ERRORS.has(data.code)) {
        this.fail(slot, data.code, data.message);
      } else {
        // rate_limited, unavailable, internal: the same message again later.
        const delay = data.retryAfterMs ?? backoffDelay(2, this.opts.backoff) + 250;
        setTimeout(() => this.transmit(clientMsgId), delay);
      }
      return;
    }
    if (ref !== undefined && this.requests.has(ref)) {
      this.settleRequest(ref, new DuetServerError(data));
      return;
    }
    this.emit("serverError", data);
  }

  // ------------------------------------------------------------------ outbox

  private async loadOutbox(): Promise<void> {
    this.outboxLoaded ??= (async () => {
      const entries = await this.storage.load();
      for (const entry of entries) {
        if (this.outbox.has(entry.clientMsgId)) continue;
        this.outbox.set(entry.clientMsgId, { entry, waiters: [] });
        const m = this.store.ensure(entry.conversationId);
        m.outbox.set(entry.clientMsgId, entry);
        this.store.touch(m);
      }
    })();
    await this.outboxLoaded;
  }

  /** Writes one outbox entry's send frame, if connected and still pending. */
  private transmit(clientMsgId: string): void {
    const slot = this.outbox.get(clientMsgId);
    if (!slot || slot.entry.status !== "pending" || !this.connected) return;
    for (const [frameId, id] of this.inflight) if (id === clientMsgId) this.inflight.delete(frameId);
    const e = slot.entry;
    const frameId = this.nextId();
    this.inflight.set(frameId, clientMsgId);
    const sent = this.sendFrame({
      type: "chat.message.send",
      id: frameId,
      data: {
        conversationId: e.conversationId,
        clientMsgId: e.clientMsgId,
        ...(e.type !== "text" ? { type: e.type } : {}),
        ...(e.text !== undefined ? { text: e.text } : {}),
        ...(e.payload !== undefined ? { payload: { ...e.payload } } : {}),
        ...(e.replyTo !== undefined ? { replyTo: e.replyTo } : {}),
      },
    });
    if (!sent) this.inflight.delete(frameId);
  }

  private onAck(ack: Ack): void {
    if (ack.ref !== undefined) this.inflight.delete(ack.ref);
    const slot = this.outbox.get(ack.clientMsgId);
    const m = this.store.ensure(ack.conversationId);
    const me = this.userId;
    if (!slot || !me) return;
    if (!m.peerId) {
      // Without the receiver's id the message cannot be built here: fetch it.
      this.gapQueue.add(ack.conversationId);
      void this.syncLoop();
      return;
    }
    const e = slot.entry;
    // The ack has no quote: built from the quoted message as held (the sync brings it otherwise).
    const quote = e.replyTo === undefined ? undefined : this.store.quoteOf(ack.conversationId, e.replyTo);
    const message: ChatMessage = {
      id: ack.messageId,
      conversationId: ack.conversationId,
      seq: ack.seq,
      senderId: me,
      receiverId: m.peerId,
      type: e.type,
      ...(storedText(e.text) !== undefined ? { text: storedText(e.text) } : {}),
      ...(e.payload !== undefined ? { payload: { ...e.payload } } : {}),
      clientMsgId: e.clientMsgId,
      createdAt: ack.createdAt,
      ...(quote ? { replyTo: quote } : {}),
    };
    this.onMessages([message]);
  }

  /** The server has the message: out of the outbox, waiters told. */
  private settleSent(message: Message): void {
    const slot = this.outbox.get(message.clientMsgId);
    if (!slot) return;
    this.outbox.delete(message.clientMsgId);
    const m = this.store.model(message.conversationId);
    if (m?.outbox.delete(message.clientMsgId)) this.store.touch(m);
    void Promise.resolve(this.storage.delete(message.clientMsgId)).catch(() => undefined);
    for (const w of slot.waiters.splice(0)) w({ status: "sent", message });
  }

  private fail(slot: OutboxSlot, code: ErrorCode, message: string): void {
    this.updateEntry(slot, { ...slot.entry, status: "failed", error: { code, message } });
    for (const w of slot.waiters.splice(0)) w({ status: "failed", code, message });
  }

  private updateEntry(slot: OutboxSlot, entry: OutboxEntry): void {
    slot.entry = entry;
    const m = this.store.ensure(entry.conversationId);
    m.outbox.set(entry.clientMsgId, entry);
    this.store.touch(m);
    void Promise.resolve(this.storage.put(entry)).catch(() => undefined);
  }

  // ------------------------------------------------------------ messages, sync

  /** Applies messages (live, synced or acknowledged); a gap queues a sync of that conversation. */
  private onMessages(messages: readonly Message[]): void {
    const me = this.userId;
    const appended: Message[] = [];
    const changed: Message[] = [];
    const touched = new Set<string>();
    for (const msg of messages) {
      if (msg.senderId === me) this.settleSent(msg);
      const m = this.store.model(msg.conversationId);
      const before = m ? m.messages.length : 0;
      const result = this.store.applyMessage(msg, me);
      if (result === "duplicate") {
        // Held already: a copy in a newer state (synced after a change) replaces it.
        const next = this.store.applyUpdate(msg);
        if (next) changed.push(next);
      } else if (result === "gap") {
        this.gapQueue.add(msg.conversationId);
      } else if (result === "appended") {
        const model = this.store.model(msg.conversationId);
        // Stubs of messages this user hid (seq bookkeeping only) are not news.
        if (model) appended.push(...model.messages.slice(before).filter((x) => !(x as ChatMessage).hiddenAt));
        touched.add(msg.conversationId);
      }
    }
    for (const id of touched) {
      const m = this.store.model(id);
      if (m) {
        this.applyReadWanted(m);
        this.queueDeliveredIfNeeded(m);
      }
    }
    if (appended.length) this.emit("messages", appended);
    if (changed.length) this.emit("messagesChanged", changed);
    if (this.gapQueue.size && this.connected && !this.syncing) void this.syncLoop();
  }

  /**
   * One sync at a time. A full sync first asks without a list (conversations
   * with news past the delivered marker, possibly unknown here), then every
   * tracked conversation from its last contiguous seq, page by page.
   */
  private async syncLoop(): Promise<void> {
    if (this.syncing || !this.connected) return;
    this.syncing = true;
    try {
      while (this.connected && (this.needFullSync || this.gapQueue.size)) {
        const full = this.needFullSync;
        this.needFullSync = false;
        let count = 0;
        if (full) count += await this.discover();
        const ids = full ? this.store.conversationIds() : [...this.gapQueue];
        for (const id of ids) this.gapQueue.delete(id);
        count += await this.catchUp(ids);
        if (full && !this.needFullSync) {
          // Read markers the server has not echoed yet (lost with a socket) go again.
          for (const [conversationId, seq] of this.readWanted) this.queueReceipt(conversationId, "read", seq);
          this.flushReceipts();
          this.emit("synced", { durationMs: Date.now() - this.syncStartedAt, messages: count });
        }
      }
    } catch (err) {
      // Disconnected (the next connect resyncs) or refused (retry shortly).
      if (this.connected) {
        this.needFullSync = true;
        const wait = err instanceof DuetServerError ? (err.data.retryAfterMs ?? 1000) : 1000;
        setTimeout(() => void this.syncLoop(), wait);
      }
    } finally {
      this.syncing = false;
    }
  }

  private async discover(): Promise<number> {
    let count = 0;
    for (let round = 0; round < 10; round++) {
      const result = await this.syncRequest({});
      for (const c of result.conversations) {
        count += c.messages.length;
        this.applySyncConversation(c);
        if (c.hasMore) this.gapQueue.add(c.conversationId);
      }
      if (!result.moreConversations) break;
      // "Sync again after acknowledging": the next page starts past the delivered markers.
      this.flushReceipts();
    }
    return count;
  }

  private async catchUp(ids: readonly string[]): Promise<number> {
    let count = 0;
    const todo = [...ids];
    while (todo.length && this.connected) {
      const batch = todo.splice(0, 50);
      const before = new Map(batch.map((id) => [id, this.store.model(id)?.lastSeq ?? 0]));
      const beforeChange = new Map(batch.map((id) => [id, this.store.model(id)?.lastChange ?? 0]));
      const result = await this.syncRequest({
        conversations: batch.map((conversationId) => ({
          conversationId,
          afterSeq: this.store.model(conversationId)?.lastSeq ?? 0,
          // Unknown before the first sync: 0 asks for every change to the messages held.
          afterChange: beforeChange.get(conversationId) ?? 0,
        })),
      });
      for (const c of result.conversations) {
        count += c.messages.length;
        this.applySyncConversation(c);
        this.onChanged(c.conversationId, applySyncChanges(this.store, c, true));
        const m = this.store.model(c.conversationId);
        const progressed = (m?.lastSeq ?? 0) > (before.get(c.conversationId) ?? 0);
        const changesProgressed = (m?.lastChange ?? 0) > (beforeChange.get(c.conversationId) ?? 0);
        if ((c.hasMore && progressed) || (c.hasMoreChanges === true && changesProgressed)) todo.push(c.conversationId);
      }
    }
    return count;
  }

  private async syncRequest(data: {
    conversations?: { conversationId: string; afterSeq: number; afterChange?: number }[];
  }): Promise<SyncResult> {
    const frame = await this.request({ type: "chat.sync", data: { ...data, limit: this.opts.syncLimit ?? 100 } });
    if (frame.type !== "chat.sync.result") throw new Error(`unexpected answer to chat.sync: ${frame.type}`);
    return frame.data;
  }

  private applySyncConversation(c: SyncConversation): void {
    const m = this.store.ensure(c.conversationId);
    m.peerDeliveredSeq = Math.max(m.peerDeliveredSeq, c.peerLastDeliveredSeq);
    m.peerReadSeq = Math.max(m.peerReadSeq, c.peerLastReadSeq);
    this.onMessages(c.messages);
    // The server counts unread messages past my read marker; with the whole tail held here,
    // that count places the marker.
    if (!c.hasMore && m.ahead.size === 0 && this.userId) {
      let unread = 0;
      let readSeq = m.lastSeq;
      for (let i = m.messages.length - 1; i >= 0 && unread < c.unreadCount; i--) {
        const msg = m.messages[i];
        if (!msg) break;
        if (msg.senderId !== this.userId) unread++;
        readSeq = msg.seq - 1;
      }
      if (unread === c.unreadCount) m.myReadSeq = Math.max(m.myReadSeq, readSeq);
    }
    this.applyReadWanted(m);
    this.store.touch(m);
    this.queueDeliveredIfNeeded(m);
  }

  // --------------------------------------------------------- receipts, typing

  private onReceipt(kind: "delivered" | "read", r: ReceiptOut): void {
    const m = this.store.ensure(r.conversationId);
    const mine = r.userId === this.userId;
    if (kind === "read") {
      if (mine) {
        m.myReadSeq = Math.max(m.myReadSeq, r.seq);
        if (r.seq >= (this.readWanted.get(m.id) ?? Infinity)) this.readWanted.delete(m.id);
      }
      else m.peerReadSeq = Math.max(m.peerReadSeq, r.seq);
    }
    // Read implies delivered.
    if (mine) m.myDeliveredSeq = Math.max(m.myDeliveredSeq, r.seq);
    else m.peerDeliveredSeq = Math.max(m.peerDeliveredSeq, r.seq);
    this.store.touch(m);
  }

  private applyReadWanted(m: ConversationModel): void {
    const wanted = this.readWanted.get(m.id);
    if (wanted !== undefined && wanted > m.myReadSeq) {
      // Shown read at once; the server's echo confirms it (see onReceipt).
      m.myReadSeq = wanted;
      this.store.touch(m);
    }
  }

  private queueDeliveredIfNeeded(m: ConversationModel): void {
    if (this.opts.autoDelivered === false || m.lastSeq <= m.myDeliveredSeq) return;
    const me = this.userId;
    const fromPeer = m.messages.some((msg) => msg.seq > m.myDeliveredSeq && msg.senderId !== me);
    if (fromPeer) this.queueReceipt(m.id, "delivered", m.lastSeq);
  }

  private queueReceipt(conversationId: string, kind: "delivered" | "read", seq: number): void {
    const q = this.receiptQueue.get(conversationId) ?? {};
    q[kind] = Math.max(q[kind] ?? 0, seq);
    this.receiptQueue.set(conversationId, q);
    if (this.receiptTimer || !this.connected) return;
    const wait = Math.max(0, this.lastReceiptFlush + (this.opts.receiptIntervalMs ?? 250) - Date.now());
    this.receiptTimer = setTimeout(() => this.flushReceipts(), wait);
  }

  /** Sends the highest queued marker per conversation (read implies delivered). */
  private flushReceipts(): void {
    clearTimeout(this.receiptTimer);
    this.receiptTimer = undefined;
    if (!this.connected) return;
    for (const [conversationId, q] of this.receiptQueue) {
      const m = this.store.model(conversationId);
      const read = q.read ?? 0;
      const delivered = q.delivered ?? 0;
      if (read > 0 && (!m || read >= delivered)) {
        this.sendFrame({ type: "chat.message.read", id: this.nextId(), data: { conversationId, seq: read } });
      } else if (delivered > (m?.myDeliveredSeq ?? 0)) {
        this.sendFrame({ type: "chat.message.delivered", id: this.nextId(), data: { conversationId, seq: delivered } });
        if (read > 0) this.sendFrame({ type: "chat.message.read", id: this.nextId(), data: { conversationId, seq: read } });
      }
    }
    this.receiptQueue.clear();
    this.lastReceiptFlush = Date.now();
  }

  private onTyping(conversationId: string, userId: string, typing: boolean): void {
    if (userId === this.userId) return;
    const m = this.store.ensure(conversationId);
    if (!m.peerId) m.peerId = userId;
    clearTimeout(this.peerTypingTimers.get(conversationId));
    this.peerTypingTimers.delete(conversationId);
    if (typing) {
      // The server ends a stale `start` after its typing TTL; this guards a lost `stop`.
      this.peerTypingTimers.set(
        conversationId,
        setTimeout(() => this.onTyping(conversationId, userId, false), 8000),
      );
    }
    if (m.peerTyping !== typing) {
      m.peerTyping = typing;
      this.store.touch(m);
    }
  }
}
