/**
 * A signed-in session: the short-lived access token and the rotating
 * refresh token that renews it (`POST /auth/refresh`).
 *
 * - {@link DuetSession.accessToken} refreshes shortly before the access
 *   token expires; {@link DuetSession.refresh} refreshes now. Refreshes are
 *   single-flight: a refresh token works once, and two concurrent refreshes
 *   with the same one would look like theft to the server and end the
 *   session (`refresh_token_reused`).
 * - {@link DuetSession.clientOptions} plugs it into a {@link DuetClient}: the
 *   socket and REST use the current token, a close 4401 or a REST 401
 *   `token_expired` refreshes and retries once.
 * - When the server ends the session (logout elsewhere, password change,
 *   reuse), refreshing fails with {@link SessionEndedError}: sign in again.
 * - `onTokens` hands every new pair to the app to persist (the refresh token
 *   is a credential: keep it in secure storage); `undefined` once ended.
 * @module
 */
import { createRestClient, type DuetRestClient } from "./rest.js";
import type { components } from "./generated/openapi.js";

type AuthResponse = components["schemas"]["AuthResponse"];
type User = components["schemas"]["User"];

/** What to persist to resume a session later. */
export interface SessionTokens {
  /** The access token (JWT). */
  token: string;
  /** When `token` expires, ms since the epoch. */
  expiresAt: number;
  /** The current refresh token (each works once). */
  refreshToken: string;
}

/** Options of {@link DuetSession}. */
export interface DuetSessionOptions {
  /** The server, `https://chat.example.com`. */
  baseUrl: string;
  /** Called with every new pair (after a refresh or a password change), and `undefined` once the session ended. */
  onTokens?: (tokens: SessionTokens | undefined) => void;
  /** Refresh this long before the access token expires, ms (default 60 000). */
  refreshMarginMs?: number;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
}

/** Refreshing is over for good: the session was revoked or its refresh token expired; sign in again. */
export class SessionEndedError extends Error {
  /** Marks errors after which the client stops instead of retrying. */
  readonly sessionEnded = true;
  constructor(
    /** The server's code: `session_revoked`, `refresh_token_reused` or `invalid_refresh_token`. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "SessionEndedError";
  }
}

/** Codes after which a refresh can never succeed. */
const ENDED_CODES = new Set(["session_revoked", "refresh_token_reused", "invalid_refresh_token", "unauthorized"]);

/** A signed-in session; see the module docs. */
export class DuetSession {
  private tokens: SessionTokens | undefined;
  private inflight: Promise<string> | undefined;
  private readonly rest: DuetRestClient;
  private readonly margin: number;

  /** Resumes a session from stored tokens (see `onTokens`). */
  constructor(
    tokens: SessionTokens,
    private readonly options: DuetSessionOptions,
  ) {
    this.tokens = tokens;
    this.margin = options.refreshMarginMs ?? 60_000;
    this.rest = createRestClient({
      baseUrl: options.baseUrl,
      getToken: () => this.accessToken(),
      refreshToken: () => this.refresh(),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  }

  /** Signs in (`POST /auth/login`); a refusal throws an `Error` with the server's `code`. */
  static async login(
    options: DuetSessionOptions,
    credentials: { email: string; password: string },
  ): Promise<{ session: DuetSession; user: User }> {
    const rest = createRestClient({ baseUrl: options.baseUrl, ...(options.fetch ? { fetch: options.fetch } : {}) });
    const { data, error } = await rest.POST("/auth/login", { body: credentials });
    if (!data) throw Object.assign(new Error(error?.message ?? "login failed"), { code: error?.code });
    return DuetSession.fromResponse(options, data);
  }

  /** Creates an account and signs in (`POST /auth/register`); a refusal throws an `Error` with the server's `code`. */
  static async register(
    options: DuetSessionOptions,
    account: { email: string; password: string; name: string; phone?: string },
  ): Promise<{ session: DuetSession; user: User }> {
    const rest = createRestClient({ baseUrl: options.baseUrl, ...(options.fetch ? { fetch: options.fetch } : {}) });
    const { data, error } = await rest.POST("/auth/register", { body: account });
    if (!data) throw Object.assign(new Error(error?.message ?? "registration failed"), { code: error?.code });
    return DuetSession.fromResponse(options, data);
  }

  /** A session from a register, login, refresh or password-change response. */
  static fromResponse(options: DuetSessionOptions, data: AuthResponse): { session: DuetSession; user: User } {
    const session = new DuetSession(tokensOf(data), options);
    options.onTokens?.(session.tokens);
    return { session, user: data.user };
  }

  /** The current tokens (to persist), or `undefined` once the session ended. */
  get current(): SessionTokens | undefined {
    return this.tokens;
  }

  /** A REST client that uses this session's token and refreshes on `token_expired`. */
  get restClient(): DuetRestClient {
    return this.rest;
  }

  /** A valid access token: the current one, or a fresh one when it expires within the margin. */
  async accessToken(): Promise<string> {
    const tokens = this.tokens;
    if (!tokens) throw new SessionEndedError("session_revoked", "the session has ended; sign in again");
    if (tokens.expiresAt - Date.now() > this.margin) return tokens.token;
    return this.refresh();
  }

  /** Exchanges the refresh token for a new pair now (single-flight); resolves to the new access token. */
  refresh(): Promise<string> {
    this.inflight ??= this.doRefresh().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /** Options for {@link DuetClient}: the socket and its REST client use and refresh this session's token. */
  clientOptions(): { token: () => Promise<string>; refreshToken: () => Promise<string> } {
    return { token: () => this.accessToken(), refreshToken: () => this.refresh() };
  }

  /** Ends this session on the server (`POST /auth/logout`); its WebSockets close with 4401. */
  async logout(): Promise<void> {
    await this.end("/auth/logout");
  }

  /** Ends every session of the account, on every device (`POST /auth/logout-all`). */
  async logoutAll(): Promise<void> {
    await this.end("/auth/logout-all");
  }

  /** Changes the password: every session ends, and this one continues with a new pair. */
  async changePassword(currentPassword: string, newPassword: string): Promise<void> {
    const { data, error } = await this.rest.POST("/auth/password", { body: { currentPassword, newPassword } });
    if (!data) throw Object.assign(new Error(error?.message ?? "password change failed"), { code: error?.code });
    this.set(tokensOf(data));
  }

  private async end(path: "/auth/logout" | "/auth/logout-all"): Promise<void> {
    if (!this.tokens) return;
    const { response } = await this.rest.POST(path, {});
    // A session already ended elsewhere is ended all the same.
    if (!response.ok && response.status !== 401) throw new Error(`${path} failed: HTTP ${response.status}`);
    this.set(undefined);
  }

  private async doRefresh(): Promise<string> {
    const tokens = this.tokens;
    if (!tokens) throw new SessionEndedError("session_revoked", "the session has ended; sign in again");
    const plain = createRestClient({ baseUrl: this.options.baseUrl, ...(this.options.fetch ? { fetch: this.options.fetch } : {}) });
    const { data, error, response } = await plain.POST("/auth/refresh", { body: { refreshToken: tokens.refreshToken } });
    if (data) {
      this.set(tokensOf(data));
      return data.token;
    }
    if (response.status === 401 && ENDED_CODES.has(error?.code ?? "")) {
      this.set(undefined);
      throw new SessionEndedError(error?.code ?? "unauthorized", error?.message ?? "the session has ended");
    }
    // Network trouble or a 5xx: the refresh token was not spent; try again later.
    throw new Error(`refresh failed: HTTP ${response.status}`);
  }

  private set(tokens: SessionTokens | undefined): void {
    this.tokens = tokens;
    this.options.onTokens?.(tokens);
  }
}

function tokensOf(data: AuthResponse): SessionTokens {
  return { token: data.token, expiresAt: Date.now() + data.expiresIn * 1000, refreshToken: data.refreshToken };
}
