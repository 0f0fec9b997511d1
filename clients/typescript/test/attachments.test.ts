// Attachments through the SDK against a real node and the local S3 server
// (scripts/s3.sh): uploaded through the presigned URL, sent through the
// outbox, downloaded by the peer byte for byte; refusals as typed errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Suite, codeOf, connectedPair, conversationOf, s3Env, waitFor } from "./harness.js";

const suite = new Suite(s3Env);

test("an image sent with sendAttachment is downloaded by the peer byte for byte", async () => {
  const { conv, A, B } = await connectedPair(suite, "Mia", "Ned");

  // Not a real PNG: the server checks the declared type and size, not the pixels.
  const bytes = new Uint8Array(randomBytes(50_000));
  const handle = await A.sendAttachment(conv, { kind: "image", contentType: "image/png", data: bytes, fileName: "cat.png", caption: "my cat" });
  const result = await handle.result;
  assert.equal(result.status, "sent", JSON.stringify(result));

  await waitFor([B], () => B.store.getConversation(conv)?.messages.length === 1, "ned gets the message");
  const msg = B.store.getConversation(conv)?.messages[0];
  assert.equal(msg?.type, "image");
  assert.equal(msg?.text, "my cat");
  const attachmentId = msg?.payload?.attachmentId;
  assert.equal(typeof attachmentId, "string");
  assert.equal(msg?.payload?.contentType, "image/png");
  assert.equal(msg?.payload?.size, bytes.byteLength);

  const download = await B.attachments.downloadUrl(conv, attachmentId as string);
  assert.equal(download.size, bytes.byteLength);
  assert.equal(download.fileName, "cat.png");
  const res = await fetch(download.url);
  assert.equal(res.status, 200);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);

  // Someone outside the conversation gets nothing.
  const eve = await suite.node.register("Eve");
  const E = suite.node.client(eve);
  suite.clients.push(E);
  assert.equal(await codeOf(E.attachments.downloadUrl(conv, attachmentId as string)), "conversation_not_found");
});

test("a refused upload rejects with the server's code and sends nothing", async () => {
  const ann = await suite.node.register("Ola");
  const bob = await suite.node.register("Pia");
  const conv = await conversationOf(suite.node, ann, bob);
  const A = suite.node.client(ann);
  suite.clients.push(A);
  const refused = A.sendAttachment(conv, { kind: "image", contentType: "text/html", data: new Uint8Array(10) });
  assert.equal(await codeOf(refused), "invalid_content_type");
  assert.equal(A.store.getConversation(conv)?.outbox.length ?? 0, 0);
});
