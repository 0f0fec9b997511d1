// Test harness: a real Duet node per test file, on a fixed free port (so a
// restart reuses it), its own database and Redis prefix; helpers to register
// users and to await store conditions (events, never fixed sleeps).
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdtempSync, chmodSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import {
  DuetClient,
  DuetServerError,
  createRestClient,
  type ChatSnapshot,
  type DuetClientOptions,
  type WebSocketConstructor,
} from "../src/index.js";

// build-test/test/ → the workspace's target/debug/duet.
const SOURCE_BIN =
  process.env.DUET_BIN ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../target/debug/duet");
const PG = process.env.DUET_TEST_PG ?? "postgres://postgres@127.0.0.1:5432";

/** `ws` as the client's WebSocket constructor (Node 20 has no global one). */
export const NodeWebSocket = WebSocket as unknown as WebSocketConstructor;

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when `predicate()` holds, checked now and on every store change of the given clients; rejects after `timeoutMs`. */
export function waitFor(
  clients: readonly DuetClient[],
  predicate: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const unsubs: Array<() => void> = [];
    const done = (err?: Error) => {
      clearTimeout(timer);
      for (const u of unsubs) u();
      if (err) reject(err);
      else resolve();
    };
    const check = () => {
      try {
        if (predicate()) done();
      } catch (err) {
        done(err as Error);
      }
    };
    const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)), timeoutMs);
    for (const c of clients) unsubs.push(c.store.subscribe(check));
    check();
  });
}

/** Resolves with the next emission of `event` (bounded). */
export function nextEvent<K extends "connected" | "synced" | "disconnected" | "status">(
  client: DuetClient,
  event: K,
  timeoutMs = 20_000,
  filter: (payload: Parameters<Parameters<DuetClient["on"]>[1]>[0]) => boolean = () => true,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for event ${event}`));
    }, timeoutMs);
    const off = client.on(event, (payload) => {
      if (!filter(payload as never)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

export interface TestUser {
  id: string;
  email: string;
  password: string;
  token: string;
}

const liveNodes = new Set<TestNode>();
// A test file cancelled or killed (timeout, Ctrl-C) must not leave a node running or a database behind.
process.once("exit", () => {
  for (const n of liveNodes) n.cleanupSync();
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const n of liveNodes) n.cleanupSync();
    process.exit(130);
  });
}

/** One Duet node, restartable on the same port against the same database. */
export class TestNode {
  readonly port: number;
  readonly baseUrl: string;
  readonly db: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private readonly bin: string;
  private readonly dir: string;
  readonly secret = `sdk-test-secret-${randomBytes(16).toString("hex")}`;
  log = "";

  private constructor(
    port: number,
    private readonly extraEnv: Record<string, string>,
  ) {
    this.port = port;
    this.baseUrl = `http://127.0.0.1:${port}`;
    const id = randomBytes(6).toString("hex");
    this.db = `duet_sdk_${id}`;
    this.dir = mkdtempSync(path.join(tmpdir(), "duet-sdk-"));
    this.bin = path.join(this.dir, "duet");
    // A private copy: a rebuild of target/debug must not pull the binary from under a running test.
    copyFileSync(SOURCE_BIN, this.bin);
    chmodSync(this.bin, 0o755);
    this.redisPrefix = `duet:sdk:${id}:`;
  }
  readonly redisPrefix: string;

  static async start(extraEnv: Record<string, string> = {}): Promise<TestNode> {
    const node = new TestNode(await freePort(), extraEnv);
    liveNodes.add(node);
    await node.spawn();
    return node;
  }

  async spawn(): Promise<void> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: `${PG}/${this.db}`,
      DUET_REDIS_PREFIX: this.redisPrefix,
      DUET_HTTP_ADDR: `127.0.0.1:${this.port}`,
      // Several nodes run at once: each its own admin port (/metrics).
      DUET_ADMIN_ADDR: "127.0.0.1:0",
      DUET_JWT_SECRET: this.secret,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
      DUET_LOG_FORMAT: "json",
      // Tests register and log in far more often than one person would.
      DUET_REGISTER_PER_IP_PER_HOUR: "1000000",
      DUET_LOGIN_PER_IP_PER_MIN: "1000000",
      DUET_LOOKUP_PER_MIN: "1000000",
      DUET_SEARCH_PER_MIN: "1000000",
      ...this.extraEnv,
    };
    delete env.DATABASE_REPLICA_URL;
    const child = spawn(this.bin, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`duet exited (${child.exitCode}):\n${this.log}`);
      try {
        const res = await fetch(`${this.baseUrl}/readyz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`duet not ready within 60 s:\n${this.log}`);
  }

  /** Sends a signal and waits for the process to exit. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.kill("SIGKILL");
    this.cleanupSync();
  }

  /** Kills the node and drops its database, synchronously (also from an exit handler). */
  cleanupSync(): void {
    if (!liveNodes.delete(this)) return;
    try {
      this.child?.kill("SIGKILL");
    } catch {
      // gone
    }
    try {
      execFileSync("psql", [`${PG}/postgres`, "-q", "-c", `drop database if exists ${this.db} with (force)`], {
        stdio: "ignore",
        timeout: 30_000,
      });
    } catch {
      // best effort
    }
    try {
      // Only this node's own prefix (random per TestNode).
      execFileSync("bash", ["-c", `redis-cli --scan --pattern '${this.redisPrefix}*' | xargs -r -n 500 redis-cli del`], {
        stdio: "ignore",
        timeout: 30_000,
      });
    } catch {
      // best effort
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async register(name: string): Promise<TestUser> {
    const rest = createRestClient({ baseUrl: this.baseUrl });
    const email = `${name.toLowerCase()}-${randomBytes(4).toString("hex")}@example.com`;
    const password = "plum orbit garden 71";
    const { data, error } = await rest.POST("/auth/register", { body: { email, password, name } });
    if (!data) throw new Error(`register failed: ${JSON.stringify(error)}`);
    return { id: data.user.id, email, password, token: data.token };
  }

  async login(user: TestUser): Promise<string> {
    const rest = createRestClient({ baseUrl: this.baseUrl });
    const { data, error } = await rest.POST("/auth/login", { body: { email: user.email, password: user.password } });
    if (!data) throw new Error(`login failed: ${JSON.stringify(error)}`);
    return data.token;
  }

  client(user: TestUser, options: Partial<DuetClientOptions> = {}): DuetClient {
    const client = new DuetClient({
      baseUrl: this.baseUrl,
      token: user.token,
      WebSocket: NodeWebSocket,
      backoff: { minDelayMs: 100, maxDelayMs: 1000 },
      ...options,
    });
    // DUET_SDK_TRACE=1 prints every server frame (diagnostics).
    if (process.env.DUET_SDK_TRACE) {
      client.on("frame", (f) => console.log(`# ${user.email.split("-")[0]} <- ${JSON.stringify(f)}`));
      client.on("disconnected", (d) => console.log(`# ${user.email.split("-")[0]} closed ${JSON.stringify(d)}`));
    }
    return client;
  }
}

/** Creates the conversation of two users over REST and returns its id. */
export async function conversationOf(node: TestNode, a: TestUser, b: TestUser): Promise<string> {
  const rest = createRestClient({ baseUrl: node.baseUrl, getToken: () => a.token });
  const { data, error } = await rest.POST("/conversations", { body: { peerId: b.id } });
  if (!data) throw new Error(`create conversation failed: ${JSON.stringify(error)}`);
  return data.id;
}

/** The texts of a conversation's view, in order. */
export function texts(snapshot: ChatSnapshot, conversationId: string): string[] {
  return (snapshot.conversations[conversationId]?.messages ?? []).map((m) => m.text ?? "");
}

/** Asserts a conversation's view is seq 1..n with no duplicates. */
export function assertContiguous(snapshot: ChatSnapshot, conversationId: string): void {
  const msgs = snapshot.conversations[conversationId]?.messages ?? [];
  msgs.forEach((m, i) => {
    if (m.seq !== i + 1) throw new Error(`seq ${m.seq} at index ${i}`);
  });
  const ids = new Set(msgs.map((m) => m.id));
  if (ids.size !== msgs.length) throw new Error("duplicate message ids");
}

/**
 * The node settings of the local S3 server that `scripts/test` starts
 * (`scripts/s3.sh`'s `ensure_s3` exports `DUET_TEST_S3_*`). Throws when they
 * are not set: a test that needs object storage fails without it, never skips.
 */
export function s3Env(): Record<string, string> {
  const names = ["ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "BUCKET", "REGION"];
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[`DUET_TEST_S3_${name}`];
    if (!value) {
      throw new Error(
        `DUET_TEST_S3_${name} is not set: run scripts/test, or \`source scripts/services.sh; source scripts/s3.sh; ensure_s3\` first`,
      );
    }
    env[`DUET_S3_${name}`] = value;
  }
  return env;
}

/**
 * One node for a test file: started before its tests, stopped after them
 * together with every client they opened. `node` is set once `before` ran.
 * `env` may be a function, read then (so a missing setting fails the tests).
 */
export class Suite {
  node!: TestNode;
  readonly clients: DuetClient[] = [];

  constructor(env: Record<string, string> | (() => Record<string, string>) = {}) {
    before(async () => {
      this.node = await TestNode.start(typeof env === "function" ? env() : env);
    });
    after(async () => {
      for (const c of this.clients) c.stop();
      await this.node.stop();
    });
  }
}

/** The server's error code of a refused call (fails when the call succeeds). */
export async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof DuetServerError, String(err));
    return err.data.code;
  }
  assert.fail("the call was not refused");
}

/** Two new users, their conversation, and a started, connected client each tracking it. */
export async function connectedPair(
  suite: Suite,
  nameA: string,
  nameB: string,
): Promise<{ ann: TestUser; bob: TestUser; conv: string; A: DuetClient; B: DuetClient }> {
  const ann = await suite.node.register(nameA);
  const bob = await suite.node.register(nameB);
  const conv = await conversationOf(suite.node, ann, bob);
  const A = suite.node.client(ann);
  const B = suite.node.client(bob);
  suite.clients.push(A, B);
  A.trackConversation(conv, { peerId: bob.id });
  B.trackConversation(conv, { peerId: ann.id });
  await A.start();
  await B.start();
  await waitFor([A, B], () => A.isConnected && B.isConnected, "both connected");
  return { ann, bob, conv, A, B };
}
