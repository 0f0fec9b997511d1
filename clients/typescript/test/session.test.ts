// Sessions: a DuetSession renews the short-lived access token with the
// rotating refresh token (socket and REST), and logout ends it for good.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { Suite, waitFor, nextEvent, type TestUser } from "./harness.js";
import { DuetSession, SessionEndedError, createRestClient, type SessionTokens } from "../src/index.js";

// Access tokens live 3 s here, so the socket meets an expiry within the test.
const suite = new Suite({ DUET_JWT_TTL_SECS: "3" });

async function signUp(onTokens?: (t: SessionTokens | undefined) => void): Promise<{ session: DuetSession; user: TestUser }> {
  const email = `ann-${randomBytes(4).toString("hex")}@example.com`;
  const password = "correct horse battery";
  const { session, user } = await DuetSession.register(
    { baseUrl: suite.node.baseUrl, refreshMarginMs: 0, ...(onTokens ? { onTokens } : {}) },
    { email, password, name: "Ann" },
  );
  return { session, user: { id: user.id, email, password, token: session.current!.token } };
}

/** The same claims as `token`, re-signed with `exp` in the past. */
function expired(token: string, secret: string): string {
  const [header, payload] = token.split(".");
  const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, number>;
  const now = Math.floor(Date.now() / 1000);
  const body = Buffer.from(JSON.stringify({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 })).toString("base64url");
  return `${header}.${body}.${createHmac("sha256", secret).update(`${header}.${body}`).digest("base64url")}`;
}

test("the socket outlives its access token: close 4401, refresh, reconnect with the new token", async () => {
  const seen: (SessionTokens | undefined)[] = [];
  const { session, user } = await signUp((t) => seen.push(t));
  const first = session.current!;
  const a = suite.node.client(user, session.clientOptions());
  suite.clients.push(a);
  await a.start();
  await waitFor([a], () => a.isConnected, "connected");
  assert.deepEqual(await nextEvent(a, "disconnected"), { code: 4401, reason: "token expired; reconnect with a new one" });
  await waitFor([a], () => a.isConnected, "connected again");
  const now = session.current!;
  assert.notEqual(now.refreshToken, first.refreshToken, "the refresh token rotated");
  assert.notEqual(now.token, first.token);
  assert.ok(seen.length >= 2, "onTokens saw the new pair");
  const me = await a.rest.GET("/me");
  assert.equal(me.data?.id, user.id);
});

test("a REST 401 token_expired refreshes and retries once", async () => {
  const { session, user } = await signUp();
  const stale: SessionTokens = { ...session.current!, token: expired(session.current!.token, suite.node.secret), expiresAt: Date.now() + 3_600_000 };
  const resumed = new DuetSession(stale, { baseUrl: suite.node.baseUrl });
  const { data, error } = await resumed.restClient.GET("/me");
  assert.equal(data?.id, user.id, JSON.stringify(error));
  assert.notEqual(resumed.current!.refreshToken, stale.refreshToken);
});

test("concurrent refreshes share one request (a refresh token works once)", async () => {
  const { session } = await signUp();
  const [x, y] = await Promise.all([session.refresh(), session.refresh()]);
  assert.equal(x, y);
  assert.ok(await session.refresh());
});

test("a spent refresh token presented again ends the session everywhere", async () => {
  const { session } = await signUp();
  const spent = session.current!.refreshToken;
  await session.refresh();
  const rest = createRestClient({ baseUrl: suite.node.baseUrl });
  const reuse = await rest.POST("/auth/refresh", { body: { refreshToken: spent } });
  assert.equal(reuse.error?.code, "refresh_token_reused");
  await assert.rejects(session.refresh(), (e: unknown) => e instanceof SessionEndedError && e.code === "session_revoked");
  assert.equal(session.current, undefined);
});

test("logout closes the socket and the client stops as unauthorized", async () => {
  const { session, user } = await signUp();
  const a = suite.node.client(user, session.clientOptions());
  suite.clients.push(a);
  await a.start();
  await waitFor([a], () => a.isConnected, "connected");
  await session.logout();
  await waitFor([a], () => a.store.getSnapshot().connection === "unauthorized", "unauthorized after logout");
  assert.equal(session.current, undefined);
});
