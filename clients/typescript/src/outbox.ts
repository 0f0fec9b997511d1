/**
 * The outbox: messages composed but not yet acknowledged, kept behind a
 * storage adapter so they survive a dropped socket (and, with a persistent
 * adapter such as AsyncStorage or IndexedDB, an app restart). Like the Stream
 * and Sendbird SDKs, each entry keeps its `clientMsgId`, so a resend is
 * idempotent on the server: the same message, the same `seq`, stored once.
 * @module
 */
import type { ErrorCode, MessageType } from "./generated/protocol.js";

/** One outgoing message. */
export interface OutboxEntry {
  /** The idempotency key, fixed at compose time and reused on every resend. */
  readonly clientMsgId: string;
  readonly conversationId: string;
  readonly type: MessageType;
  readonly text?: string;
  readonly payload?: { readonly [k: string]: unknown };
  /** The id of the message it quotes. */
  readonly replyTo?: string;
  /** Local compose time (ISO 8601), for display while pending. */
  readonly composedAt: string;
  /** `pending` until acknowledged; `failed` after a permanent error. */
  readonly status: "pending" | "failed";
  /** The permanent error that failed it. */
  readonly error?: { readonly code: ErrorCode; readonly message: string };
}

/**
 * Persistence of the outbox. Every method may be async. `load` is called once
 * at start; `put` on compose and on a status change; `delete` on ack.
 */
export interface OutboxStorage {
  load(): Promise<readonly OutboxEntry[]> | readonly OutboxEntry[];
  put(entry: OutboxEntry): Promise<void> | void;
  delete(clientMsgId: string): Promise<void> | void;
}

/** The default storage: memory only (lost when the process ends). */
export class MemoryOutboxStorage implements OutboxStorage {
  private readonly entries = new Map<string, OutboxEntry>();
  load(): readonly OutboxEntry[] {
    return [...this.entries.values()];
  }
  put(entry: OutboxEntry): void {
    this.entries.set(entry.clientMsgId, entry);
  }
  delete(clientMsgId: string): void {
    this.entries.delete(clientMsgId);
  }
}

/**
 * A storage over any string key-value store with `getItem`/`setItem`
 * (React Native's AsyncStorage, `localStorage`): the whole outbox under one key.
 */
export class KeyValueOutboxStorage implements OutboxStorage {
  private cache: Map<string, OutboxEntry> | undefined;
  constructor(
    private readonly kv: {
      getItem(key: string): Promise<string | null> | string | null;
      setItem(key: string, value: string): Promise<void> | void;
    },
    private readonly key = "duet.outbox",
  ) {}
  async load(): Promise<readonly OutboxEntry[]> {
    const raw = await this.kv.getItem(this.key);
    const list = raw ? (JSON.parse(raw) as OutboxEntry[]) : [];
    this.cache = new Map(list.map((e) => [e.clientMsgId, e]));
    return list;
  }
  async put(entry: OutboxEntry): Promise<void> {
    const cache = this.cache ?? new Map<string, OutboxEntry>();
    this.cache = cache;
    cache.set(entry.clientMsgId, entry);
    await this.kv.setItem(this.key, JSON.stringify([...cache.values()]));
  }
  async delete(clientMsgId: string): Promise<void> {
    if (!this.cache?.delete(clientMsgId)) return;
    await this.kv.setItem(this.key, JSON.stringify([...this.cache.values()]));
  }
}

/** Send errors that no resend can fix: the entry is marked failed. */
export const PERMANENT_SEND_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "text_required",
  "text_empty",
  "text_too_long",
  "invalid_text",
  "invalid_client_msg_id",
  "invalid_payload",
  "payload_too_large",
  // An attachment message naming an attachment it may not send (yet): fix and send anew.
  "attachment_not_found",
  "attachment_not_uploaded",
  "attachment_kind_mismatch",
  "idempotency_conflict",
  "invalid_target",
  "cannot_message_self",
  "user_not_found",
  "conversation_not_found",
  // The quoted message is not in this conversation (or was unsent): send it anew without the quote.
  "reply_not_found",
  // A block: the user may retry by hand (`retry`) once it is lifted.
  "recipient_unavailable",
  "user_blocked",
  "invalid_data",
  "invalid_frame",
  "bad_request",
]);
