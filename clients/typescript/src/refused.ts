/**
 * The one way the REST helpers (`DuetPrivacy`, `DuetAttachments`)
 * turn a refused request into an exception.
 * @module
 */
import type { ErrorData } from "./generated/protocol.js";
import { DuetServerError } from "./client.js";

/** Throws the server's `{code, message}` as a {@link DuetServerError}. */
export function refused(error: unknown, what: string): never {
  const body = error as Partial<ErrorData> | undefined;
  if (body && typeof body.code === "string" && typeof body.message === "string") {
    throw new DuetServerError({ code: body.code, message: body.message });
  }
  throw new Error(`${what} failed: ${JSON.stringify(error)}`);
}
