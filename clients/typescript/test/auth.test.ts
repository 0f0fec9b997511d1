// Tokens: an expired or invalid token closes with 4401; the client asks the
// app's refreshToken hook and the session resumes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Suite, conversationOf, texts, waitFor, nextEvent } from "./harness.js";
import type { DuetClient } from "../src/index.js";

const suite = new Suite();

/** The same claims as a real token, re-signed with `exp` in the past. */
function expired(token: string, secret: string): string {
  const [header, payload] = token.split(".");
  const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, number>;
  const now = Math.floor(Date.now() / 1000);
  const body = Buffer.from(JSON.stringify({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 })).toString("base64url");
  const sig = createHmac("sha256", secret).update(`${header}.${body}`).digest("base64url");
  return `${header}.${body}.${sig}`;
}

for (const authTransport of ["header", "frame"] as const) {
  test(`an expired token (${authTransport}) closes with 4401, refreshToken is called, the session resumes`, async () => {
    const ann = await suite.node.register("Ann");
    const bob = await suite.node.register("Bob");
    const conv = await conversationOf(suite.node, ann, bob);
    let refreshes = 0;
    const a = suite.node.client(ann, {
      token: expired(ann.token, suite.node.secret),
      authTransport,
      refreshToken: async () => {
        refreshes++;
        return await suite.node.login(ann);
      },
    });
    const b = suite.node.client(bob);
    suite.clients.push(a, b);
    const closed = nextEvent(a, "disconnected");
    a.trackConversation(conv, { peerId: bob.id });
    b.trackConversation(conv, { peerId: ann.id });
    const sent = a.send(conv, "composed before auth");
    await a.start();
    await b.start();
    assert.deepEqual(await closed, { code: 4401, reason: "unauthorized" });
    await waitFor([a], () => a.isConnected, "ann connected after refresh");
    assert.equal(refreshes, 1);
    assert.equal((await sent.result).status, "sent");
    await waitFor([b], () => texts(b.store.getSnapshot(), conv).length === 1, "bob has it");
  });
}

test("an invalid token without a refresh hook stops as unauthorized", async () => {
  const ann = await suite.node.register("Ann");
  const a = suite.node.client(ann, { token: "not-a-jwt" });
  suite.clients.push(a);
  await a.start();
  await waitFor([a], () => a.store.getSnapshot().connection === "unauthorized", "unauthorized status");
});
