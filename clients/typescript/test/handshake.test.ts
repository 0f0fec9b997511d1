// A refused upgrade: over the handshake limit the server answers HTTP 429
// with Retry-After; the client waits that long and then connects.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Suite, waitFor } from "./harness.js";
import type { DuetClient } from "../src/index.js";

const suite = new Suite({ DUET_HANDSHAKE_PER_MIN: "60" });

/** Opens raw handshakes until one is refused with 429. */
async function exhaustHandshakes(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${suite.node.port}/ws`);
      ws.once("unexpected-response", (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once("open", () => {
        resolve(101);
        ws.terminate();
      });
      ws.once("error", () => resolve(0));
    });
    if (status === 429) return;
  }
  throw new Error("the handshake limit never answered 429");
}

test("HTTP 429 on the upgrade: the client waits Retry-After, then connects", async () => {
  const ann = await suite.node.register("Ann");
  const a = suite.node.client(ann);
  suite.clients.push(a);
  const refusals: Array<{ httpStatus?: number; retryAfterMs?: number; at: number }> = [];
  a.on("disconnected", (d) => refusals.push({ ...d, at: Date.now() }));
  await exhaustHandshakes();
  await a.start();
  await waitFor([a], () => a.isConnected, "connected after the wait", 30_000);
  const first = refusals[0];
  assert.equal(first?.httpStatus, 429, JSON.stringify(refusals));
  assert.ok((first?.retryAfterMs ?? 0) >= 1000, `Retry-After given: ${JSON.stringify(first)}`);
  assert.ok(Date.now() - (first?.at ?? 0) >= (first?.retryAfterMs ?? 0) - 50, "waited as told");
  assert.equal(refusals.length, 1, `one refusal, then a connect: ${JSON.stringify(refusals)}`);
});
