// The client against a scripted in-memory socket: gap handling, duplicate
// dropping, receipt coalescing, typing throttle, backoff bounds. No server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "./harness.js";
import { DuetClient, backoffDelay, type Message, type WebSocketConstructor, type ClientFrame, type ServerFrame } from "../src/index.js";

type Listener = (ev: unknown) => void;

/** A socket the test plays the server of. */
class FakeSocket {
  static last: FakeSocket | undefined;
  readyState = 0;
  readonly sent: ClientFrame[] = [];
  private readonly listeners = new Map<string, Listener[]>();
  private readonly waiters: Array<{ match: (f: ClientFrame) => boolean; resolve: (f: ClientFrame) => void }> = [];
  constructor(readonly url: string) {
    FakeSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.fire("open", {});
    });
  }
  addEventListener(type: string, listener: Listener): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  send(data: string): void {
    const frame = JSON.parse(data) as ClientFrame;
    this.sent.push(frame);
    for (const w of [...this.waiters]) {
      if (w.match(frame)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(frame);
      }
    }
  }
  close(code = 1000, reason = ""): void {
    this.readyState = 3;
    queueMicrotask(() => this.fire("close", { code, reason }));
  }
  fire(type: string, ev: unknown): void {
    for (const l of this.listeners.get(type) ?? []) l(ev);
  }
  push(frame: Omit<ServerFrame, "ts">): void {
    this.fire("message", { data: JSON.stringify({ ts: Date.now(), ...frame }) });
  }
  /** The next client frame matching, sent already or later. */
  next(match: (f: ClientFrame) => boolean, timeoutMs = 5000): Promise<ClientFrame> {
    const seen = this.sent.find(match);
    if (seen) {
      this.sent.splice(this.sent.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no such frame")), timeoutMs);
      this.waiters.push({ match, resolve: (f) => (clearTimeout(t), this.sent.splice(this.sent.indexOf(f), 1), resolve(f)) });
    });
  }
}

const ME = "00000000-0000-7000-8000-00000000000a";
const PEER = "00000000-0000-7000-8000-00000000000b";
const CONV = "00000000-0000-7000-8000-0000000000c1";

function msg(seq: number, from = PEER): Message {
  return {
    id: `00000000-0000-7000-8000-${String(seq).padStart(12, "0")}`,
    conversationId: CONV,
    seq,
    senderId: from,
    receiverId: from === PEER ? ME : PEER,
    type: "text",
    text: `t${seq}`,
    clientMsgId: `c${seq}`,
    createdAt: new Date(0).toISOString(),
  };
}

async function connected(options: Partial<ConstructorParameters<typeof DuetClient>[0]> = {}) {
  const client = new DuetClient({
    baseUrl: "http://fake",
    token: "t",
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
    ...options,
  });
  client.trackConversation(CONV, { peerId: PEER });
  await client.start();
  await new Promise((r) => queueMicrotask(() => r(undefined)));
  const sock = FakeSocket.last!;
  const synced = new Promise((resolve) => client.on("synced", resolve));
  sock.push({ type: "auth.ok", data: { userId: ME, sessionId: "s", heartbeatIntervalMs: 20000 } });
  // Answer the connect's full sync: discovery, then the tracked conversation.
  const discover = await sock.next((f) => f.type === "chat.sync" && !f.data?.conversations);
  sock.push({ type: "chat.sync.result", data: { ref: discover.id, conversations: [], moreConversations: false } });
  const catchUp = await sock.next((f) => f.type === "chat.sync" && !!f.data?.conversations);
  sock.push({ type: "chat.sync.result", data: { ref: catchUp.id, moreConversations: false, conversations: [{ conversationId: CONV, messages: [msg(1)], hasMore: false, lastChange: 0, peerLastDeliveredSeq: 0, peerLastReadSeq: 0, unreadCount: 1 }] } });
  await synced;
  return { client, sock };
}

test("a live message past a gap is held back, the gap synced, the view stays contiguous; repeats are dropped", async () => {
  const { client, sock } = await connected();
  sock.push({ type: "chat.message.new", data: { message: msg(2) } });
  sock.push({ type: "chat.message.new", data: { message: msg(2) } }); // a repeat
  sock.push({ type: "chat.message.new", data: { message: msg(5) } }); // 3 and 4 missing
  assert.deepEqual(client.store.getConversation(CONV)?.messages.map((m) => m.seq), [1, 2]);
  const gapSync = await sock.next((f) => f.type === "chat.sync" && !!f.data?.conversations);
  assert.deepEqual(gapSync.type === "chat.sync" && gapSync.data?.conversations, [{ conversationId: CONV, afterSeq: 2 }]);
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
