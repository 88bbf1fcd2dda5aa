/**
 * Media and prekey HTTP endpoints on a real node (2 shard threads, real port), on both deployments:
 * - embedded: lmdb store, disk blob store, lmdb media index and prekey directory;
 * - cluster storage: Cassandra store (scylla engine) with the S3 blob store on a real s3proxy.
 *
 * Media: upload with type detection and limits (413 while streaming, 415), content addressing,
 * signed URLs only for members of a conversation where the media was sent, download through the
 * URL, and every refusal (401, 403, 404). Media ids travel in `send.media` over the WebSocket: the
 * conversation actor refuses ids never uploaded and records the reference before `sent`, so the
 * receiver's live `msg`, its sync and history carry the ids and it can get a URL at once.
 * Prekeys: PUT own keys, GET bundles with single consumption, the low-prekey signal (in the answers
 * and as a `keys.low` frame on the device's live session), the per-user fetch rate limit (429),
 * refusals. Devices: DELETE /devices/:device removes the device, its push token and its prekeys.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mintHs256Token } from '../../src/auth/mint.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { EmbeddedMediaIndex } from '../../src/media/embedded-media-index.js';
import type { MediaIndex } from '../../src/media/media-index.js';
import { ScyllaMediaIndex } from '../../src/media/scylla-media-index.js';
import { signUrl, urlSecretFrom } from '../../src/media/signing.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { createStore } from '../../src/store/create-store.js';
import { scyllaOptionsOf } from '../../src/store/scylla/aux-tables.js';
import type { ServerFrame } from '../../src/protocol/client-frames.js';
import { RawClient } from '../support/cluster-raw-client.js';
import { utf8, waitUntil } from '../support/e2e-client.js';
import { requireCassandra, uniqueKeyspace } from '../support/env.js';
import { startS3, type S3Service } from '../support/services/s3.js';

const SECRET = 'media-http-secret-'.padEnd(48, 'x');
const KiB = 1024;
const LIMITS = { image: 64 * KiB, video: 64 * KiB, audio: 64 * KiB, document: 8 * 1024 * KiB };

/** A PNG as far as magic-byte detection reads: signature, IHDR, then an IDAT chunk of random bytes. */
const png = (size: number): Buffer => {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    return Buffer.concat([len, Buffer.from(type, 'latin1'), data, randomBytes(4)]);
  };
  const head = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', Buffer.from('00000010000000100806000000', 'hex'))]);
  return Buffer.concat([head, chunk('IDAT', randomBytes(Math.max(0, size - head.length - 12)))]);
};
const jpeg = (size: number): Buffer => {
  const b = randomBytes(size);
  Buffer.from('ffd8ffe000104a46494600010100000100010000', 'hex').copy(b);
  return b;
};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let s3: S3Service | undefined;
t.before(async () => {
  s3 = await startS3();
});
t.teardown(async () => {
  await s3?.stop();
});

for (const engine of (['embedded', 'scylla'] as const).filter((e) => !process.env.TICKS_E2E_ENGINE || e === process.env.TICKS_E2E_ENGINE)) {
  t.test(`${engine}: media and prekey endpoints`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ticks-media-'));
    const cassandra = engine === 'scylla' ? requireCassandra() : undefined;
    const config: Config = configSchema.parse({
      dataDir: dir,
      log: { level: process.env.TICKS_E2E_LOG ?? 'silent' },
      store:
        engine === 'embedded'
          ? { engine: 'embedded', embedded: { path: join(dir, 'store') } }
          : {
              engine: 'scylla',
              scylla: { contactPoints: cassandra!.contactPoints, localDataCenter: cassandra!.localDataCenter, keyspace: uniqueKeyspace('media_http'), requestTimeoutMs: 20_000, connectTimeoutMs: 10_000 },
            },
      gateway: { host: '127.0.0.1', port: 0, shards: 2 },
      auth: { hs256Secret: SECRET, algorithms: ['HS256'] },
      media: {
        blobStore: engine === 'embedded' ? 'disk' : 's3',
        s3: { endpoint: s3!.endpoint, region: s3!.region, bucket: `media-${randomBytes(4).toString('hex')}`, accessKeyId: s3!.accessKeyId, secretAccessKey: s3!.secretAccessKey, createBucket: true },
        maxBytes: LIMITS,
        hashInlineMaxBytes: 16 * KiB,
        urlTtlS: 600,
        maxConcurrentUploads: 1,
      },
      keys: { maxPerUpload: 20, maxOneTimePreKeys: 30, lowThreshold: 3, fetchPerMinute: 40 },
    });
    const node: RunningNode = await startNode(config, { testHooks: true });
    const index: MediaIndex =
      engine === 'embedded' ? new EmbeddedMediaIndex(join(dir, 'media', 'index')) : new ScyllaMediaIndex(scyllaOptionsOf(config.store));
    await index.open();
    t.teardown(async () => {
      await index.close();
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    const base = `http://127.0.0.1:${node.port}`;
    const tag = Math.random().toString(36).slice(2, 7);
    const user = (name: string): string => `${name}.${tag}`;
    const token = (u: string, device = 'phone'): Promise<string> => mintHs256Token({ secret: SECRET, user: u, device, ttlS: 600, settings: config.auth });
    const auth = async (u: string, device = 'phone'): Promise<Record<string, string>> => ({ authorization: `Bearer ${await token(u, device)}` });
    const upload = async (u: string | null, body: Buffer, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(`${base}/media`, { method: 'POST', body, headers: { ...(u ? await auth(u) : {}), 'content-type': 'image/png', ...headers } });
    const askUrl = async (u: string | null, id: string, conv: string): Promise<Response> =>
      fetch(`${base}/media/${id}/url?conv=${encodeURIComponent(conv)}`, { method: 'POST', headers: u ? await auth(u) : {} });

    const alice = user('alice');
    const bob = user('bob');
    const carol = user('carol');
    const conv = directConversationId(alice, bob);

    /** A raw protocol session (the SDK has no media or keys.low yet); it has synced once. */
    const raw = async (u: string, device = 'phone'): Promise<RawClient> => {
      const c = new RawClient({ url: `ws://127.0.0.1:${node.port}`, id: 'media-node' }, u, device, SECRET);
      t.teardown(() => c.close());
      await c.open();
      return c;
    };
    let nextId = 100;
    /** Sends `media` from `c` to `to`; resolves with the answer (`sent` or `error`). */
    const sendMedia = async (c: RawClient, to: string, media: string[] | undefined, body = 'with media'): Promise<ServerFrame> => {
      const id = nextId++;
      c.send({ t: 'send', id, to, cmid: `cm-${id}`, body: utf8(body), ...(media === undefined ? {} : { media }) });
      const answer = (): ServerFrame | undefined => c.frames.find((f) => (f.t === 'sent' || f.t === 'error') && f.id === id);
      await waitUntil(() => answer() !== undefined, `answer to send ${id} of ${c.label}`);
      return answer()!;
    };

    t.test('upload, signed URL for a member, download; refusals', async (t) => {
      const image = png(40 * KiB);
      const up = await upload(alice, image, { 'content-type': 'text/plain' });
      t.equal(up.status, 201);
      const body = (await up.json()) as { id: string; type: string; size: number; created: boolean };
      t.same(body, { id: sha(image), type: 'image/png', size: image.length, created: true }, 'content-addressed, type from the bytes (not the header)');
      const again = (await (await upload(bob, image)).json()) as { created: boolean };
      t.equal(again.created, false, 'the same bytes uploaded again are the same blob');

      // Before any message carried it, bob (not yet in any conversation with alice) gets no URL.
      t.equal((await askUrl(bob, body.id, conv)).status, 403, 'no URL before the id was sent in the conversation');

      // alice sends bob a message carrying the id; bob is online and receives it live.
      const a = await raw(alice);
      const b = await raw(bob);
      const sent = await sendMedia(a, bob, [body.id]);
      t.equal(sent.t, 'sent', `a send with an uploaded media id is stored: ${JSON.stringify(sent)}`);
      const seq = (sent as { seq: number }).seq;
      await waitUntil(() => b.frames.some((f) => f.t === 'msg' && f.seq === seq), 'bob receives the message live');
      const live = b.frames.find((f) => f.t === 'msg' && f.seq === seq) as { media?: string[] };
      t.same(live.media, [body.id], 'the live msg carries the media id, never bytes');
      // The reference was recorded before `sent`: the URL is available the moment the message is.

      const issued = await askUrl(bob, body.id, conv);
      t.equal(issued.status, 200, 'a member gets a URL');
      const { url, expiresAt } = (await issued.json()) as { url: string; expiresAt: number };
      t.ok(expiresAt > Date.now() / 1000 && expiresAt <= Date.now() / 1000 + 601, 'expires within urlTtlS');
      const dl = await fetch(base + url);
      t.equal(dl.status, 200);
      t.equal(dl.headers.get('content-type'), 'image/png');
      t.ok(Buffer.from(await dl.arrayBuffer()).equals(image), 'downloaded bytes are the uploaded bytes');

      const nonMember = await askUrl(carol, body.id, conv);
      t.equal(nonMember.status, 403, 'a non-member gets no URL');
      t.equal(((await nonMember.json()) as { error: string }).error, 'media.not_member');

      const other = png(2 * KiB);
      const otherId = ((await (await upload(alice, other)).json()) as { id: string }).id;
      const notSent = await askUrl(bob, otherId, conv);
      t.equal(notSent.status, 403, 'media never sent in the conversation gets no URL');
      t.equal(((await notSent.json()) as { error: string }).error, 'media.not_sent_here');

      const ghost = sha(randomBytes(8));
      await index.recordSent(conv, [ghost]);
      const missing = await askUrl(bob, ghost, conv);
      t.equal(missing.status, 404, 'a referenced but never uploaded media id is 404');

      t.equal((await askUrl(null, body.id, conv)).status, 401, 'no token: 401');
      t.equal((await askUrl(bob, 'not-an-id', conv)).status, 400, 'malformed id: 400');

      const u = new URL(base + url);
      const tampered = new URL(u);
      tampered.searchParams.set('u', carol);
      const bad = await fetch(tampered);
      t.equal(bad.status, 403, 'a URL re-attributed to another user is refused');
      t.equal(((await bad.json()) as { error: string }).error, 'media.bad_signature');
      const otherBlob = new URL(u);
      otherBlob.pathname = `/media/${otherId}`;
      t.equal((await fetch(otherBlob)).status, 403, 'a URL re-pointed at another blob is refused');
      const noSig = new URL(u);
      noSig.searchParams.delete('sig');
      t.equal((await fetch(noSig)).status, 403);

      // Sync and history carry the ids too (a fresh device of bob, and a history page).
      const b2 = await raw(bob, 'tablet');
      const batch = b2.frames.find((f) => f.t === 'sync.batch' && f.conv === conv) as { msgs: { seq: number; media?: string[] }[] } | undefined;
      t.same(batch?.msgs.find((m) => m.seq === seq)?.media, [body.id], 'sync.batch entries carry media ids');
      b2.send({ t: 'history', id: 7, conv, limit: 10 });
      await waitUntil(() => b2.frames.some((f) => f.t === 'history.page' && f.id === 7), 'history page');
      const page = b2.frames.find((f) => f.t === 'history.page' && f.id === 7) as { msgs: { seq: number; media?: string[] }[] };
      t.same(page.msgs.find((m) => m.seq === seq)?.media, [body.id], 'history entries carry media ids');

      // A send with an id that was never uploaded is refused and nothing is stored.
      const never = sha(randomBytes(8));
      const refused = await sendMedia(a, bob, [body.id, never]);
      t.match(refused, { t: 'error', code: 'invalid_field', field: 'media.1', retry: false }, 'unknown media id: invalid_field on media.1');
      t.equal((await askUrl(bob, never, conv)).status, 403, 'the refused send recorded no reference');
      const after = await sendMedia(a, bob, undefined, 'plain');
      t.equal((after as { seq: number }).seq, seq + 1, 'the refused send took no seq');
      // A malformed id is refused by the frame schema (invalid_field as well).
      const malformed = await sendMedia(a, bob, ['NOT-HEX']);
      t.match(malformed, { t: 'error', code: 'invalid_field' });

      const secret = urlSecretFrom(undefined, SECRET)!;
      const expired = await fetch(base + signUrl(secret, body.id, bob, Math.floor(Date.now() / 1000) - 5));
      t.equal(expired.status, 403, 'an expired URL is refused');
      t.equal(((await expired.json()) as { error: string }).error, 'media.url_expired');
      const unknown = sha(randomBytes(8));
      t.equal((await fetch(base + signUrl(secret, unknown, bob, Math.floor(Date.now() / 1000) + 60))).status, 404, 'a valid signature for an unknown blob is 404');
    });

    t.test('limits: type from magic bytes, size per type, checked while streaming', async (t) => {
      const text = await upload(alice, Buffer.from('just some text, not an image'.repeat(10)));
      t.equal(text.status, 415);
      t.equal(((await text.json()) as { error: string }).error, 'media.unsupported_type');
      const zip = Buffer.concat([Buffer.from('504b0304', 'hex'), randomBytes(5000)]);
      t.equal((await upload(alice, zip)).status, 415, 'a recognised but not allowed type (zip) is 415');
      const empty = await upload(alice, Buffer.alloc(0));
      t.equal(empty.status, 400);

      const big = await upload(alice, jpeg(LIMITS.image + 1));
      t.equal(big.status, 413, 'an image one byte over the image limit is 413');
      t.equal(((await big.json()) as { error: string }).error, 'media.too_large');
      const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(200 * KiB)]);
      const okPdf = await upload(alice, pdf);
      t.equal(okPdf.status, 201, 'a 200 KiB document is under the document limit (and hashed on the pool)');
      t.equal(((await okPdf.json()) as { id: string }).id, sha(pdf));
      t.equal((await upload(null, png(1000))).status, 401, 'no token: 401');
      t.equal((await upload(alice, png(1000), { authorization: 'Bearer nope' })).status, 401, 'bad token: 401');

      // Streaming check: declare 900 KiB (under the largest limit), send only 100 KiB of an image,
      // and expect the 413 while the rest of the body is still owed.
      const answer = await rawUpload(node.port, await token(alice), 900 * KiB, jpeg(100 * KiB));
      t.match(answer, /^HTTP\/1\.1 413/, `413 before the body was complete: ${answer.split('\r\n')[0]}`);
      const declared = await rawUpload(node.port, await token(alice), 10 * 1024 * KiB, png(1 * KiB));
      t.match(declared, /^HTTP\/1\.1 413/, 'a declared length over every limit is 413 at once');
    });

    t.test('a large file round-trips through a slow reader (download backpressure)', async (t) => {
      const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(6 * 1024 * KiB)]);
      const up = await upload(alice, pdf);
      t.equal(up.status, 201);
      const { id } = (await up.json()) as { id: string };
      const convBig = directConversationId(alice, carol);
      const c = await raw(carol);
      t.equal((await sendMedia(c, alice, [id], 'the pdf')).t, 'sent');
      const { url } = (await (await askUrl(alice, id, convBig)).json()) as { url: string };
      const res = await fetch(base + url);
      t.equal(res.headers.get('content-length'), String(pdf.length));
      await new Promise((r) => setTimeout(r, 500)); // the server fills the socket and must wait
      t.ok(Buffer.from(await res.arrayBuffer()).equals(pdf), '6 MiB downloaded intact');
    });

    t.test('prekeys: publish, fetch with single consumption, low signal, refusals', async (t) => {
      const b64 = (n = 32): string => randomBytes(n).toString('base64');
      const keys = (from: number, count: number): { keyId: number; publicKey: string }[] =>
        Array.from({ length: count }, (_, i) => ({ keyId: from + i, publicKey: b64() }));
      const ik = b64();
      const put = async (u: string, device: string, body: unknown): Promise<Response> =>
        fetch(`${base}/keys`, { method: 'PUT', body: JSON.stringify(body), headers: { ...(await auth(u, device)), 'content-type': 'application/json' } });
      const spk = { keyId: 1, publicKey: b64(), signature: b64(64) };

      // bob's phone is online: the low-prekey signal reaches it as a keys.low frame.
      const phone = await raw(bob, 'phone');
      const r = await put(bob, 'phone', { identityKey: ik, signedPreKey: spk, oneTimePreKeys: keys(1, 5) });
      t.equal(r.status, 200);
      t.same(await r.json(), { oneTimeCount: 5, identityChanged: false, low: false, lowThreshold: 3 });
      await put(bob, 'laptop', { identityKey: b64(), signedPreKey: spk, oneTimePreKeys: keys(1, 5) });

      const one = await fetch(`${base}/keys/${bob}/phone`, { headers: await auth(alice) });
      t.equal(one.status, 200);
      const bundle = (await one.json()) as { identityKey: string; signedPreKey: typeof spk; oneTimePreKey: { keyId: number } | null };
      t.equal(bundle.identityKey, ik);
      t.same(bundle.signedPreKey, spk);
      t.ok(bundle.oneTimePreKey);

      const all = await fetch(`${base}/keys/${bob}`, { headers: await auth(alice) });
      const devices = ((await all.json()) as { devices: { device: string; oneTimePreKey: unknown }[] }).devices;
      t.same(devices.map((d) => d.device).sort(), ['laptop', 'phone']);

      // 3 of phone's 5 are left; 20 concurrent fetches get exactly those 3, once each.
      const got = await Promise.all(
        Array.from({ length: 20 }, async () => ((await (await fetch(`${base}/keys/${bob}/phone`, { headers: await auth(carol) })).json()) as typeof bundle).oneTimePreKey?.keyId ?? null),
      );
      const ids = got.filter((x): x is number => x !== null);
      t.equal(ids.length, 3, 'the remaining one-time prekeys were handed out');
      t.equal(new Set(ids).size, 3, 'each exactly once');
      t.notOk(ids.includes(bundle.oneTimePreKey!.keyId), 'never the one handed out before');

      const status = await fetch(`${base}/keys`, { headers: await auth(bob, 'phone') });
      t.same(await status.json(), { oneTimeCount: 0, low: true, lowThreshold: 3 }, 'the device is told to upload more');
      await waitUntil(() => phone.frames.some((f) => f.t === 'keys.low'), 'a keys.low frame on bob/phone');
      const low = phone.frames.filter((f) => f.t === 'keys.low') as { remaining: number; threshold: number }[];
      t.ok(low.every((f) => f.threshold === 3 && f.remaining < 3), `keys.low frames name the count below the threshold: ${JSON.stringify(low)}`);
      t.ok(low.length <= 2, 'at most one frame per device per thread in the interval (2 threads), not one per fetch');
      const metrics = await node.metrics();
      t.match(metrics, /ticks_keys_low_signals_total \d+/);

      t.equal((await fetch(`${base}/keys/${bob}/phone`)).status, 401, 'no token: 401');
      t.equal((await fetch(`${base}/keys/${carol}/phone`, { headers: await auth(alice) })).status, 404, 'no published keys: 404');
      t.equal((await put(bob, 'phone', { identityKey: ik, signedPreKey: spk, oneTimePreKeys: keys(100, 21) })).status, 400, 'more than maxPerUpload: 400');
      t.equal((await put(bob, 'phone', { identityKey: 'not base64!', signedPreKey: spk })).status, 400, 'bad base64: 400');
      t.equal((await put(bob, 'phone', { identityKey: ik, signedPreKey: spk, extra: 1 })).status, 400, 'unknown field: 400');
      await put(bob, 'phone', { identityKey: ik, signedPreKey: spk, oneTimePreKeys: keys(200, 20) });
      const full = await put(bob, 'phone', { identityKey: ik, signedPreKey: spk, oneTimePreKeys: keys(300, 11) });
      t.equal(full.status, 409, 'over maxOneTimePreKeys: 409');
      t.equal(((await full.json()) as { error: string }).error, 'keys.too_many');
    });

    t.test('prekey bundle fetches are rate limited per user (keys.fetchPerMinute)', async (t) => {
      // 40 per minute per shard thread here (no Redis): over 2 threads, 81 requests must hit a 429.
      const dave = user('dave');
      const headers = await auth(dave);
      const statuses: number[] = [];
      let limited: Response | undefined;
      while (statuses.length < 200 && limited === undefined) {
        const r = await fetch(`${base}/keys/${user('nobody')}`, { headers });
        statuses.push(r.status);
        if (r.status === 429) limited = r;
        else await r.arrayBuffer();
      }
      t.ok(limited, `a 429 came after ${statuses.length} requests`);
      t.ok(statuses.indexOf(429) >= 40, 'the first 40 fetches were not limited');
      t.ok(statuses.slice(0, statuses.indexOf(429)).every((s) => s === 404), 'until then each was answered (404: nobody published keys)');
      const retryAfter = Number(limited!.headers.get('retry-after'));
      t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After is the rest of the minute: ${retryAfter}`);
      const err = (await limited!.json()) as { error: string; message: string };
      t.equal(err.error, 'keys.rate_limited');
      t.match(err.message, /more than 40 prekey bundle fetches/);
      // Another user is not affected.
      t.equal((await fetch(`${base}/keys/${user('nobody')}`, { headers: await auth(user('erin')) })).status, 404);
      t.match(await node.metrics(), /ticks_keys_fetch_limited_total [1-9]/);
    });

    t.test('DELETE /devices/:device removes the device, its push token and its prekeys', async (t) => {
      const frank = user('frank');
      const b64 = (n = 32): string => randomBytes(n).toString('base64');
      const spk = { keyId: 1, publicKey: b64(), signature: b64(64) };
      for (const device of ['phone', 'laptop']) {
        const put = await fetch(`${base}/keys`, {
          method: 'PUT',
          body: JSON.stringify({ identityKey: b64(), signedPreKey: spk, oneTimePreKeys: [{ keyId: 1, publicKey: b64() }] }),
          headers: { ...(await auth(frank, device)), 'content-type': 'application/json' },
        });
        t.equal(put.status, 200);
        const token = await fetch(`${base}/push-token`, {
          method: 'PUT',
          body: JSON.stringify({ provider: 'log', token: `tok-${device}` }),
          headers: { ...(await auth(frank, device)), 'content-type': 'application/json' },
        });
        t.equal(token.status, 204);
      }
      const store = createStore(config.store);
      await store.open();
      t.teardown(() => store.close());
      t.same((await store.listDevices(frank)).map((d) => [d.deviceId, d.pushToken]).sort(), [['laptop', 'tok-laptop'], ['phone', 'tok-phone']]);

      // The phone removes the lost laptop.
      const del = await fetch(`${base}/devices/laptop`, { method: 'DELETE', headers: await auth(frank, 'phone') });
      t.equal(del.status, 204);
      t.same((await store.listDevices(frank)).map((d) => [d.deviceId, d.pushToken]), [['phone', 'tok-phone']], 'the device and its push token are gone');
      t.equal((await fetch(`${base}/keys/${frank}/laptop`, { headers: await auth(alice) })).status, 404, 'its prekeys are gone');
      const bundles = (await (await fetch(`${base}/keys/${frank}`, { headers: await auth(alice) })).json()) as { devices: { device: string }[] };
      t.same(bundles.devices.map((d) => d.device), ['phone'], 'only the remaining device is offered to new sessions');
      t.equal((await fetch(`${base}/devices/laptop`, { method: 'DELETE', headers: await auth(frank, 'phone') })).status, 204, 'idempotent');
      t.equal((await fetch(`${base}/devices/laptop`, { method: 'DELETE' })).status, 401, 'no token: 401');
      t.equal((await fetch(`${base}/devices/${'x'.repeat(300)}`, { method: 'DELETE', headers: await auth(frank, 'phone') })).status, 400, 'malformed device id: 400');
      // Only the caller's own user: another user naming frank's device id removes their own (absent) one.
      t.equal((await fetch(`${base}/devices/phone`, { method: 'DELETE', headers: await auth(user('gina'), 'tablet') })).status, 204);
      t.same((await store.listDevices(frank)).map((d) => d.deviceId), ['phone'], "another user cannot remove frank's devices");
    });

    t.test('uploads beyond maxConcurrentUploads per thread get 503 media.busy', async (t) => {
      // Three stalled uploads over two shard threads: one thread holds two, and its second is refused.
      const socks = await Promise.all([0, 1, 2].map(() => stalledUpload(node.port, token(alice))));
      await new Promise((r) => setTimeout(r, 300));
      const answers = socks.map((s) => s.data());
      for (const s of socks) s.sock.destroy();
      const busy = answers.filter((a) => /^HTTP\/1\.1 503/.test(a));
      t.ok(busy.length >= 1, `at least one of 3 stalled uploads was refused: ${answers.map((a) => a.split('\r\n')[0] || '(waiting)').join(', ')}`);
      t.ok(busy.every((a) => a.includes('media.busy') && /retry-after: 1/i.test(a)));
      t.ok(answers.some((a) => a === ''), 'the first upload on each thread is still being received');
      await new Promise((r) => setTimeout(r, 300)); // the server sees the hang-ups and frees the slots
      t.equal((await upload(alice, png(3000))).status, 201, 'slots are freed when clients hang up');
    });

    t.test('metrics name the media outcomes', async (t) => {
      const m = await node.metrics();
      t.match(m, /ticks_media_uploads_total\{outcome="created"\} \d+/);
      t.match(m, /ticks_media_uploads_total\{outcome="too_large"\} \d+/);
      t.match(m, /ticks_media_downloads_total\{outcome="ok"\} \d+/);
      t.match(m, /ticks_media_urls_total\{outcome="not_member"\} \d+/);
    });
  });
}

/**
 * POST /media over a raw socket: declares `declared` bytes, writes `body` (fewer), then waits for the
 * answer without sending the rest. Resolves with the response text (or what arrived before close).
 */
function rawUpload(port: number, token: string, declared: number, body: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within 10 s; got ${JSON.stringify(data)}`));
    }, 10_000);
    sock.on('data', (d) => {
      data += d.toString('latin1');
      if (data.includes('\r\n\r\n')) {
        clearTimeout(timer);
        sock.destroy();
        resolve(data);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    sock.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${declared}\r\n\r\n`);
    sock.write(body);
  });
}

/** Starts an upload that declares 100 KiB and sends 10 bytes, then stalls; `data()` is what came back so far. */
async function stalledUpload(port: number, tokenP: Promise<string>): Promise<{ sock: ReturnType<typeof connect>; data: () => string }> {
  const token = await tokenP;
  return new Promise((resolve) => {
    let data = '';
    const sock = connect(port, '127.0.0.1', () => {
      sock.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${100 * KiB}\r\n\r\n0123456789`);
      resolve({ sock, data: () => data });
    });
    sock.on('data', (d) => (data += d.toString('latin1')));
    sock.on('error', () => undefined);
  });
}
