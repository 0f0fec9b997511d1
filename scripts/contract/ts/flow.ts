// The REST flow of a chat client, written against the types openapi-typescript
// generated from openapi/openapi.json (../build/openapi.d.ts) and sent with
// openapi-fetch. Compiled with `tsc --strict` first: an operation, field or
// status the document lacks is a compile error, not a runtime surprise.
//
//   node build/ts/flow.js <base-url>
//
// Prints "PASS <step>" / "FAIL <step>: <why>" lines; exits 1 on any failure.
import createClient from "openapi-fetch";
import { randomUUID } from "node:crypto";
import type { components, paths } from "../build/openapi.js";

type Message = components["schemas"]["Message"];
type User = components["schemas"]["User"];

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node flow.js <base-url>");
  process.exit(2);
}

let failures = 0;
function pass(step: string): void {
  console.log(`PASS ts.${step}`);
}
function fail(step: string, why: string): void {
  failures++;
  console.log(`FAIL ts.${step}: ${why}`);
}
class Abort extends Error {}
/** A failed step that later steps depend on: record it and stop. */
function abort(step: string, why: string): never {
  fail(step, why);
  throw new Abort(why);
}
function show(x: unknown): string {
  return JSON.stringify(x)?.slice(0, 300) ?? String(x);
}

function client(token?: string) {
  return createClient<paths>({
    baseUrl,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
}

async function register(label: string): Promise<{ token: string; user: User }> {
  const tag = randomUUID();
  const { data, error, response } = await client().POST("/auth/register", {
    body: {
      email: `contract-ts-${label}-${tag}@example.com`,
      password: `pw-${tag}`,
      name: `Contract TS ${label}`,
    },
  });
  if (response.status !== 201 || !data) {
    abort(`register-${label}`, `status ${response.status}, body ${show(error ?? data)}`);
  }
  if (!data.token || !data.user?.id) abort(`register-${label}`, `no token or user id: ${show(data)}`);
  pass(`register-${label}`);
  return data;
}

async function main(): Promise<void> {
  const alice = await register("sender");
  const bob = await register("receiver");
  const asAlice = client(alice.token);
  const asBob = client(bob.token);

  // createConversation
  const created = await asAlice.POST("/conversations", { body: { peerId: bob.user.id } });
  const conversation = created.data;
  if (created.response.status !== 201 || !conversation) {
    abort("createConversation", `status ${created.response.status} (want 201), body ${show(created.error ?? created.data)}`);
  }
  if (conversation.peer.id !== bob.user.id) {
    abort("createConversation", `peer is ${conversation.peer.id}, want ${bob.user.id}`);
  }
  pass("createConversation");
  const again = await asAlice.POST("/conversations", { body: { peerId: bob.user.id } });
  if (again.response.status === 200 && again.data?.id === conversation.id) pass("createConversation-again");
  else fail("createConversation-again", `status ${again.response.status} (want 200, same id), body ${show(again.error ?? again.data)}`);

  // sendMessage, then the same clientMsgId again
  const clientMsgId = `c-${randomUUID()}`;
  const text = `hello from the contract check ${clientMsgId}`;
  const path = { id: conversation.id };
  const sent = await asAlice.POST("/conversations/{id}/messages", { params: { path }, body: { clientMsgId, text } });
  const message: Message | undefined = sent.data;
  if (sent.response.status !== 201 || !message) {
    abort("sendMessage", `status ${sent.response.status} (want 201), body ${show(sent.error ?? sent.data)}`);
  }
  if (message.conversationId !== conversation.id || message.clientMsgId !== clientMsgId || message.text !== text ||
      message.senderId !== alice.user.id || message.receiverId !== bob.user.id || message.seq < 1) {
    abort("sendMessage", `unexpected message ${show(message)}`);
  }
  pass("sendMessage");

  const resent = await asAlice.POST("/conversations/{id}/messages", { params: { path }, body: { clientMsgId, text } });
  if (resent.response.status !== 200 || !resent.data) {
    fail("sendMessage-resend", `status ${resent.response.status} (want 200), body ${show(resent.error ?? resent.data)}`);
  } else if (resent.data.id !== message.id || resent.data.seq !== message.seq) {
    fail("sendMessage-resend", `got id ${resent.data.id} seq ${resent.data.seq}, want id ${message.id} seq ${message.seq}`);
  } else {
    pass("sendMessage-resend");
  }

  // history: the message exactly once, for both members
  for (const [who, c] of [["sender", asAlice], ["receiver", asBob]] as const) {
    const page = await c.GET("/conversations/{id}/messages", { params: { path, query: { minSeq: message.seq } } });
    if (page.response.status !== 200 || !page.data) {
      fail(`listMessages-${who}`, `status ${page.response.status}, body ${show(page.error ?? page.data)}`);
      continue;
    }
    const copies = page.data.items.filter((m) => m.id === message.id);
    if (copies.length !== 1) fail(`listMessages-${who}`, `the message is there ${copies.length} times: ${show(page.data)}`);
    else if (copies[0]?.text !== text || copies[0]?.seq !== message.seq) fail(`listMessages-${who}`, `differs: ${show(copies[0])}`);
    else pass(`listMessages-${who}`);
  }

  // the receiver's conversation list: a projection that may trail, so poll (~5 s)
  const deadline = Date.now() + 5000;
  let last = "";
  for (;;) {
    const list = await asBob.GET("/conversations", { params: { query: { limit: 100 } } });
    if (list.response.status !== 200 || !list.data) {
      last = `status ${list.response.status}, body ${show(list.error ?? list.data)}`;
    } else {
      const item = list.data.items.find((s) => s.id === conversation.id);
      last = item ? `unreadCount ${item.unreadCount}, lastSeq ${item.lastSeq}` : "the conversation is not listed";
      if (item && item.unreadCount === 1 && item.lastSeq === message.seq && item.peer.id === alice.user.id) {
        pass("listConversations-unread");
        break;
      }
    }
    if (Date.now() > deadline) {
      fail("listConversations-unread", `after 5 s: ${last}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  await main();
} catch (e) {
  if (!(e instanceof Abort)) fail("flow", `crashed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
}
process.exit(failures ? 1 : 0);
