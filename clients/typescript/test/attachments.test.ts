// Attachments through the SDK against a real node and the local S3 server
// (scripts/s3.sh sets DUET_S3_*; without it this test fails, by design).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Suite, conversationOf, waitFor } from "./harness.js";
import { DuetServerError } from "../src/index.js";

const suite = new Suite();

test("a photo uploaded by ann is sent live and downloaded by bob byte for byte", async () => {
  assert.ok(process.env.DUET_S3_ENDPOINT, "DUET_S3_ENDPOINT is not set: run scripts/test, or source scripts/s3.sh and ensure_s3");
  const ann = await suite.node.register("Ann");
  const bob = await suite.node.register("Bob");
  const conv = await conversationOf(suite.node, ann, bob);
  const a = suite.node.client(ann);
  const b = suite.node.client(bob);
  suite.clients.push(a, b);
  await a.start();
  await b.start();
  a.trackConversation(conv, { peerId: bob.id });
  b.trackConversation(conv, { peerId: ann.id });
  await waitFor([a, b], () => a.isConnected && b.isConnected, "both connected");

  const photo = new Uint8Array(50_000).map((_, i) => (i * 7) % 256);
  const info = await a.attachments.upload(conv, { kind: "image", contentType: "image/jpeg", data: photo, fileName: "cat.jpg" });
  assert.deepEqual(info, { attachmentId: info.attachmentId, kind: "image", contentType: "image/jpeg", size: photo.byteLength, fileName: "cat.jpg" });
  const result = await a.send(conv, { type: "image", text: "our cat", payload: { attachmentId: info.attachmentId, width: 400, height: 300 } }).result;
  assert.equal(result.status, "sent");

  const received = () => b.store.getConversation(conv)?.messages.find((m) => m.type === "image");
  await waitFor([b], () => received() !== undefined, "bob has the photo message");
  assert.deepEqual(received()?.payload, {
    attachmentId: info.attachmentId,
    contentType: "image/jpeg",
    size: photo.byteLength,
    fileName: "cat.jpg",
    width: 400,
    height: 300,
  });
  const download = await b.attachments.download(conv, info.attachmentId);
  const response = await fetch(download.url);
  assert.equal(response.status, 200);
  assert.deepEqual(new Uint8Array(await response.arrayBuffer()), photo);

  // A stranger gets no URL.
  const eve = await suite.node.register("Eve");
  const e = suite.node.client(eve);
  suite.clients.push(e);
  await assert.rejects(e.attachments.download(conv, info.attachmentId), (err) => err instanceof DuetServerError && err.data.code === "conversation_not_found");
});
