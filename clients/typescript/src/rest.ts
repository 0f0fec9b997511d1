/**
 * The REST client: openapi-fetch over types generated from
 * `openapi/openapi.json`, with the bearer token added to every request.
 * @module
 */
import createClient, { type Client } from "openapi-fetch";
import type { paths } from "./generated/openapi.js";

/** A typed REST client: `rest.GET("/conversations")`, `rest.POST("/auth/login", {body})`. */
export type DuetRestClient = Client<paths>;

/** Options of {@link createRestClient}. */
export interface RestClientOptions {
  /** `https://chat.example.com` (no trailing `/ws`). */
  baseUrl: string;
  /** The current access token; none for register/login. */
  getToken?: () => string | undefined | Promise<string | undefined>;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
  /**
   * Called when a request is answered 401 `token_expired`: return a new
   * access token; the request is retried once with it.
   */
  refreshToken?: () => Promise<string>;
}

/** Creates the typed REST client. */
export function createRestClient(options: RestClientOptions): DuetRestClient {
  const refresh = options.refreshToken;
  const fetcher = options.fetch;
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    ...(refresh ? { fetch: retryingOnExpiry(fetcher ?? ((r) => globalThis.fetch(r)), refresh) } : fetcher ? { fetch: fetcher } : {}),
  });
  const getToken = options.getToken;
  if (getToken) {
    client.use({
      async onRequest({ request }) {
        const token = await getToken();
        if (token && !request.headers.has("Authorization")) request.headers.set("Authorization", `Bearer ${token}`);
        return request;
      },
    });
  }
  return client;
}

/** A fetch that, on 401 `token_expired`, refreshes the token and retries the request once. */
function retryingOnExpiry(
  fetcher: (request: Request) => Promise<Response>,
  refresh: () => Promise<string>,
): (request: Request) => Promise<Response> {
  return async (request) => {
    const retry = request.clone();
    const response = await fetcher(request);
    if (response.status !== 401 || !retry.headers.has("Authorization")) return response;
    const body = (await response
      .clone()
      .json()
      .catch(() => undefined)) as { code?: string } | undefined;
    if (body?.code !== "token_expired") return response;
    retry.headers.set("Authorization", `Bearer ${await refresh()}`);
    return fetcher(retry);
  };
}
