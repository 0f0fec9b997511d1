/**
 * The client's view of the chat: per conversation its messages (each once,
 * in seq order, with the outbox's pending and failed ones beside them), both
 * members' receipt markers, the unread count, the peer's typing and presence;
 * and the conversation list.
 *
 * The model is mutable inside the SDK; readers get immutable snapshots that
 * only change identity when something in them changed, so React can bind with
 * `useSyncExternalStore(store.subscribe, store.getSnapshot)`. Listeners are
 * called once per burst of changes (a microtask later), not once per frame.
 *
 * Message changes (edits, unsends, reactions, hides) replace a held message
 * by id when they are newer than the copy held, judged by `changeSeq` (the
 * conversation's change position of the message's latest change): the same
 * change arriving live and again in a sync applies once. A message hidden
 * (deleted for me) stays in the model as a stub so the seq bookkeeping has
 * no gap, and leaves the snapshot.
 * @module
 */
import type { Message, PresenceStatus, ReplyPreview } from "./generated/protocol.js";
import type { OutboxEntry } from "./outbox.js";

/** A peer's presence as last reported. */
export interface PresenceState {
  readonly status: PresenceStatus;
  readonly lastSeenAt?: string;
}

/** One conversation, as a snapshot. */
export interface ConversationState {
  readonly id: string;
  /** The other member, once known (from a message, `trackConversation` or the REST list). */
  readonly peerId?: string;
  /**
   * Every message from the start of the view, once each, in seq order, each
   * in its latest state (`editedAt`, `reactions`, the quoted `replyTo` as it
   * is now); an unsent one as its tombstone (`deletedAt`, no content); the
   * ones you hid are left out.
   */
  readonly messages: readonly Message[];
  /** Outgoing messages not yet acknowledged (`pending`) or refused (`failed`), in compose order. */
  readonly outbox: readonly OutboxEntry[];
  /** The highest seq held with nothing missing below it. */
  readonly lastSeq: number;
  readonly myDeliveredSeq: number;
  readonly myReadSeq: number;
  readonly peerDeliveredSeq: number;
  readonly peerReadSeq: number;
  /** Messages from the peer past my read marker (unsent and hidden ones not counted). */
  readonly unreadCount: number;
  readonly peerTyping: boolean;
  readonly peerPresence?: PresenceState;
}

/** Connection states of the realtime client. */
export type ConnectionStatus = "idle" | "connecting" | "connected" | "reconnecting" | "offline" | "unauthorized" | "closed";

/** The whole view. */
export interface ChatSnapshot {
  readonly connection: ConnectionStatus;
  readonly userId?: string;
  /** Conversations by id. */
  readonly conversations: Readonly<Record<string, ConversationState>>;
  /** Conversation ids, most recent activity first. */
  readonly conversationList: readonly string[];
  /** Presence of every user reported so far. */
  readonly presence: Readonly<Record<string, PresenceState>>;
}

/** @internal The mutable model of one conversation. */
export class ConversationModel {
  peerId: string | undefined;
  /** Contiguous messages from the view's start. */
  readonly messages: Message[] = [];
  /** Messages received past a gap, by seq, until the gap is filled. */
  readonly ahead = new Map<number, Message>();
  /** Position in `messages` by id (messages are only ever appended). */
  readonly index = new Map<string, number>();
  /** Changes to messages not held yet, applied when they arrive (if still newer). */
  readonly early = new Map<string, ChatMessage>();
  /** Ids hidden (deleted for me) before the message arrived. */
  readonly hiddenEarly = new Set<string>();
  /** The change cursor of the last sync (`afterChange` of the next); unknown before the first. */
  lastChange: number | undefined;
  readonly outbox = new Map<string, OutboxEntry>();
  lastSeq: number;
  myDeliveredSeq = 0;
  myReadSeq = 0;
  peerDeliveredSeq = 0;
  peerReadSeq = 0;
  peerTyping = false;
  /** Local activity time (ms), for the list's order. */
  activity = 0;
  snapshot: ConversationState | undefined;

  constructor(
    readonly id: string,
    baselineSeq = 0,
  ) {
    this.lastSeq = baselineSeq;
  }
}

/** @internal What applying a message did. */
export type ApplyResult = "appended" | "duplicate" | "gap";

/**
 * A message as the store holds it: the generated `Message` (with its
 * `replyTo`, `editedAt`/`editCount`, `deletedAt`, `reactions` and
 * `changeSeq`) plus `hiddenAt`, set on the stub of a message you hid (never
 * in a snapshot: it only keeps the seqs gap-free).
 */
export type ChatMessage = Message & { readonly hiddenAt?: string };

/** Whether `next` is a later state of the message than `held`. A hide is final. */
function isNewer(next: ChatMessage, held: ChatMessage): boolean {
  if (held.hiddenAt) return false;
  if (next.hiddenAt) return true;
  return (next.changeSeq ?? 0) > (held.changeSeq ?? 0);
}

/** What is left of a message the user hid: enough for the seq bookkeeping. */
function hiddenStub(msg: Message, changeSeq: number | undefined): ChatMessage {
  const held = msg as ChatMessage;
  return {
    id: msg.id,
    conversationId: msg.conversationId,
    seq: msg.seq,
    senderId: msg.senderId,
    receiverId: msg.receiverId,
    type: msg.type,
    clientMsgId: msg.clientMsgId,
    createdAt: msg.createdAt,
    hiddenAt: new Date().toISOString(),
    ...(changeSeq !== undefined || held.changeSeq !== undefined ? { changeSeq: changeSeq ?? held.changeSeq } : {}),
  } as ChatMessage;
}

/** The observable store; the realtime client feeds it. */
export class ChatStore {
  private readonly models = new Map<string, ConversationModel>();
  private readonly presenceById = new Map<string, PresenceState>();
  private connection: ConnectionStatus = "idle";
  private userId: string | undefined;
  private snapshot: ChatSnapshot | undefined;
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;
  private activityClock = 0;

  /** Subscribes to changes; returns the unsubscribe function (bound: pass it around freely). */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** The current snapshot; the same object until something changes (bound). */
  readonly getSnapshot = (): ChatSnapshot => {
    if (!this.snapshot) this.snapshot = this.build();
    return this.snapshot;
  };

  /** One conversation's snapshot, or undefined when unknown. */
  getConversation(id: string): ConversationState | undefined {
    return this.getSnapshot().conversations[id];
  }

  // ---- internal mutation API (used by the realtime client) ----

  /** @internal */
  model(id: string): ConversationModel | undefined {
    return this.models.get(id);
  }

  /** @internal */
  ensure(id: string, baselineSeq = 0): ConversationModel {
    let m = this.models.get(id);
    if (!m) {
      m = new ConversationModel(id, baselineSeq);
      m.activity = ++this.activityClock;
      this.models.set(id, m);
      this.touch(m);
    }
    return m;
  }

  /** @internal */
  conversationIds(): string[] {
    return [...this.models.keys()];
  }

  /** @internal Marks a conversation changed. */
  touch(m: ConversationModel, activity = false): void {
    if (activity) m.activity = ++this.activityClock;
    m.snapshot = undefined;
    this.changed();
  }

  /** @internal */
  setConnection(status: ConnectionStatus, userId?: string): void {
    if (status === this.connection && (userId === undefined || userId === this.userId)) return;
    this.connection = status;
    if (userId !== undefined) this.userId = userId;
    this.changed();
  }

  /** @internal */
  setPresence(userId: string, state: PresenceState): void {
    this.presenceById.set(userId, state);
    for (const m of this.models.values()) if (m.peerId === userId) m.snapshot = undefined;
    this.changed();
  }

  /**
   * @internal Adds a message: appended when it is the next seq, dropped when
   * already held, kept aside when a gap precedes it (the caller syncs).
   */
  applyMessage(msg: Message, me: string | undefined): ApplyResult {
    const m = this.ensure(msg.conversationId);
    if (me && !m.peerId) m.peerId = msg.senderId === me ? msg.receiverId : msg.senderId;
    if (msg.seq <= m.lastSeq || m.ahead.has(msg.seq)) return "duplicate";
    msg = this.withEarlyChanges(m, msg);
    if (me && msg.senderId === me && m.outbox.delete(msg.clientMsgId)) this.touch(m);
    if (msg.seq !== m.lastSeq + 1) {
      m.ahead.set(msg.seq, msg);
      return "gap";
    }
    this.append(m, msg, me);
    for (let next = m.ahead.get(m.lastSeq + 1); next; next = m.ahead.get(m.lastSeq + 1)) {
      m.ahead.delete(next.seq);
      this.append(m, next, me);
    }
    this.touch(m, true);
    return "appended";
  }

  /**
   * @internal Applies a message's new state (`chat.message.updated`, a sync's
   * `changes`, a REST answer): returns the new state when it replaced a held
   * message, undefined when it was not newer, or was kept aside for a
   * message not held yet (ignored below the view's start: never shown).
   */
  applyUpdate(msg: Message): Message | undefined {
    const m = this.ensure(msg.conversationId);
    const next = msg as ChatMessage;
    const i = m.index.get(msg.id);
    const held = i === undefined ? undefined : (m.messages[i] as ChatMessage | undefined);
    if (i !== undefined && held) {
      if (!isNewer(next, held)) return undefined;
      m.messages[i] = next;
      if (!next.hiddenAt) this.refreshQuotes(m, next);
      this.touch(m);
      return next;
    }
    const ahead = m.ahead.get(msg.seq) as ChatMessage | undefined;
    if (ahead?.id === msg.id) {
      if (isNewer(next, ahead)) m.ahead.set(msg.seq, next);
      return undefined;
    }
    if (msg.seq <= m.lastSeq) return undefined;
    const kept = m.early.get(msg.id);
    if (!kept || isNewer(next, kept)) m.early.set(msg.id, next);
    return undefined;
  }

  /** @internal How a reply to a held message quotes it now (for the sender's own acknowledged reply). */
  quoteOf(conversationId: string, messageId: string): ReplyPreview | undefined {
    const m = this.models.get(conversationId);
    const i = m?.index.get(messageId);
    const q = i === undefined ? undefined : (m?.messages[i] as ChatMessage | undefined);
    if (!q) return undefined;
    return {
      id: q.id,
      seq: q.seq,
      senderId: q.senderId,
      type: q.type,
      ...(q.deletedAt ? { deletedAt: q.deletedAt } : q.text !== undefined ? { text: q.text } : {}),
    };
  }

  /** @internal The user hid a message (delete for me): returns its stub when a held message left the view. */
  applyHidden(conversationId: string, messageId: string, changeSeq?: number): Message | undefined {
    const m = this.ensure(conversationId);
    const i = m.index.get(messageId);
    const held = i === undefined ? undefined : m.messages[i];
    if (i !== undefined && held) {
      if ((held as ChatMessage).hiddenAt) return undefined;
      const stub = hiddenStub(held, changeSeq);
      m.messages[i] = stub;
      this.touch(m);
      return stub;
    }
    for (const [seq, msg] of m.ahead) if (msg.id === messageId) m.ahead.set(seq, hiddenStub(msg, changeSeq));
    m.hiddenEarly.add(messageId);
    return undefined;
  }

  /** A message arriving with changes seen before it: the newest state wins. */
  private withEarlyChanges(m: ConversationModel, msg: Message): Message {
    let out = msg as ChatMessage;
    const early = m.early.get(msg.id);
    if (early) {
      m.early.delete(msg.id);
      if (isNewer(early, out)) out = early;
    }
    if (m.hiddenEarly.delete(msg.id) && !out.hiddenAt) out = hiddenStub(out, undefined);
    return out;
  }

  /** Messages quoting `quoted` show its latest text, or that it was unsent. */
  private refreshQuotes(m: ConversationModel, quoted: ChatMessage): void {
    for (let j = 0; j < m.messages.length; j++) {
      const q = m.messages[j] as ChatMessage | undefined;
      const preview = q?.replyTo;
      if (!q || preview?.id !== quoted.id) continue;
      const { text: _t, deletedAt: _d, ...rest } = preview;
      const fresh = {
        ...rest,
        ...(quoted.deletedAt ? { deletedAt: quoted.deletedAt } : quoted.text !== undefined ? { text: quoted.text } : {}),
      };
      m.messages[j] = { ...q, replyTo: fresh } as ChatMessage;
    }
  }

  private append(m: ConversationModel, msg: Message, me: string | undefined): void {
    m.index.set(msg.id, m.messages.length);
    m.messages.push(msg);
    m.lastSeq = msg.seq;
    if (me && msg.senderId !== me) m.peerTyping = false;
  }

  private changed(): void {
    this.snapshot = undefined;
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const l of [...this.listeners]) l();
    });
  }

  private build(): ChatSnapshot {
    const conversations: Record<string, ConversationState> = {};
    for (const m of this.models.values()) {
      if (!m.snapshot) m.snapshot = this.buildConversation(m);
      conversations[m.id] = m.snapshot;
    }
    const conversationList = [...this.models.values()].sort((a, b) => b.activity - a.activity).map((m) => m.id);
    const presence: Record<string, PresenceState> = Object.fromEntries(this.presenceById);
    return Object.freeze({
      connection: this.connection,
      ...(this.userId !== undefined ? { userId: this.userId } : {}),
      conversations: Object.freeze(conversations),
      conversationList: Object.freeze(conversationList),
      presence: Object.freeze(presence),
    });
  }

  private buildConversation(m: ConversationModel): ConversationState {
    const me = this.userId;
    let unread = 0;
    for (let i = m.messages.length - 1; i >= 0; i--) {
      const msg = m.messages[i] as ChatMessage | undefined;
      if (!msg || msg.seq <= m.myReadSeq) break;
      if (msg.senderId !== me && !msg.hiddenAt && !msg.deletedAt) unread++;
    }
    const presence = m.peerId ? this.presenceById.get(m.peerId) : undefined;
    return Object.freeze({
      id: m.id,
      ...(m.peerId ? { peerId: m.peerId } : {}),
      messages: Object.freeze(m.messages.filter((msg) => !(msg as ChatMessage).hiddenAt)),
      outbox: Object.freeze([...m.outbox.values()]),
      lastSeq: m.lastSeq,
      myDeliveredSeq: m.myDeliveredSeq,
      myReadSeq: m.myReadSeq,
      peerDeliveredSeq: m.peerDeliveredSeq,
      peerReadSeq: m.peerReadSeq,
      unreadCount: unread,
      peerTyping: m.peerTyping,
      ...(presence ? { peerPresence: presence } : {}),
    });
  }
}
