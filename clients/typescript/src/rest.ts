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
}

/** Creates the typed REST client. */
export function createRestClient(options: RestClientOptions): DuetRestClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    ...(options.fetch ? { fetch: options.fetch } : {}),
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
