/**
 * Privacy, blocks and reports over REST: who sees your presence and last
 * seen, blocking users, and reporting users or messages to moderators.
 * Reached as {@link DuetClient.privacy}, or built over any REST client.
 * @module
 */
import type { components } from "./generated/openapi.js";
import { refused } from "./refused.js";
import type { DuetRestClient } from "./rest.js";

type Schemas = components["schemas"];
/** Who sees your presence and last seen: `everyone`, `contacts` (default: users you have messaged) or `nobody`. */
export type PresenceVisibility = Schemas["PresenceVisibility"];
export type PrivacySettings = Schemas["PrivacySettings"];
export type BlockedUser = Schemas["BlockedUser"];
export type ReportReason = Schemas["ReportReason"];
export type Report = Schemas["Report"];
/** What to report: a user, or a message (its sender is reported). */
export type ReportTarget = { userId: string; messageId?: never } | { messageId: string; userId?: never };

/** The privacy operations of one signed-in user. */
export class DuetPrivacy {
  constructor(private readonly rest: DuetRestClient) {}

  /** Your privacy settings. */
  async settings(): Promise<PrivacySettings> {
    const { data, error } = await this.rest.GET("/me/privacy");
    return data ?? refused(error, "GET /me/privacy");
  }

  /**
   * Sets who sees your presence and last seen. With `nobody` you see no
   * one's either. Peers with a live session are told at once.
   */
  async setPresenceVisibility(presence: PresenceVisibility): Promise<PrivacySettings> {
    const { data, error } = await this.rest.POST("/me/privacy", { body: { presence } });
    return data ?? refused(error, "POST /me/privacy");
  }

  /**
   * Blocks a user: neither of you can message the other or open a
   * conversation, and neither sees the other's presence. Blocking twice is
   * one block.
   */
  async block(userId: string): Promise<void> {
    const { response, error } = await this.rest.POST("/users/{id}/block", { params: { path: { id: userId } } });
    if (!response.ok) refused(error, "block");
  }

  /** Lifts a block (lifting one that is not there is not an error). */
  async unblock(userId: string): Promise<void> {
    const { response, error } = await this.rest.POST("/users/{id}/unblock", { params: { path: { id: userId } } });
    if (!response.ok) refused(error, "unblock");
  }

  /** The users you have blocked, most recently blocked first. */
  async blocks(): Promise<BlockedUser[]> {
    const { data, error } = await this.rest.GET("/blocks");
    return data?.users ?? refused(error, "GET /blocks");
  }

  /**
   * Reports a user, or a message in one of your conversations, to the
   * moderators. Over the per-user limit it throws `rate_limited`.
   */
  async report(target: ReportTarget, reason: ReportReason, details?: string): Promise<Report> {
    const body = { ...target, reason, ...(details === undefined ? {} : { details }) };
    const { data, error } = await this.rest.POST("/reports", { body });
    return data ?? refused(error, "POST /reports");
  }
}
