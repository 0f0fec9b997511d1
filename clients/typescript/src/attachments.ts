/**
 * Attachments (images, video, voice notes, files) through object storage:
 * the server hands out a presigned upload URL, the bytes go straight to the
 * store (never through Duet), the server checks them (a HEAD) when the
 * upload is completed, and members get short-lived download URLs. Only
 * `fetch` and `Blob`/`ArrayBuffer`/`Uint8Array` are used, so it runs in
 * browsers, React Native and Node unchanged. Reached as
 * {@link DuetClient.attachments}; {@link DuetClient.sendAttachment} uploads
 * and sends in one call.
 * @module
 */
import type { components } from "./generated/openapi.js";
import { refused } from "./refused.js";
import type { DuetRestClient } from "./rest.js";

type Schemas = components["schemas"];
/** `image`, `video`, `audio` (voice notes) or `file`: also the type of the message that carries it. */
export type AttachmentKind = Schemas["AttachmentKind"];
/** A completed upload, ready to be sent. */
export type AttachmentInfo = Schemas["AttachmentInfo"];
/** An attachment with a short-lived download URL (ask again once `expiresAt` passed). */
export type AttachmentDownload = Schemas["AttachmentDownload"];

/** A file to upload. */
export interface NewAttachment {
  readonly kind: AttachmentKind;
  /** Its media type, e.g. `image/png` (each kind allows its own: docs/protocol.md, "Attachments"). */
  readonly contentType: string;
  /**
   * The bytes. React Native: a `Blob` (`await (await fetch(localUri)).blob()`
   * from an image picker's URI); browsers: a `File` from an `<input type=file>`.
   */
  readonly data: Blob | ArrayBuffer | Uint8Array;
  /** The name the receiver saves it under. */
  readonly fileName?: string;
}

/** The object store refused the bytes (an expired URL, a size that differs from the declared one). */
export class AttachmentUploadError extends Error {
  constructor(readonly status: number) {
    super(`the upload to object storage failed with HTTP ${status}`);
    this.name = "AttachmentUploadError";
  }
}

function sizeOf(data: Blob | ArrayBuffer | Uint8Array): number {
  return data instanceof ArrayBuffer ? data.byteLength : "byteLength" in data ? data.byteLength : data.size;
}

/** Attachments of one signed-in user. */
export class DuetAttachments {
  constructor(
    private readonly rest: DuetRestClient,
    private readonly fetcher?: typeof globalThis.fetch,
  ) {}

  /**
   * Uploads a file to a conversation: creates the upload (the server checks
   * membership, kind, type and size), PUTs the bytes to the presigned URL
   * with the headers it names, and completes it (the server verifies the
   * object). Resolves with the attachment to send; rejects with a
   * `DuetServerError` (`attachment_too_large`, `invalid_content_type`,
   * `rate_limited`, …) or an {@link AttachmentUploadError}.
   */
  async upload(conversationId: string, file: NewAttachment): Promise<AttachmentInfo> {
    const body = {
      kind: file.kind,
      contentType: file.contentType,
      size: sizeOf(file.data),
      ...(file.fileName !== undefined ? { fileName: file.fileName } : {}),
    };
    const created = await this.rest.POST("/conversations/{id}/attachments", { params: { path: { id: conversationId } }, body });
    const target = created.data ?? refused(created.error, "createAttachment");
    const fetcher = this.fetcher ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
    // Straight to the object store: no Authorization header (the URL's signature is the credential).
    const put = await fetcher(target.upload.url, {
      method: target.upload.method,
      headers: target.upload.headers,
      body: file.data as BodyInit,
    });
    if (!put.ok) throw new AttachmentUploadError(put.status);
    const path = { id: conversationId, attachmentId: target.attachmentId };
    const done = await this.rest.POST("/conversations/{id}/attachments/{attachmentId}/complete", { params: { path } });
    return done.data ?? refused(done.error, "completeAttachment");
  }

  /** A short-lived download URL of an attachment of one of your conversations. */
  async downloadUrl(conversationId: string, attachmentId: string): Promise<AttachmentDownload> {
    const { data, error } = await this.rest.GET("/conversations/{id}/attachments/{attachmentId}", {
      params: { path: { id: conversationId, attachmentId } },
    });
    return data ?? refused(error, "getAttachment");
  }

}
