import type { Readable } from 'node:stream';
import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { authenticate, bearerToken, Exchange, HttpError, param, queryParams, statusLine, type HttpResponse } from '../gateway/rest.js';
import { isTicksError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { isConversationId } from '../protocol/ids.js';
import type { Store } from '../store/store.js';
import { isMediaId, type BlobStore } from './blob-store.js';
import type { Hasher } from './hasher.js';
import type { MediaIndex } from './media-index.js';
import { downloadBytes, downloads, uploadBytes, uploads, urls, type DownloadOutcome, type UploadOutcome, type UrlOutcome } from './metrics.js';
import { checkUrl, signUrl } from './signing.js';
import { categoryOf, type TypePolicy } from './sniff.js';
import { Upload, UploadFailure } from './upload.js';

/**
 * Media endpoints (documented in docs/HTTP.md):
 *
 * - `POST /media` (Bearer token): the body is the file. Answers 201 `{ id, type, size, created }`.
 *   413 oversize (checked while streaming), 415 type not allowed or not recognised, 400 empty,
 *   401 bad token.
 * - `POST /media/:id/url?conv=<conversation>` (Bearer token): a signed download URL, only for a
 *   member of `conv` in which the media id was sent (MediaIndex.recordSent). 403 otherwise, 404 when
 *   the media is unknown, 503 when the node has no URL secret.
 * - `GET /media/:id?u=&exp=&sig=`: the bytes, with the detected type. 403 bad or expired signature,
 *   404 unknown. The URL is the capability (no token), so that `<img src>` works.
 */
export interface MediaHttpDeps {
  blobs: BlobStore;
  index: MediaIndex;
  store: Pick<Store, 'getMember'>;
  verify: TokenVerifier;
  hasher: Hasher;
  policy: TypePolicy;
  spoolDir: string;
  inlineMaxBytes: number;
  /** Uploads in progress on this thread at once; more are refused with 503. */
  maxConcurrentUploads: number;
  /** Undefined: download URLs cannot be issued or checked (503). */
  urlSecret: Buffer | undefined;
  urlTtlS: number;
  log: Logger;
  now?: () => number;
}

export function mountMedia(app: TemplatedApp, d: MediaHttpDeps): void {
  const now = d.now ?? Date.now;

  let activeUploads = 0;

  app.post('/media', (res, req) => {
    const token = bearerToken(req);
    const lengthHeader = req.getHeader('content-length');
    const declared = /^\d{1,15}$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    const ex = new Exchange(res);
    if (activeUploads >= d.maxConcurrentUploads) {
      uploads.inc({ outcome: 'busy' });
      ex.error(new HttpError(503, 'media.busy', `${d.maxConcurrentUploads} uploads in progress on this thread; retry`, { 'Retry-After': '1' }), true);
      return;
    }
    activeUploads++;
    let outcome: UploadOutcome | null = null;
    const answer = (o: UploadOutcome, send: () => void): void => {
      if (outcome !== null) return;
      outcome = o;
      activeUploads--;
      uploads.inc({ outcome: o });
      send();
    };
    const refuse = (f: UploadFailure): void => {
      const o: UploadOutcome = f.code === 'media.too_large' ? 'too_large' : f.code === 'media.unsupported_type' ? 'unsupported_type' : f.code === 'media.empty' ? 'empty' : 'error';
      // The body may still be arriving: close the connection rather than read the rest.
      answer(o, () => ex.error(new HttpError(f.status, f.code, f.message), true));
    };
    const upload = new Upload({ policy: d.policy, hasher: d.hasher, spoolDir: d.spoolDir, inlineMaxBytes: d.inlineMaxBytes, declaredLength: declared, onFailure: refuse });
    ex.onAbort(() => {
      upload.discard();
      if (outcome === null) {
        outcome = 'aborted';
        activeUploads--;
        uploads.inc({ outcome: 'aborted' });
      }
    });
    if (upload.failure) return;

    const who = authenticate(d.verify, token);
    who.catch((err: unknown) => {
      upload.discard();
      answer('unauthorized', () => ex.error(toHttpError(err), true));
    });

    let complete: (() => void) | null = null;
    const bodyDone = new Promise<void>((resolve) => (complete = resolve));
    res.onData((ab, isLast) => {
      if (!ex.open || upload.failure) return;
      const pause = upload.push(Buffer.from(ab.slice(0))); // the ArrayBuffer is only valid during this call
      if (pause && !isLast) {
        res.pause();
        void upload.drained().then(() => {
          if (ex.open) res.resume();
        });
      }
      if (isLast) complete!();
    });

    void (async () => {
      const user = (await who).user;
      await bodyDone;
      if (!ex.open) return;
      const r = await upload.finish();
      const { created } = await d.blobs.put(r.id, r.source);
      await d.index.putMeta({ id: r.id, type: r.type, size: r.size, uploader: user, createdAtMs: now() });
      uploadBytes.observe({ category: categoryOf(r.type) }, r.size);
      answer(created ? 'created' : 'duplicate', () => ex.json(201, { id: r.id, type: r.type, size: r.size, created }));
    })().catch((err: unknown) => {
      upload.discard();
      if (outcome !== null || !ex.open) return;
      if (err instanceof UploadFailure) return refuse(err);
      if (err instanceof HttpError) return; // 401, answered above
      d.log.warn({ err }, 'media upload failed');
      answer('error', () => ex.error(toHttpError(err), true));
    });
  });

  app.post('/media/:id/url', (res, req) => {
    const token = bearerToken(req);
    const id = param(req, 0);
    const conv = queryParams(req).get('conv') ?? '';
    const ex = new Exchange(res);
    const fail = (o: UrlOutcome, e: HttpError): never => {
      urls.inc({ outcome: o });
      throw e;
    };
    void (async () => {
      const who = await authenticate(d.verify, token).catch((err: unknown) => fail('unauthorized', toHttpError(err)));
      if (!isMediaId(id)) fail('bad_request', new HttpError(400, 'media.bad_id', 'a media id is 64 lower-case hex characters (SHA-256)'));
      if (!isConversationId(conv)) fail('bad_request', new HttpError(400, 'media.bad_conversation', 'query parameter conv must name a conversation'));
      if (d.urlSecret === undefined) {
        fail('unavailable', new HttpError(503, 'media.no_url_secret', 'this node has no media.urlSecret (nor an HS256 secret to derive one from)'));
      }
      // Membership and reference before existence: a non-member learns nothing about which media exist.
      if ((await d.store.getMember(conv, who.user)) === null) fail('not_member', new HttpError(403, 'media.not_member', `not a member of ${conv}`));
      if (!(await d.index.isSentIn(conv, id))) fail('not_sent', new HttpError(403, 'media.not_sent_here', `media ${id} was not sent in ${conv}`));
      const meta = await d.index.getMeta(id);
      if (meta === null) fail('not_found', new HttpError(404, 'media.not_found', `no media ${id}`));
      const exp = Math.floor(now() / 1000) + d.urlTtlS;
      urls.inc({ outcome: 'issued' });
      ex.json(200, { url: signUrl(d.urlSecret!, id, who.user, exp), expiresAt: exp, type: meta!.type, size: meta!.size });
    })().catch((err: unknown) => {
      const e = toHttpError(err);
      if (e.status >= 500 && !(err instanceof HttpError)) {
        urls.inc({ outcome: 'error' });
        d.log.warn({ err }, 'media url request failed');
      }
      ex.error(e);
    });
  });

  app.get('/media/:id', (res, req) => {
    const id = param(req, 0);
    const q = queryParams(req);
    const ex = new Exchange(res);
    let outcome: DownloadOutcome | null = null;
    const count = (o: DownloadOutcome): void => {
      if (outcome === null) {
        outcome = o;
        downloads.inc({ outcome: o });
      }
    };
    ex.onAbort(() => count('aborted'));
    void (async () => {
      if (d.urlSecret === undefined) throw new HttpError(503, 'media.no_url_secret', 'this node cannot check download URLs (no media.urlSecret)');
      const check = isMediaId(id) ? checkUrl(d.urlSecret, id, q, Math.floor(now() / 1000)) : ({ ok: false, reason: 'bad_signature' } as const);
      if (!check.ok) {
        count(check.reason);
        throw new HttpError(403, check.reason === 'expired' ? 'media.url_expired' : 'media.bad_signature', check.reason === 'expired' ? 'download URL expired' : 'bad download URL signature');
      }
      const meta = await d.index.getMeta(id);
      const blob = meta ? await d.blobs.get(id) : null;
      if (!meta || !blob) {
        count('not_found');
        throw new HttpError(404, 'media.not_found', `no media ${id}`);
      }
      if (!ex.open) {
        blob.stream.destroy();
        return;
      }
      ex.done = true;
      const maxAgeS = Math.max(0, check.exp - Math.floor(now() / 1000));
      res.cork(() => {
        res
          .writeStatus(statusLine(200))
          .writeHeader('Content-Type', meta.type)
          .writeHeader('X-Content-Type-Options', 'nosniff')
          .writeHeader('Cache-Control', `private, max-age=${maxAgeS}, immutable`)
          .writeHeader('ETag', `"${id}"`);
      });
      const sent = await pipeToResponse(res, ex, blob.stream, blob.size);
      count(sent ? 'ok' : 'aborted');
    })().catch((err: unknown) => {
      if (!(err instanceof HttpError)) {
        count('error');
        d.log.warn({ err }, 'media download failed');
      }
      if (ex.open) ex.error(toHttpError(err));
      else if (ex.done && !ex.aborted) res.close(); // failed mid-body: the client must not take a short body as complete
    });
  });
}

/**
 * Streams `stream` (exactly `size` bytes) into a uWS response with backpressure: `tryEnd` takes what
 * the socket accepts, the stream pauses until `onWritable`, and the unsent tail of the chunk is
 * retried from the offset uWS reports. Resolves true when the whole body was sent.
 */
function pipeToResponse(res: HttpResponse, ex: Exchange, stream: Readable, size: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      stream.destroy();
      if (ok) downloadBytes.inc(size);
      resolve(ok);
    };
    ex.onAbort(() => settle(false));
    if (size === 0) {
      res.cork(() => res.end());
      settle(true);
      return;
    }
    stream.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
    stream.on('end', () => {
      if (!settled) reject(new Error(`blob stream ended before ${size} bytes`));
    });
    stream.on('data', (chunk: Buffer) => {
      if (ex.aborted) return settle(false);
      const ab = chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;
      const start = res.getWriteOffset();
      let result: [boolean, boolean] = [false, false];
      res.cork(() => {
        result = res.tryEnd(ab, size);
      });
      const [ok, done] = result;
      if (done) return settle(true);
      if (ok) return;
      stream.pause();
      res.onWritable((offset) => {
        if (ex.aborted) {
          settle(false);
          return true;
        }
        const [ok2, done2] = res.tryEnd(ab.slice(offset - start), size);
        if (done2) settle(true);
        else if (ok2) stream.resume();
        return ok2;
      });
    });
  });
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof UploadFailure) return new HttpError(err.status, err.code, err.message);
  if (isTicksError(err) && err.retryable) return new HttpError(503, err.code, 'temporarily unavailable, retry', { 'Retry-After': '1' });
  return new HttpError(500, 'internal', 'internal error');
}
