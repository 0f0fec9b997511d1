// End-to-end: the web build of the app in Debian's Chromium, two browser
// contexts (Alice and Bob) against a real Duet node behind e2e/serve.mjs.
// Every wait is on what the page shows, with a bounded timeout.
//
//   APP_URL=http://127.0.0.1:PORT SHOTS_DIR=... node e2e/chat.test.mjs
// Ends with "e2e: N passed, M failed"; exits 1 on any failure.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const APP_URL = process.env.APP_URL ?? "http://127.0.0.1:8081";
const SHOTS = process.env.SHOTS_DIR ?? path.resolve("e2e/screenshots");
const T = 20_000;
const run = randomBytes(3).toString("hex");
const alice = { name: "Alice", email: `alice-${run}@example.com`, password: "plum orbit garden 71" };
const bob = { name: "Bob", email: `bob-${run}@example.com`, password: "plum orbit garden 71" };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const viewport = { width: 420, height: 760 };
const ctxA = await browser.newContext({ viewport });
const ctxB = await browser.newContext({ viewport });
const a = await ctxA.newPage();
const b = await ctxB.newPage();
for (const [who, page] of [["A", a], ["B", b]]) {
  page.on("pageerror", (err) => console.log(`[${who} pageerror] ${err.message}`));
  page.on("console", (m) => m.type() === "error" && console.log(`[${who} console] ${m.text()}`));
}

let passed = 0;
let failed = 0;
let broken = false;
async function step(name, fn) {
  if (broken) {
    failed++;
    console.log(`SKIP ${name} (an earlier step failed)`);
    return;
  }
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    failed++;
    broken = true;
    console.log(`FAIL ${name}: ${err instanceof Error ? err.message : err}`);
    await shoot(true).catch(() => undefined);
  }
}

/** Screenshots of both screens: into SHOTS_DIR, or e2e/failures/ after a failure. */
async function shoot(failure = false) {
  const dir = failure ? path.resolve(path.dirname(new URL(import.meta.url).pathname), "failures") : SHOTS;
  mkdirSync(dir, { recursive: true });
  for (const [who, page] of [["a", a], ["b", b]]) {
    if (!page.isClosed()) await page.screenshot({ path: path.join(dir, `expo-chat-${who}.png`) });
  }
}

/** Waits until the text of `locator` is exactly `text`. */
async function waitText(locator, text, timeout = T) {
  await locator.filter({ hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }).first().waitFor({ timeout });
}

/** Waits until the page's message texts end with `tail`, each of them once in the whole list. */
async function waitMessages(page, tail, timeout = T) {
  try {
    await page.waitForFunction(
      (want) => {
        const got = [...document.querySelectorAll('[data-testid="msg-text"]')].map((e) => e.textContent);
        const end = got.slice(-want.length);
        return end.length === want.length && end.every((t, i) => t === want[i]) && want.every((w) => got.filter((g) => g === w).length === 1);
      },
      tail,
      { timeout, polling: "raf" },
    );
  } catch (err) {
    const got = await page.locator('[data-testid="msg-text"]').allTextContents();
    throw new Error(`messages should end with ${JSON.stringify(tail)} once each; page shows ${JSON.stringify(got)} (${err.message.split("\n")[0]})`);
  }
}

const mine = (page, text) => page.getByTestId("msg-mine").filter({ hasText: text });
const theirs = (page, text) => page.getByTestId("msg-theirs").filter({ hasText: text });
/** Bob's page once he signed in again (the later steps use it). */
let b2;
/** A 1×1 PNG: a real image the browser decodes. */
const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");

/** Opens a message's actions (its ⋯ button) and picks one. */
async function act(bubble, action) {
  await bubble.getByTestId("msg-menu").click();
  await bubble.page().getByTestId(action).click();
}

async function signUp(page, user) {
  await page.goto(APP_URL);
  await page.getByTestId("name").fill(user.name);
  await page.getByTestId("email").fill(user.email);
  await page.getByTestId("password").fill(user.password);
  await page.getByTestId("auth-submit").click();
  await waitText(page.getByTestId("me"), user.name);
}

try {
  await step("Alice and Bob sign up", async () => {
    await Promise.all([signUp(a, alice), signUp(b, bob)]);
  });

  await step("Alice finds Bob by email and opens a conversation", async () => {
    await a.getByTestId("peer-email").fill(bob.email);
    await a.getByTestId("start-chat").click();
    await waitText(a.getByTestId("peer-name"), "Bob");
  });

  await step("Bob sees Alice typing, then her message live with an unread badge", async () => {
    await a.getByTestId("composer").pressSequentially("Hi Bob!", { delay: 30 });
    await waitText(b.getByTestId("preview-Alice"), "typing…");
    await a.getByTestId("send").click();
    await waitText(b.getByTestId("preview-Alice"), "Hi Bob!");
    await waitText(b.getByTestId("unread-Alice"), "1");
    mkdirSync(SHOTS, { recursive: true });
    await b.screenshot({ path: path.join(SHOTS, "expo-chat-list.png") });
    await mine(a, "Hi Bob!").getByTestId("tick-delivered").waitFor({ timeout: T });
  });

  await step("Bob opens the conversation; Alice sees the read tick and Bob sees her online", async () => {
    await b.getByTestId("conv-Alice").click();
    await waitMessages(b, ["Hi Bob!"]);
    await waitText(b.getByTestId("peer-status"), "online");
    await mine(a, "Hi Bob!").getByTestId("tick-read").waitFor({ timeout: T });
    await b.getByTestId("composer").fill("Hello Alice, good to see you here.");
    await b.getByTestId("send").click();
    await waitMessages(a, ["Hi Bob!", "Hello Alice, good to see you here."]);
  });

  await step("Bob goes offline; Alice's three messages arrive once each, in order, when he is back", async () => {
    await ctxB.setOffline(true);
    await b.getByTestId("offline-banner").waitFor({ timeout: T });
    for (const text of ["one", "two", "three"]) {
      await a.getByTestId("composer").fill(text);
      await a.getByTestId("send").click();
      await mine(a, text).getByTestId("tick-sent").waitFor({ timeout: T });
    }
    await ctxB.setOffline(false);
    await b.getByTestId("offline-banner").waitFor({ state: "detached", timeout: T });
    await waitMessages(b, ["Hi Bob!", "Hello Alice, good to see you here.", "one", "two", "three"]);
    await mine(a, "three").getByTestId("tick-read").waitFor({ timeout: T });
  });

  await step("Alice composes while offline; it goes out on reconnect and Bob gets it once", async () => {
    await ctxA.setOffline(true);
    await a.getByTestId("offline-banner").waitFor({ timeout: T });
    await a.getByTestId("composer").fill("written on the train");
    await a.getByTestId("send").click();
    await mine(a, "written on the train").getByTestId("tick-pending").waitFor({ timeout: T });
    await waitText(a.getByTestId("offline-banner"), "Offline · 1 waiting to send");
    await ctxA.setOffline(false);
    await a.getByTestId("offline-banner").waitFor({ state: "detached", timeout: T });
    await waitMessages(b, ["one", "two", "three", "written on the train"]);
    await mine(a, "written on the train").getByTestId("tick-read").waitFor({ timeout: T });
    await waitMessages(a, ["Hello Alice, good to see you here.", "one", "two", "three", "written on the train"]);
  });

  await step("screenshots of both screens", async () => {
    await b.getByTestId("composer").pressSequentially("See you", { delay: 30 });
    await waitText(a.getByTestId("peer-status"), "typing…");
    await shoot();
  });

  await step("Bob leaves; Alice sees when he was last seen", async () => {
    await ctxB.close();
    await a.getByTestId("peer-status").filter({ hasText: /^last seen / }).waitFor({ timeout: T });
  });

  await step("Bob signs in on a fresh page: the newest history page, earlier ones on demand", async () => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    b2 = page;
    await page.goto(APP_URL);
    await page.getByTestId("auth-toggle").click();
    await page.getByTestId("email").fill(bob.email);
    await page.getByTestId("password").fill(bob.password);
    await page.getByTestId("auth-submit").click();
    await waitText(page.getByTestId("me"), "Bob");
    await page.getByTestId("conv-Alice").click();
    // The e2e build pages history by 5 (EXPO_PUBLIC_HISTORY_PAGE): six messages, the first one not yet loaded.
    const all = ["Hi Bob!", "Hello Alice, good to see you here.", "one", "two", "three", "written on the train"];
    await waitMessages(page, all.slice(1));
    const shown = await page.getByTestId("msg-text").allTextContents();
    if (shown.length !== 5) throw new Error(`expected the newest page of 5, page shows ${JSON.stringify(shown)}`);
    await page.getByTestId("load-earlier").click();
    await waitMessages(page, all);
    await page.getByTestId("load-earlier").waitFor({ state: "detached", timeout: T });
    await waitText(a.getByTestId("peer-status"), "online");
  });

  await step("Alice edits a message: Bob sees the new text, marked edited", async () => {
    await act(mine(a, "written on the train"), "action-edit");
    await a.getByTestId("editing-banner").waitFor({ timeout: T });
    await a.getByTestId("composer").fill("written on the plane");
    await a.getByTestId("send").click();
    await theirs(b2, "written on the plane").getByTestId("msg-edited").waitFor({ timeout: T });
    await waitMessages(b2, ["one", "two", "three", "written on the plane"]);
  });

  await step("Bob reacts: the chip appears on Alice's screen, and goes when he takes it back", async () => {
    await act(theirs(b2, "written on the plane"), "react-👍");
    await mine(a, "written on the plane").getByTestId("reaction-👍").waitFor({ timeout: T });
    await act(theirs(b2, "written on the plane"), "react-👍");
    await mine(a, "written on the plane").getByTestId("reaction-👍").waitFor({ state: "detached", timeout: T });
    await act(theirs(b2, "two"), "react-❤️");
    await mine(a, "two").getByTestId("reaction-❤️").waitFor({ timeout: T });
  });

  await step("Bob replies quoting; Alice unsends the quoted message: tombstone and quote follow on Bob's screen", async () => {
    await act(theirs(b2, "three"), "action-reply");
    await b2.getByTestId("reply-banner").waitFor({ timeout: T });
    await b2.getByTestId("composer").fill("three is my favourite");
    await b2.getByTestId("send").click();
    const reply = theirs(a, "three is my favourite");
    await waitText(reply.getByTestId("msg-quote-text"), "three");
    await act(mine(a, "three"), "action-unsend");
    await b2.getByTestId("msg-tombstone").first().waitFor({ timeout: T });
    await waitText(mine(b2, "three is my favourite").getByTestId("msg-quote-text"), "This message was deleted");
    await waitText(reply.getByTestId("msg-quote-text"), "This message was deleted");
  });

  await step("Alice sends an image: it appears on Bob's screen", async () => {
    const [chooser] = await Promise.all([a.waitForEvent("filechooser", { timeout: T }), a.getByTestId("attach").click()]);
    await chooser.setFiles({ name: "dot.png", mimeType: "image/png", buffer: PNG });
    await mine(a, "").getByTestId("msg-image").last().waitFor({ timeout: T });
    await b2.getByTestId("msg-theirs").getByTestId("msg-image").last().waitFor({ timeout: T });
    // Loaded through the presigned download URL (same origin via e2e/serve.mjs).
    await b2.waitForFunction(() => [...document.querySelectorAll("img")].some((i) => i.src.includes("X-Amz-Signature") && i.complete && i.naturalWidth === 1), null, { timeout: T });
    // Bob's screen with the changes: edited, a reaction, a quote of an unsent message, the image.
    mkdirSync(SHOTS, { recursive: true });
    await b2.screenshot({ path: path.join(SHOTS, "expo-chat-changes.png") });
  });

  await step("Bob deletes a message for himself: gone from his screen, still on Alice's", async () => {
    await act(theirs(b2, "one"), "action-hide");
    await theirs(b2, "one").waitFor({ state: "detached", timeout: T });
    await mine(a, "one").waitFor({ timeout: T });
  });
} finally {
  await browser.close();
}

// The runner (e2e/run) prints the closing line itself, after its own timing.
const summary = `e2e: ${passed} passed, ${failed} failed`;
if (process.env.SUMMARY_FILE) writeFileSync(process.env.SUMMARY_FILE, summary + "\n");
else console.log(summary);
process.exit(failed ? 1 : 0);
