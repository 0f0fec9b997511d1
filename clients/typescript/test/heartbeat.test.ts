// Heartbeats: with a short presence TTL the server closes silent sockets
// with 4408; the client's pings (every heartbeatIntervalMs from auth.ok,
// with jitter) keep its session open well past that TTL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Suite, waitFor } from "./harness.js";
import type { DuetClient, ServerFrame } from "../src/index.js";

const suite = new Suite({ DUET_PRESENCE_TTL_SECS: "2" });

test("heartbeats keep the session open past the presence TTL", async () => {
  const ann = await suite.node.register("Ann");
  const a = suite.node.client(ann);
  suite.clients.push(a);
  const closes: number[] = [];
  let pongs = 0;
  let interval = 0;
  a.on("disconnected", (d) => closes.push(d.code));
  a.on("frame", (f: ServerFrame) => {
    if (f.type === "auth.ok") interval = f.data.heartbeatIntervalMs;
    if (f.type === "presence.pong") pongs++;
  });
  await a.start();
  await waitFor([a], () => a.isConnected, "connected");
  assert.ok(interval > 0 && interval < 2000, `heartbeat interval ${interval} ms under the 2 s TTL`);
  // Enough pongs to span twice the TTL on one socket.
  const needed = Math.ceil(4000 / (interval * 0.8)) + 1;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${pongs} pongs`)), 20_000);
    const off = a.on("frame", () => {
      if (pongs >= needed) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
  assert.deepEqual(closes, [], "never closed");
  assert.ok(a.isConnected);
});
