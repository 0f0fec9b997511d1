// The client against a scripted in-memory socket: gap handling, duplicate
// dropping, receipt coalescing, typing throttle, backoff bounds. No server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "./harness.js";
import { backoffDelay } from "../src/index.js";
import { CONV, connected, msg } from "./fake-server.js";

test("a live message past a gap is held back, the gap synced, the view stays contiguous; repeats are dropped", async () => {
  const { client, sock } = await connected();
  sock.push({ type: "chat.message.new", data: { message: msg(2) } });
  sock.push({ type: "chat.message.new", data: { message: msg(2) } }); // a repeat
  sock.push({ type: "chat.message.new", data: { message: msg(5) } }); // 3 and 4 missing
  assert.deepEqual(client.store.getConversation(CONV)?.messages.map((m) => m.seq), [1, 2]);
  const gapSync = await sock.next((f) => f.type === "chat.sync" && !!f.data?.conversations);
  assert.deepEqual(gapSync.type === "chat.sync" && gapSync.data?.conversations, [{ conversationId: CONV, afterSeq: 2, afterChange: 0 }]);
  sock.push({ type: "chat.sync.result", data: { ref: gapSync.id, moreConversations: false, conversations: [{ conversationId: CONV, messages: [msg(3), msg(4), msg(5)], hasMore: false, lastChange: 0, peerLastDeliveredSeq: 0, peerLastReadSeq: 0, unreadCount: 5 }] } });
  await waitFor([client], () => client.store.getConversation(CONV)?.lastSeq === 5, "gap filled", 5000);
  assert.deepEqual(client.store.getConversation(CONV)?.messages.map((m) => m.seq), [1, 2, 3, 4, 5]);
  assert.equal(client.store.getConversation(CONV)?.unreadCount, 5);
  client.stop();
});

test("delivered receipts are coalesced into one cumulative marker", async () => {
  const { client, sock } = await connected({ receiptIntervalMs: 200 });
  const first = await sock.next((f) => f.type === "chat.message.delivered");
  assert.equal(first.type === "chat.message.delivered" && first.data.seq, 1);
  for (let s = 2; s <= 6; s++) sock.push({ type: "chat.message.new", data: { message: msg(s) } });
  const second = await sock.next((f) => f.type === "chat.message.delivered");
  assert.equal(second.type === "chat.message.delivered" && second.data.seq, 6, "only the highest");
  assert.equal(sock.sent.filter((f) => f.type === "chat.message.delivered").length, 0);
  client.markRead(CONV);
  assert.equal(client.store.getConversation(CONV)?.unreadCount, 0);
  const read = await sock.next((f) => f.type === "chat.message.read");
  assert.equal(read.type === "chat.message.read" && read.data.seq, 6);
  client.stop();
});

test("typing start is throttled and stop follows a send", async () => {
  const { client, sock } = await connected();
  client.typing(CONV);
  client.typing(CONV);
  client.typing(CONV);
  assert.equal(sock.sent.filter((f) => f.type === "chat.typing").length, 1);
  client.send(CONV, "hi");
  const stop = await sock.next((f) => f.type === "chat.typing" && f.data.state === "stop");
  assert.ok(stop);
  const send = await sock.next((f) => f.type === "chat.message.send");
  assert.equal(send.type === "chat.message.send" && send.data.text, "hi");
  // rate_limited: the same clientMsgId again after retryAfterMs.
  sock.push({ type: "error", data: { ref: send.id, code: "rate_limited", message: "slow down", retryAfterMs: 50 } });
  const again = await sock.next((f) => f.type === "chat.message.send");
  assert.equal(again.type === "chat.message.send" && again.data.clientMsgId, send.type === "chat.message.send" ? send.data.clientMsgId : "");
  client.stop();
});

test("backoff is capped, exponential and fully jittered", () => {
  assert.equal(backoffDelay(0, { minDelayMs: 100, maxDelayMs: 1000 }, () => 0.999), 99);
  assert.equal(backoffDelay(3, { minDelayMs: 100, maxDelayMs: 1000 }, () => 0.999), 799);
  assert.equal(backoffDelay(10, { minDelayMs: 100, maxDelayMs: 1000 }, () => 0.999), 999);
  assert.equal(backoffDelay(10, { minDelayMs: 100, maxDelayMs: 1000 }, () => 0), 0);
});
