/**
 * Message changes: edit, unsend (delete for everyone), hide (delete for me)
 * and reactions. Each goes over the WebSocket while it is connected (the
 * answer is the `chat.message.updated` / `chat.message.hidden` frame that
 * names it in `ref`) and over REST otherwise, or when the socket drops while
 * the answer is awaited — with the same `clientEditId`, so a retry of an edit
 * lands once. The answer is applied to the store before the promise
 * settles, so the app sees the change at once and a later echo (live or in
 * a sync) is recognised by its `changeSeq` and dropped.
 *
 * Changes are not queued offline: unlike a new message, a change is bound to
 * a window (edits), to state that may move under it (the peer reacts, the
 * sender unsends), and an unsend is a privacy action whose user must know
 * whether it took effect. So with neither socket nor network the call
 * rejects, and the app says so; the send outbox alone survives restarts.
 * @module
 */
import { DuetServerError } from "./client.js";
import type {
  ClientFrame,
  Message,
  ServerFrame,
  ServerMessageHiddenFrame,
  ServerMessageUpdatedFrame,
  SyncConversation,
} from "./generated/protocol.js";
import { randomId } from "./ids.js";
import { refused } from "./refused.js";
import type { DuetRestClient } from "./rest.js";
import type { ChatStore } from "./store.js";

/** How the client reaches the socket and the store (wired by {@link DuetClient}). */
export interface ChangeTransport {
  readonly rest: DuetRestClient;
  /** Whether the socket is authenticated now. */
  connected(): boolean;
  /** Sends a frame and resolves with the server frame naming it in `ref`; rejects with a {@link DuetServerError} for an `error` frame. */
  request(frame: ClientFrame): Promise<ServerFrame>;
  /** Applies a message's new state (a REST answer) to the store. */
  applyUpdated(message: Message): void;
  /** Applies a hide (a REST answer, which carries no change position) to the store. */
  applyHidden(conversationId: string, messageId: string, changeSeq?: number): void;
}

/** REST paths of message changes. */
const MESSAGE = "/conversations/{id}/messages/{messageId}" as const;
const HIDE = "/conversations/{id}/messages/{messageId}/hide" as const;
const REACTION = "/conversations/{id}/messages/{messageId}/reaction" as const;

/** The four change operations of one signed-in user; {@link DuetClient} exposes them. */
export class MessageChanges {
  constructor(private readonly t: ChangeTransport) {}

  /**
   * Replaces the text of your own message (within the server's edit window).
   * Resolves with the message as it is now (`editedAt`, `editCount`).
   */
  async edit(conversationId: string, messageId: string, text: string): Promise<Message> {
    const clientEditId = randomId();
    return this.perform(
      { type: "chat.message.edit", data: { conversationId, messageId, clientEditId, text } },
      () => this.editOverRest(conversationId, messageId, text, clientEditId),
    );
  }

  /** Unsends your own message for both of you: resolves with the tombstone (`deletedAt`, no content). */
  async unsend(conversationId: string, messageId: string): Promise<Message> {
    return this.perform(
      { type: "chat.message.delete", data: { conversationId, messageId, scope: "everyone" } },
      () => this.unsendOverRest(conversationId, messageId),
    );
  }

  /** Deletes a message for you only: it leaves your view (and your other devices' views); the peer keeps it. */
  async hide(conversationId: string, messageId: string): Promise<void> {
    const frame: ClientFrame = { type: "chat.message.delete", data: { conversationId, messageId, scope: "me" } };
    if (this.t.connected()) {
      try {
        await this.t.request(frame);
        return;
      } catch (err) {
        if (err instanceof DuetServerError) throw err;
      }
    }
    const { response, error } = await this.t.rest.POST(HIDE, MessageChanges.path(conversationId, messageId));
    if (!response.ok) refused(error, "hideMessage");
    this.t.applyHidden(conversationId, messageId);
  }

  /** Sets or changes your one reaction to a message; `null` removes it. Resolves with the message's reactions now. */
  async react(conversationId: string, messageId: string, emoji: string | null): Promise<Message> {
    const data = { conversationId, messageId, ...(emoji === null ? {} : { emoji }) };
    return this.perform({ type: "chat.reaction.set", data }, () => this.reactOverRest(conversationId, messageId, emoji));
  }

  /**
   * Over the socket when connected; over REST when not, or when the socket
   * dropped before the answer (the server's idempotency makes the retry safe).
   * A refusal (`error` frame or REST error body) rejects with its code.
   */
  private async perform(frame: ClientFrame, overRest: () => Promise<Message>): Promise<Message> {
    if (this.t.connected()) {
      try {
        const answer = await this.t.request(frame);
        if (answer.type === "chat.message.updated") return answer.data.message;
      } catch (err) {
        if (err instanceof DuetServerError) throw err;
      }
    }
    const message = await overRest();
    this.t.applyUpdated(message);
    return message;
  }

  // The REST `Message` is the WebSocket one with `payload` typed looser (any JSON): hence the casts.

  /** Path parameters of the change endpoints. */
  private static path(id: string, messageId: string) {
    return { params: { path: { id, messageId } } };
  }

  private async editOverRest(id: string, messageId: string, text: string, clientEditId: string): Promise<Message> {
    const { data, error } = await this.t.rest.PATCH(MESSAGE, { ...MessageChanges.path(id, messageId), body: { text, clientEditId } });
    return (data as Message | undefined) ?? refused(error, "editMessage");
  }

  private async unsendOverRest(id: string, messageId: string): Promise<Message> {
    const { data, error } = await this.t.rest.DELETE(MESSAGE, MessageChanges.path(id, messageId));
    return (data as Message | undefined) ?? refused(error, "unsendMessage");
  }

  private async reactOverRest(id: string, messageId: string, emoji: string | null): Promise<Message> {
    const { data, error } =
      emoji === null
        ? await this.t.rest.DELETE(REACTION, MessageChanges.path(id, messageId))
        : await this.t.rest.PUT(REACTION, { ...MessageChanges.path(id, messageId), body: { emoji } });
    return (data as Message | undefined) ?? refused(error, emoji === null ? "removeReaction" : "setReaction");
  }
}

/**
 * Applies a `chat.message.updated` or `chat.message.hidden` frame to the
 * store; returns the messages whose state changed (empty for a repeat).
 */
export function applyChangeFrame(store: ChatStore, frame: ServerMessageUpdatedFrame | ServerMessageHiddenFrame): Message[] {
  if (frame.type === "chat.message.updated") {
    const next = store.applyUpdate(frame.data.message);
    return next ? [next] : [];
  }
  const d = frame.data;
  const stub = store.applyHidden(d.conversationId, d.messageId, d.changeSeq);
  return stub ? [stub] : [];
}


/**
 * Applies a synced conversation's `changes` (the held messages that changed
 * after `afterChange`, hidden ones as stubs) and keeps its `lastChange` as
 * the next cursor. Only results of a sync that sent `afterChange` move the
 * cursor: a result without it (discovery) says nothing of the changes to
 * messages held before, and adopting its `lastChange` would skip them.
 * Returns the messages whose state changed.
 */
export function applySyncChanges(store: ChatStore, c: SyncConversation, sentAfterChange: boolean): Message[] {
  const changed: Message[] = [];
  for (const msg of c.changes ?? []) {
    const next = store.applyUpdate(msg);
    if (next) changed.push(next);
  }
  for (const id of c.hidden ?? []) {
    const stub = store.applyHidden(c.conversationId, id);
    if (stub) changed.push(stub);
  }
  const m = store.model(c.conversationId);
  if (m && sentAfterChange) m.lastChange = Math.max(m.lastChange ?? 0, c.lastChange);
  return changed;
}
