import { errorFrame, type ErrorFrame } from '../protocol/client-frames.js';
import type { MediaIndex } from './media-index.js';
import { refsRecorded, sendChecks } from './metrics.js';

/**
 * What a conversation actor needs from media (ConversationDeps.media): check that the media ids of
 * a send were uploaded before the send is queued, and record the conversation references of a
 * committed batch before its `sent` answers go out, so that every receiver can get a download URL
 * (src/media/http.ts) as soon as the message reaches them.
 *
 * - `check` answers null when every id is known (its metadata is in the index: the bytes were stored
 *   before the metadata, see http.ts), else the error frame for the send: `invalid_field` with
 *   `field: media.<i>` for the first id never uploaded, `invalid_field` / `media` when media is
 *   disabled on the node, `store_unavailable` (retryable) when the index cannot be read. Any user may
 *   send any uploaded id (forwarding): the id is the SHA-256 of the bytes, so knowing it is a
 *   capability the sender already holds.
 * - `record` is MediaIndex.recordSent for the union of the ids of a committed batch (duplicates
 *   included: an earlier activation may have committed a message and died before recording it).
 *   It rejects when the index cannot be written; the actor then answers those sends with a
 *   retryable error, and the client's retry (a duplicate) records again.
 *
 * Ids known to exist are cached per shard thread (content-addressed blobs are never rewritten; media
 * retention is a later feature), so a forwarded or re-sent id costs no index read.
 */
export interface SendMediaRefs {
  check(media: readonly string[], requestId: number): Promise<ErrorFrame | null>;
  record(conv: string, media: readonly string[]): Promise<void>;
}

const KNOWN_CAPACITY = 10_000;

export function sendMediaRefs(index: MediaIndex | null): SendMediaRefs {
  const known = new Set<string>();
  const remember = (id: string): void => {
    if (known.size >= KNOWN_CAPACITY) known.delete(known.values().next().value!);
    known.add(id);
  };
  return {
    async check(media, requestId) {
      if (media.length === 0) return null;
      if (index === null) {
        sendChecks.inc({ outcome: 'disabled' });
        return errorFrame('invalid_field', 'media is disabled on this server (media.enabled): send without media ids', requestId, 'media');
      }
      try {
        const missing = await Promise.all(media.map(async (id) => (known.has(id) ? false : (await index.getMeta(id)) === null)));
        const i = missing.indexOf(true);
        if (i >= 0) {
          sendChecks.inc({ outcome: 'unknown' });
          return errorFrame('invalid_field', `media id ${media[i]} was never uploaded (POST /media first)`, requestId, `media.${i}`);
        }
      } catch {
        sendChecks.inc({ outcome: 'error' });
        return errorFrame('store_unavailable', 'media index unavailable, retry', requestId);
      }
      for (const id of media) remember(id);
      sendChecks.inc({ outcome: 'ok' });
      return null;
    },
    async record(conv, media) {
      if (media.length === 0 || index === null) return;
      try {
        await index.recordSent(conv, [...new Set(media)]);
        refsRecorded.inc({ result: 'ok' });
      } catch (err) {
        refsRecorded.inc({ result: 'error' });
        throw err;
      }
    },
  };
}
