// Message changes through the SDK against a real node: an offline peer ends
// with the final state once, replies follow their quote, reactions live,
// delete for me, refusals as typed errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Suite, assertContiguous, codeOf, connectedPair, nextEvent, waitFor } from "./harness.js";
import type { ChatMessage, DuetClient, Message } from "../src/index.js";

const suite = new Suite();

type Changed = ChatMessage;

const view = (c: DuetClient, conv: string) => (c.store.getConversation(conv)?.messages ?? []) as readonly Changed[];

async function sent(c: DuetClient, conv: string, content: Parameters<DuetClient["send"]>[1]): Promise<Message> {
  const result = await c.send(conv, content).result;
  assert.equal(result.status, "sent", JSON.stringify(result));
  return (result as { message: Message }).message;
}

test("an edit and an unsend while the peer is offline: after reconnect it holds the final state, once", async () => {
  const { conv, A, B } = await connectedPair(suite, "Ann", "Bob");
  const m1 = await sent(A, conv, "first draft");
  const m2 = await sent(A, conv, "oops, wrong chat");
  const m3 = await sent(A, conv, "third");
  await waitFor([B], () => view(B, conv).length === 3, "bob has the three");

  B.stop();
  const edited = (await A.edit(conv, m1.id, "first, final")) as Changed;
  assert.equal(edited.text, "first, final");
  assert.ok(edited.editedAt);
  const tomb = (await A.unsend(conv, m2.id)) as Changed;
  assert.ok(tomb.deletedAt);
  assert.equal(tomb.text, undefined);
  // The sender's own view follows at once.
  assert.equal(view(A, conv)[0]?.text, "first, final");
  assert.ok(view(A, conv)[1]?.deletedAt);

  const changed: Message[] = [];
  B.on("messagesChanged", (ms) => changed.push(...ms));
  const synced = nextEvent(B, "synced");
  await B.start();
  await synced;
  const got = view(B, conv);
  assertContiguous(B.store.getSnapshot(), conv);
  assert.deepEqual(
    got.map((m) => [m.seq, m.text, Boolean(m.deletedAt)]),
    [
      [1, "first, final", false],
      [2, undefined, true],
      [3, "third", false],
    ],
  );
  assert.equal(got[0]?.editCount, 1);
  assert.equal(got[2]?.id, m3.id);
  // Each change once: no event repeats a state already held.
  assert.deepEqual(changed.map((m) => m.id).sort(), [m1.id, m2.id].sort());

  // Another resync brings nothing new.
  const before = changed.length;
  await B.sync();
  assert.equal(changed.length, before);
});

test("edits and unsends reach a connected peer live", async () => {
  const { conv, A, B } = await connectedPair(suite, "Cleo", "Dan");
  const m = await sent(A, conv, "helo");
  await waitFor([B], () => view(B, conv).length === 1, "dan has it");
  await A.edit(conv, m.id, "hello");
  await waitFor([B], () => view(B, conv)[0]?.text === "hello" && Boolean(view(B, conv)[0]?.editedAt), "edit live");
  await A.unsend(conv, m.id);
  await waitFor([B], () => Boolean(view(B, conv)[0]?.deletedAt) && view(B, conv)[0]?.text === undefined, "tombstone live");
});

test("a reply shows its quote's latest text, then the tombstone", async () => {
  const { conv, A, B } = await connectedPair(suite, "Eve", "Finn");
  const q = await sent(A, conv, "lunch at noon?");
  await waitFor([B], () => view(B, conv).length === 1, "finn has it");
  const r = (await sent(B, conv, { text: "yes!", replyTo: q.id })) as Changed;
  await waitFor([A], () => view(A, conv)[1]?.replyTo?.text === "lunch at noon?", "ann sees the quote");
  assert.equal(view(A, conv)[1]?.id, r.id);
  await A.edit(conv, q.id, "lunch at one?");
  await waitFor([A, B], () => view(A, conv)[1]?.replyTo?.text === "lunch at one?" && view(B, conv)[1]?.replyTo?.text === "lunch at one?", "quotes follow the edit");
  await A.unsend(conv, q.id);
  await waitFor(
    [A, B],
    () => [A, B].every((c) => Boolean(view(c, conv)[1]?.replyTo?.deletedAt) && view(c, conv)[1]?.replyTo?.text === undefined),
    "quotes show the tombstone",
  );
});

test("reactions: set, change and remove, seen by the peer live", async () => {
  const { bob, conv, A, B } = await connectedPair(suite, "Gus", "Hana");
  const m = await sent(A, conv, "we won!");
  await waitFor([B], () => view(B, conv).length === 1, "hana has it");
  const set = (await B.react(conv, m.id, "👍")) as Changed;
  assert.deepEqual(set.reactions, [{ emoji: "👍", count: 1, userIds: [bob.id] }]);
  await waitFor([A], () => view(A, conv)[0]?.reactions?.[0]?.emoji === "👍", "ann sees 👍");
  await B.react(conv, m.id, "🎉");
  await waitFor([A], () => view(A, conv)[0]?.reactions?.map((r) => r.emoji).join() === "🎉", "ann sees it changed");
  await B.react(conv, m.id, null);
  await waitFor([A, B], () => view(A, conv)[0]?.reactions === undefined && view(B, conv)[0]?.reactions === undefined, "removed");
  assert.equal(await codeOf(B.react(conv, m.id, "not an emoji")), "invalid_emoji");
});

test("delete for me: gone from my view (and after a resync), still in the peer's", async () => {
  const { conv, A, B } = await connectedPair(suite, "Ivo", "Jade");
  const m1 = await sent(A, conv, "keep");
  const m2 = await sent(A, conv, "hide me");
  await waitFor([B], () => view(B, conv).length === 2, "jade has both");
  await B.hide(conv, m2.id);
  assert.deepEqual(view(B, conv).map((m) => m.text), ["keep"]);
  assert.equal(B.store.getConversation(conv)?.lastSeq, 2);
  await B.sync();
  assert.deepEqual(view(B, conv).map((m) => m.text), ["keep"]);
  // A new message after the hidden one is contiguous, no resync loop.
  await sent(A, conv, "after");
  await waitFor([B], () => view(B, conv).map((m) => m.text).join() === "keep,after", "jade gets the next one");
  assert.deepEqual(view(A, conv).map((m) => m.id).slice(0, 2), [m1.id, m2.id]);
});

test("refusals are typed errors; with the socket down a change goes over REST", async () => {
  const { conv, A, B } = await connectedPair(suite, "Kai", "Lea");
  const m = await sent(A, conv, "mine");
  await waitFor([B], () => view(B, conv).length === 1, "lea has it");
  assert.equal(await codeOf(B.edit(conv, m.id, "not yours")), "not_message_sender");
  assert.equal(await codeOf(B.unsend(conv, m.id)), "not_message_sender");
  assert.equal(await codeOf(A.edit(conv, "00000000-0000-7000-8000-000000000000", "x")), "message_not_found");
  A.stop();
  const edited = (await A.edit(conv, m.id, "mine, over REST")) as Changed;
  assert.equal(edited.text, "mine, over REST");
  assert.equal(view(A, conv)[0]?.text, "mine, over REST");
  await waitFor([B], () => view(B, conv)[0]?.text === "mine, over REST", "lea sees the REST edit live");
  await A.unsend(conv, m.id);
  assert.equal(await codeOf(A.edit(conv, m.id, "again")), "message_deleted");
});
