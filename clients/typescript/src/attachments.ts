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
import { refused } from "./privacy.js";
import type { DuetRestClient } from "./rest.js";

/** What an attachment is; a message of the same type carries it. */
export type AttachmentKind = "image" | "video" | "audio" | "file";

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

/** A completed upload, ready to be sent. */
export interface AttachmentInfo {
  readonly attachmentId: string;
  readonly kind: AttachmentKind;
  readonly contentType: string;
  readonly size: number;
  readonly fileName?: string;
}

/** An attachment with a short-lived download URL (ask again once `expiresAt` passed). */
export interface AttachmentDownload extends AttachmentInfo {
  readonly url: string;
  readonly expiresAt: string;
}

/** The upload target the server answers `createAttachment` with. */
interface CreatedUpload {
  attachmentId: string;
  upload: { url: string; method: string; headers: Record<string, string>; expiresAt: string };
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

type UntypedCall = (path: string, init: object) => Promise<{ data?: unknown; error?: unknown; response: Response }>;

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
    const created = (await this.call("POST", "/conversations/{id}/attachments", { id: conversationId }, body)) as CreatedUpload;
    const fetcher = this.fetcher ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
    // Straight to the object store: no Authorization header (the URL's signature is the credential).
    const put = await fetcher(created.upload.url, {
      method: created.upload.method,
      headers: created.upload.headers,
      body: file.data as BodyInit,
    });
    if (!put.ok) throw new AttachmentUploadError(put.status);
    const ids = { id: conversationId, attachmentId: created.attachmentId };
    return (await this.call("POST", "/conversations/{id}/attachments/{attachmentId}/complete", ids)) as AttachmentInfo;
  }

  /** A short-lived download URL of an attachment of one of your conversations. */
  async downloadUrl(conversationId: string, attachmentId: string): Promise<AttachmentDownload> {
    return (await this.call("GET", "/conversations/{id}/attachments/{attachmentId}", { id: conversationId, attachmentId })) as AttachmentDownload;
  }

  private async call(method: "GET" | "POST", path: string, params: Record<string, string>, body?: object): Promise<unknown> {
    // The generated `paths` type these operations; one signature serves the three.
    const call = (this.rest as unknown as Record<string, UntypedCall>)[method];
    if (!call) throw new Error(`no REST method ${method}`);
    const { data, error, response } = await call.call(this.rest, path, { params: { path: params }, ...(body ? { body } : {}) });
    if (!response.ok || data === undefined) refused(error, `${method} ${path}`);
    return data;
  }
}
