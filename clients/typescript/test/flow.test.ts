// The whole flow against a real node: two users, a conversation, live
// messages, receipts, typing, presence, a permanently refused send.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Suite, conversationOf, texts, waitFor, assertContiguous } from "./harness.js";
import type { DuetClient } from "../src/index.js";

const suite = new Suite();

test("two users chat: live messages, receipts, typing, presence, failures", async () => {
  const ann = await suite.node.register("Ann");
  const bob = await suite.node.register("Bob");
  const conv = await conversationOf(suite.node, ann, bob);
  const a = suite.node.client(ann);
  const b = suite.node.client(bob);
  suite.clients.push(a, b);
  await a.start();
  await b.start();
  a.trackConversation(conv, { peerId: bob.id });
  b.trackConversation(conv, { peerId: ann.id });
  await waitFor([a, b], () => a.isConnected && b.isConnected, "both connected");

  // Presence: Bob is online for Ann (he shows it to everyone; by default only to users he has messaged).
  await b.privacy.setPresenceVisibility("everyone");
  a.subscribePresence([bob.id]);
  await waitFor([a], () => a.store.getSnapshot().presence[bob.id]?.status === "online", "bob online for ann");
  assert.equal(a.store.getConversation(conv)?.peerPresence?.status, "online");

  // Typing reaches the peer; a send ends it.
  a.typing(conv);
  await waitFor([b], () => b.store.getConversation(conv)?.peerTyping === true, "bob sees ann typing");

  // A send shows pending at once, then is acknowledged and reaches Bob live.
  const before = a.store.getSnapshot();
  const sent = a.send(conv, "hello bob");
  const pending = a.store.getConversation(conv)?.outbox ?? [];
  assert.equal(pending.length, 1);
  assert.equal(pending[0]?.status, "pending");
  assert.notEqual(a.store.getSnapshot(), before, "a change makes a new snapshot");
  const result = await sent.result;
  assert.equal(result.status, "sent");
  if (result.status === "sent") assert.equal(result.message.seq, 1);
  await waitFor([b], () => texts(b.store.getSnapshot(), conv).length === 1, "bob has the message");
  assert.deepEqual(texts(b.store.getSnapshot(), conv), ["hello bob"]);
  await waitFor([b], () => b.store.getConversation(conv)?.peerTyping === false, "typing stopped after the send");
  assert.equal(a.store.getConversation(conv)?.outbox.length, 0);

  // Delivered comes back automatically; read when Bob marks it.
  await waitFor([a], () => (a.store.getConversation(conv)?.peerDeliveredSeq ?? 0) >= 1, "ann sees delivered");
  assert.equal(b.store.getConversation(conv)?.unreadCount, 1);
  b.markRead(conv);
  assert.equal(b.store.getConversation(conv)?.unreadCount, 0);
  await waitFor([a], () => a.store.getConversation(conv)?.peerReadSeq === 1, "ann sees read");
  await waitFor([b], () => b.store.getConversation(conv)?.myReadSeq === 1, "bob's read echoed");

  // A burst both ways stays in seq order on both sides, each message once.
  const handles = [];
  for (let i = 0; i < 10; i++) {
    handles.push(a.send(conv, `a${i}`));
    handles.push(b.send(conv, `b${i}`));
  }
  const results = await Promise.all(handles.map((h) => h.result));
  assert.ok(results.every((r) => r.status === "sent"));
  await waitFor([a, b], () => a.store.getConversation(conv)?.lastSeq === 21 && b.store.getConversation(conv)?.lastSeq === 21, "21 messages on both");
  assertContiguous(a.store.getSnapshot(), conv);
  assertContiguous(b.store.getSnapshot(), conv);
  assert.deepEqual(texts(a.store.getSnapshot(), conv), texts(b.store.getSnapshot(), conv));

  // The server stores text trimmed; the sender's view (built from the ack) matches the peer's.
  assert.equal((await a.send(conv, "  padded\n ").result).status, "sent");
  await waitFor([b], () => b.store.getConversation(conv)?.lastSeq === 22, "bob has the padded one");
  assert.equal(a.store.getConversation(conv)?.messages.at(-1)?.text, "padded");
  assert.deepEqual(texts(a.store.getSnapshot(), conv), texts(b.store.getSnapshot(), conv));

  // Typing start then an explicit stop.
  b.typing(conv);
  await waitFor([a], () => a.store.getConversation(conv)?.peerTyping === true, "ann sees bob typing");
  b.stopTyping(conv);
  await waitFor([a], () => a.store.getConversation(conv)?.peerTyping === false, "ann sees bob stop");

  // A permanent error marks the message failed (and it stays in the outbox).
  const tooLong = a.send(conv, "x".repeat(5000));
  const failed = await tooLong.result;
  assert.equal(failed.status, "failed");
  if (failed.status === "failed") assert.equal(failed.code, "text_too_long");
  const entry = a.store.getConversation(conv)?.outbox.find((e) => e.clientMsgId === tooLong.clientMsgId);
  assert.equal(entry?.status, "failed");
  a.discard(tooLong.clientMsgId);
  await waitFor([a], () => a.store.getConversation(conv)?.outbox.length === 0, "discarded");

  // Bob leaves: Ann sees him offline with a last-seen time.
  b.stop();
  await waitFor([a], () => a.store.getSnapshot().presence[bob.id]?.status === "offline", "bob offline for ann");
  assert.ok(a.store.getSnapshot().presence[bob.id]?.lastSeenAt, "lastSeenAt with offline");
});

test("the REST client is typed and authenticated", async () => {
  const ann = await suite.node.register("Rita");
  const bob = await suite.node.register("Sam");
  const conv = await conversationOf(suite.node, ann, bob);
  const a = suite.node.client(ann);
  suite.clients.push(a);
  const { data, error } = await a.rest.POST("/conversations/{id}/messages", {
    params: { path: { id: conv } },
    body: { clientMsgId: "rest-1", text: "over rest" },
  });
  assert.equal(error, undefined);
  assert.equal(data?.seq, 1);
  await a.loadConversations();
  await a.start();
  await waitFor([a], () => texts(a.store.getSnapshot(), conv).join() === "over rest", "sync picks up the REST send");
});
