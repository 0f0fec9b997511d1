/**
 * Attachments over REST: declare an upload, PUT the bytes to object storage
 * through the presigned URL the server answers, and have the server check
 * them; then send a message of the attachment's kind naming it
 * (`{attachmentId}`), and fetch short-lived download URLs as a member.
 * Reached as {@link DuetClient.attachments}, or built over any REST client.
 * @module
 */
import type { components } from "./generated/openapi.js";
import { refused } from "./refused.js";
import type { DuetRestClient } from "./rest.js";

type Schemas = components["schemas"];
/** `image`, `video`, `audio` (voice notes) or `file`: also the message type to send it as. */
export type AttachmentKind = Schemas["AttachmentKind"];
export type AttachmentInfo = Schemas["AttachmentInfo"];
export type AttachmentDownload = Schemas["AttachmentDownload"];

/** A file to upload. */
export interface NewAttachment {
  kind: AttachmentKind;
  /** One allowed for `kind` (`docs/protocol.md`, "Attachments"), e.g. `image/jpeg`. */
  contentType: string;
  /** The bytes; sent with their length (no chunked upload). */
  data: Blob | ArrayBuffer | Uint8Array;
  /** The name the receiver saves it under. */
  fileName?: string;
}

/** The attachment operations of one signed-in user. */
export class DuetAttachments {
  constructor(
    private readonly rest: DuetRestClient,
    private readonly fetcher: typeof globalThis.fetch = (input, init) => globalThis.fetch(input, init),
  ) {}

  /**
   * Uploads a file into a conversation of yours and completes it: the
   * answer is ready to send, as `client.send(conversationId, {type: kind, payload: {attachmentId}})`.
   */
  async upload(conversationId: string, file: NewAttachment): Promise<AttachmentInfo> {
    const bytes = file.data instanceof Blob ? new Uint8Array(await file.data.arrayBuffer()) : new Uint8Array(file.data);
    const body = {
      kind: file.kind,
      contentType: file.contentType,
      size: bytes.byteLength,
      ...(file.fileName === undefined ? {} : { fileName: file.fileName }),
    };
    const path = { id: conversationId };
    const created = await this.rest.POST("/conversations/{id}/attachments", { params: { path }, body });
    const upload = created.data ?? refused(created.error, "POST /conversations/{id}/attachments");
    const put = await this.fetcher(upload.upload.url, { method: upload.upload.method, headers: upload.upload.headers, body: bytes });
    if (!put.ok) throw new Error(`the object store refused the upload: ${put.status}`);
    const attachmentId = upload.attachmentId;
    const done = await this.rest.POST("/conversations/{id}/attachments/{attachmentId}/complete", {
      params: { path: { id: conversationId, attachmentId } },
    });
    return done.data ?? refused(done.error, "complete the upload");
  }

  /** An attachment of a conversation of yours with a download URL that works until `expiresAt`. */
  async download(conversationId: string, attachmentId: string): Promise<AttachmentDownload> {
    const { data, error } = await this.rest.GET("/conversations/{id}/attachments/{attachmentId}", {
      params: { path: { id: conversationId, attachmentId } },
    });
    return data ?? refused(error, "GET /conversations/{id}/attachments/{attachmentId}");
  }
}
