/**
 * `@duet/client`: the official TypeScript SDK of Duet.
 *
 * - {@link DuetClient}: the realtime client (reconnect, exactly-once sync,
 *   outbox, receipts, typing, presence) feeding a {@link ChatStore}.
 * - {@link createRestClient}: the typed REST client (openapi-fetch).
 * - {@link DuetSession}: a signed-in session whose short-lived access token
 *   is renewed with a rotating refresh token; logout, log out everywhere.
 * - {@link createRestClient}: the typed REST client (openapi-fetch), and
 *   {@link DuetPrivacy} (presence privacy, blocks, reports) over it.
 * - Message changes (edit, unsend, hide, react, replies) on {@link DuetClient},
 *   and {@link DuetAttachments} (presigned uploads and downloads).
 * - Wire types generated from the server's contracts: `paths`/`components`
 *   (REST) and one type per WebSocket frame with the {@link ServerFrame} and
 *   {@link ClientFrame} unions.
 * @module
 */
export { DuetClient, DuetServerError } from "./client.js";
export type { DuetClientEvents, DuetClientOptions, SendHandle, SendResult } from "./client.js";
export { ChatStore } from "./store.js";
export { Emitter } from "./emitter.js";
export type { ChatMessage, ChatSnapshot, ConnectionStatus, ConversationState, PresenceState } from "./store.js";
export { KeyValueOutboxStorage, MemoryOutboxStorage, PERMANENT_SEND_ERRORS } from "./outbox.js";
export type { OutboxEntry, OutboxStorage } from "./outbox.js";
export { ManualOnlineSource, alwaysOnline, browserOnlineSource } from "./online.js";
export type { OnlineSource } from "./online.js";
export { backoffDelay } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { createRestClient } from "./rest.js";
export { DuetSession, SessionEndedError } from "./session.js";
export type { DuetSessionOptions, SessionTokens } from "./session.js";
export { DuetPrivacy } from "./privacy.js";
export type { BlockedUser, PresenceVisibility, PrivacySettings, Report, ReportReason, ReportTarget } from "./privacy.js";
export { AttachmentUploadError, DuetAttachments } from "./attachments.js";
export type { AttachmentInfo, AttachmentDownload, AttachmentKind, NewAttachment } from "./attachments.js";
export type { DuetRestClient, RestClientOptions } from "./rest.js";
export { randomId } from "./ids.js";
export type { WebSocketConstructor, WebSocketLike, SocketCloseEvent, SocketMessageEvent } from "./transport.js";
export * from "./generated/protocol.js";
export type { paths, components, operations } from "./generated/openapi.js";
