// Privacy, blocks and reports through the SDK's typed methods, against a real node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Suite, codeOf, conversationOf, waitFor } from "./harness.js";
import { DuetServerError } from "../src/index.js";

const suite = new Suite({ DUET_REPORT_RATE_PER_SEC: "1", DUET_REPORT_BURST: "1" });

test("presence visibility: read, set, and followed by live presence", async () => {
  const ann = await suite.node.register("Ann");
  const bob = await suite.node.register("Bob");
  const conv = await conversationOf(suite.node, ann, bob);
  const a = suite.node.client(ann);
  const b = suite.node.client(bob);
  suite.clients.push(a, b);
  assert.deepEqual(await b.privacy.settings(), { presence: "contacts" });
  await a.start();
  await b.start();
  a.trackConversation(conv, { peerId: bob.id });
  await waitFor([a, b], () => a.isConnected && b.isConnected, "both connected");

  // Bob has not messaged Ann: she cannot see him until he shows it to everyone.
  a.subscribePresence([bob.id]);
  await waitFor([a], () => a.store.getSnapshot().presence[bob.id]?.status === "unknown", "bob hidden from ann");
  assert.deepEqual(await b.privacy.setPresenceVisibility("everyone"), { presence: "everyone" });
  await waitFor([a], () => a.store.getSnapshot().presence[bob.id]?.status === "online", "ann told at once");
  assert.deepEqual(await b.privacy.settings(), { presence: "everyone" });
});

test("block, list, unblock; a blocked user's send is refused without a reason", async () => {
  const ann = await suite.node.register("Cora");
  const bob = await suite.node.register("Dirk");
  const conv = await conversationOf(suite.node, bob, ann);
  const a = suite.node.client(ann);
  const b = suite.node.client(bob);
  suite.clients.push(a, b);

  await a.privacy.block(bob.id);
  const blocks = await a.privacy.blocks();
  assert.deepEqual(
    blocks.map((u) => [u.id, u.name]),
    [[bob.id, "Dirk"]],
  );
  const { error, response } = await b.rest.POST("/conversations/{id}/messages", {
    params: { path: { id: conv } },
    body: { clientMsgId: "blocked-1", text: "hello?" },
  });
  assert.equal(response.status, 403);
  assert.equal(error?.code, "recipient_unavailable");
  assert.equal(await codeOf(a.privacy.block(ann.id)), "cannot_block_self");
  // Over the WebSocket, the outbox marks it failed rather than resending forever.
  await b.start();
  const live = await b.send(conv, "hello, live?").result;
  assert.equal(live.status, "failed");
  if (live.status === "failed") assert.equal(live.code, "recipient_unavailable");

  await a.privacy.unblock(bob.id);
  assert.deepEqual(await a.privacy.blocks(), []);
  const sent = await b.rest.POST("/conversations/{id}/messages", {
    params: { path: { id: conv } },
    body: { clientMsgId: "after-1", text: "hello again" },
  });
  assert.equal(sent.response.status, 201);
});

test("reports of users and messages, limited per user", async () => {
  const ann = await suite.node.register("Erin");
  const bob = await suite.node.register("Finn");
  const conv = await conversationOf(suite.node, bob, ann);
  const b = suite.node.client(bob);
  const a = suite.node.client(ann);
  suite.clients.push(a, b);
  const { data: message } = await b.rest.POST("/conversations/{id}/messages", {
    params: { path: { id: conv } },
    body: { clientMsgId: "spam-1", text: "buy now" },
  });
  assert.ok(message);

  const report = await a.privacy.report({ messageId: message.id }, "spam", "unsolicited");
  assert.equal(report.reportedUserId, bob.id);
  // Over the limit (one at once, one more a second): refused with `rate_limited`.
  const started = Date.now();
  let allowed = 1;
  for (;;) {
    try {
      await a.privacy.report({ userId: bob.id }, "harassment");
      allowed++;
      assert.ok(allowed <= 2 + (Date.now() - started) / 1000, `${allowed} reports in ${Date.now() - started} ms`);
    } catch (err) {
      assert.ok(err instanceof DuetServerError, String(err));
      assert.equal(err.data.code, "rate_limited");
      break;
    }
  }
  assert.equal(await codeOf(b.privacy.report({ userId: bob.id }, "other")), "invalid_report_target");
});
