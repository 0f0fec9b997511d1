// A scripted in-memory socket the unit tests play the server of, and a
// client connected through it (its first full sync answered).
import { DuetClient, type Message, type WebSocketConstructor, type ClientFrame, type ServerFrame } from "../src/index.js";

type Listener = (ev: unknown) => void;

/** A socket the test plays the server of. */
export class FakeSocket {
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

export const ME = "00000000-0000-7000-8000-00000000000a";
export const PEER = "00000000-0000-7000-8000-00000000000b";
export const CONV = "00000000-0000-7000-8000-0000000000c1";

export function msg(seq: number, from = PEER): Message {
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

export async function connected(options: Partial<ConstructorParameters<typeof DuetClient>[0]> = {}) {
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
