// Message changes in the store, against the scripted socket: newer state by
// changeSeq wins once, changes seen before their message, hides keep the seq
// bookkeeping, quoted previews follow, the sync's change cursor. No server.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Message } from "../src/index.js";
import { CONV, ME, PEER, connected, msg } from "./fake-server.js";

type Changed = Message & { changeSeq?: number; editedAt?: string; deletedAt?: string; hiddenAt?: string; replyTo?: { id: string; seq: number; senderId: string; type: string; text?: string; deletedAt?: string } };

function edited(m: Message, text: string, changeSeq: number): Changed {
  return { ...m, text, editedAt: new Date(1000).toISOString(), changeSeq } as Changed;
}

function tombstone(m: Message, changeSeq: number): Changed {
  const { text: _t, payload: _p, ...rest } = m;
  return { ...rest, deletedAt: new Date(2000).toISOString(), changeSeq } as Changed;
}

const held = (client: Awaited<ReturnType<typeof connected>>["client"]) => (client.store.getConversation(CONV)?.messages ?? []) as readonly Changed[];

test("an update replaces the held message once; a repeat or an older state is dropped", async () => {
  const { client, sock } = await connected();
  const events: Message[][] = [];
  client.on("messagesChanged", (m) => events.push([...m]));
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(1), "fixed", 2) } } as never);
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(1), "fixed", 2) } } as never);
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(1), "older", 1) } } as never);
  assert.deepEqual(held(client).map((m) => m.text), ["fixed"]);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.[0]?.text, "fixed");
  client.stop();
});

test("an update for a message not held yet waits for it; the newest state is what shows", async () => {
  const { client, sock } = await connected();
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(2), "second, edited", 3) } } as never);
  assert.deepEqual(held(client).map((m) => m.seq), [1]);
  sock.push({ type: "chat.message.new", data: { message: msg(2) } });
  assert.deepEqual(held(client).map((m) => m.text), ["t1", "second, edited"]);
  client.stop();
});

test("a hidden message leaves the view and the unread count, not the seq bookkeeping", async () => {
  const { client, sock } = await connected();
  sock.push({ type: "chat.message.new", data: { message: msg(2) } });
  assert.equal(client.store.getConversation(CONV)?.unreadCount, 2);
  sock.push({ type: "chat.message.hidden", data: { conversationId: CONV, messageId: msg(1).id, changeSeq: 1 } } as never);
  const c = client.store.getConversation(CONV);
  assert.deepEqual(c?.messages.map((m) => m.seq), [2]);
  assert.equal(c?.lastSeq, 2);
  assert.equal(c?.unreadCount, 1);
  // A later edit of the hidden message by the peer does not bring it back.
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(1), "back?", 5) } } as never);
  assert.deepEqual(client.store.getConversation(CONV)?.messages.map((m) => m.seq), [2]);
  // The next live message is contiguous: no gap, no resync.
  sock.push({ type: "chat.message.new", data: { message: msg(3) } });
  assert.deepEqual(client.store.getConversation(CONV)?.messages.map((m) => m.seq), [2, 3]);
  client.stop();
});

test("a reply's quote shows the quoted message's latest text, then its tombstone", async () => {
  const { client, sock } = await connected();
  const reply = { ...msg(2, ME), text: "answer", replyTo: { id: msg(1).id, seq: 1, senderId: PEER, type: "text", text: "t1" } };
  sock.push({ type: "chat.message.new", data: { message: reply } } as never);
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(1), "t1 v2", 1) } } as never);
  assert.equal(held(client)[1]?.replyTo?.text, "t1 v2");
  sock.push({ type: "chat.message.updated", data: { change: "deleted", message: tombstone(msg(1), 2) } } as never);
  const quote = held(client)[1]?.replyTo;
  assert.equal(quote?.text, undefined);
  assert.ok(quote?.deletedAt);
  assert.ok(held(client)[0]?.deletedAt);
  assert.equal(held(client)[0]?.text, undefined);
  client.stop();
});

test("a sync sends afterChange, applies its changes once and keeps lastChange", async () => {
  const { client, sock } = await connected();
  const events: Message[][] = [];
  client.on("messagesChanged", (m) => events.push([...m]));
  // Seen live first; then the same change again in the sync: one event.
  sock.push({ type: "chat.message.updated", data: { change: "edited", message: edited(msg(1), "once", 4) } } as never);
  const done = client.sync();
  const discover = await sock.next((f) => f.type === "chat.sync" && !f.data?.conversations);
  sock.push({ type: "chat.sync.result", data: { ref: discover.id, conversations: [], moreConversations: false } });
  const first = await sock.next((f) => f.type === "chat.sync" && !!f.data?.conversations);
  assert.deepEqual(first.type === "chat.sync" && first.data?.conversations, [{ conversationId: CONV, afterSeq: 1, afterChange: 0 }]);
  const page = (changes: Message[], lastChange: number, hasMoreChanges: boolean, ref: string | undefined) => ({
    type: "chat.sync.result",
    data: { ref, moreConversations: false, conversations: [{ conversationId: CONV, messages: [], hasMore: false, lastChange, changes, hasMoreChanges, peerLastDeliveredSeq: 0, peerLastReadSeq: 0, unreadCount: 1 }] },
  });
  sock.push(page([edited(msg(1), "once", 4)], 4, true, first.id) as never);
  const second = await sock.next((f) => f.type === "chat.sync" && !!f.data?.conversations);
  assert.deepEqual(second.type === "chat.sync" && second.data?.conversations, [{ conversationId: CONV, afterSeq: 1, afterChange: 4 }]);
  sock.push(page([tombstone(msg(1), 6)], 6, false, second.id) as never);
  await done;
  assert.equal(client.store.model(CONV)?.lastChange, 6);
  assert.deepEqual(events.map((e) => e.map((m) => (m as Changed).changeSeq)), [[4], [6]]);
  assert.ok(held(client)[0]?.deletedAt);
  client.stop();
});

test("my acknowledged reply quotes the held message, and the send frame names it", async () => {
  const { client, sock } = await connected();
  const { result } = client.send(CONV, { text: "re", replyTo: msg(1).id });
  const send = await sock.next((f) => f.type === "chat.message.send");
  assert.equal(send.type === "chat.message.send" && (send.data as { replyTo?: string }).replyTo, msg(1).id);
  const clientMsgId = send.type === "chat.message.send" ? send.data.clientMsgId : "";
  sock.push({ type: "chat.message.ack", data: { ref: send.id, clientMsgId, conversationId: CONV, messageId: msg(2).id, seq: 2, createdAt: new Date(0).toISOString() } } as never);
  assert.equal((await result).status, "sent");
  assert.deepEqual(held(client)[1]?.replyTo, { id: msg(1).id, seq: 1, senderId: PEER, type: "text", text: "t1" });
  client.stop();
});

test("hidden messages as stubs (hiddenAt) in a sync keep the seqs gap-free and stay out of the view", async () => {
  const { client, sock } = await connected();
  const stub = (m: Message) => ({ id: m.id, conversationId: m.conversationId, seq: m.seq, senderId: m.senderId, receiverId: m.receiverId, type: m.type, clientMsgId: m.clientMsgId, createdAt: m.createdAt, hiddenAt: new Date(3000).toISOString(), changeSeq: 7 });
  const events: Message[][] = [];
  client.on("messages", (m) => events.push([...m]));
  const done = client.sync();
  const discover = await sock.next((f) => f.type === "chat.sync" && !f.data?.conversations);
  sock.push({ type: "chat.sync.result", data: { ref: discover.id, conversations: [], moreConversations: false } });
  const req = await sock.next((f) => f.type === "chat.sync" && !!f.data?.conversations);
  // Seq 1 (held) hidden since, seq 2 (new) hidden on another device: both stubs.
  sock.push({ type: "chat.sync.result", data: { ref: req.id, moreConversations: false, conversations: [{ conversationId: CONV, messages: [stub(msg(2)), msg(3)], changes: [stub(msg(1))], hasMore: false, lastChange: 7, peerLastDeliveredSeq: 0, peerLastReadSeq: 0, unreadCount: 1 }] } } as never);
  await done;
  const c = client.store.getConversation(CONV);
  assert.deepEqual(c?.messages.map((m) => m.seq), [3]);
  assert.equal(c?.lastSeq, 3);
  assert.equal(c?.unreadCount, 1);
  assert.deepEqual(events.flat().map((m) => m.seq), [3], "a stub is not announced as a new message");
  client.stop();
});
