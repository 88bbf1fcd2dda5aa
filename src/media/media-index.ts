/**
 * What the node knows about media besides the bytes: each blob's metadata (detected type, size,
 * uploader) and where each media id was sent (conversation references), which decides who may get a
 * signed download URL.
 *
 * Contract (both implementations, embedded lmdb and scylla; test/contract/blobs.test.ts):
 * - `putMeta` is idempotent and keeps the first record of an id (same id, same bytes, same type).
 * - `recordSent(conv, ids)` is idempotent; once it resolved, `isSentIn(conv, id)` is true for every
 *   id, from any instance sharing the index. References are never removed by message retention: a
 *   member who received the message may still fetch the media (retention of media is a later
 *   feature).
 * - Errors are StoreError (the same codes as the store).
 */
export interface MediaIndex {
  readonly engine: 'embedded' | 'scylla';
  open(): Promise<void>;
  close(): Promise<void>;
  putMeta(meta: MediaMeta): Promise<void>;
  getMeta(id: string): Promise<MediaMeta | null>;
  recordSent(conversationId: string, mediaIds: readonly string[]): Promise<void>;
  isSentIn(conversationId: string, mediaId: string): Promise<boolean>;
}

export interface MediaMeta {
  id: string;
  /** MIME type detected from the content. */
  type: string;
  size: number;
  uploader: string;
  createdAtMs: number;
}
