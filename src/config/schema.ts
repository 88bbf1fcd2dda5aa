import { z } from 'zod';

/**
 * The one definition of every configuration key: type, limits, default and description.
 * `config/default.json` and `TICKS_*` environment variables are layered over these defaults and the
 * result is validated here (src/config/load.ts). docs/CONFIG.md is generated from the descriptions.
 */

const consistency = z.enum(['one', 'two', 'three', 'quorum', 'all', 'localQuorum', 'eachQuorum', 'localOne']);

const storeSchema = z.strictObject({
  engine: z
    .enum(['embedded', 'scylla'])
    .default('embedded')
    .describe('Message store engine: embedded (lmdb on local disk) or scylla (ScyllaDB / Cassandra cluster).'),
  bucketSize: z
    .number().int().min(1).max(1_000_000)
    .default(1000)
    .describe('Messages per (conversation, bucket) partition; bounds partition size. Never change it on existing data.'),
  idempotencyTtlMs: z
    .number().int().min(60_000)
    .default(7 * 24 * 3600 * 1000)
    .describe('How long a (conversation, sender device, client message id) is remembered for idempotent retries.'),
  embedded: z
    .object({
      path: z.string().min(1).default('./data/store').describe('Directory of the embedded lmdb store.'),
      groupCommit: z
        .enum(['engine', 'writer'])
        .default('engine')
        .describe('Group commit of the embedded store: engine (appends of all conversations queued while one transaction is in flight share the next transaction and fsync) or writer (per conversation; the earlier behaviour, kept for comparison).'),
    })
    .prefault({}),
  scylla: z
    .object({
      contactPoints: z
        .array(z.string().min(1)).min(1)
        .default(['127.0.0.1:9042'])
        .describe('host:port of ScyllaDB nodes (comma-separated in the environment).'),
      localDataCenter: z.string().min(1).default('datacenter1').describe('Data centre the driver treats as local.'),
      keyspace: z
        .string().regex(/^[a-z][a-z0-9_]{0,47}$/, 'lower-case letters, digits and _, at most 48, starting with a letter')
        .default('ticks')
        .describe('Keyspace; created at start when missing.'),
      replication: z
        .record(z.string(), z.string())
        .default({ class: 'SimpleStrategy', replication_factor: '1' })
        .describe('Replication map for CREATE KEYSPACE (JSON in the environment), e.g. {"class":"NetworkTopologyStrategy","dc1":"3"}.'),
      readConsistency: consistency.default('localQuorum').describe('Consistency level of reads.'),
      writeConsistency: consistency.default('localQuorum').describe('Consistency level of writes.'),
      serialConsistency: z.enum(['serial', 'localSerial']).default('localSerial').describe('Consistency of lightweight transactions (fencing).'),
      requestTimeoutMs: z.number().int().min(100).default(5000).describe('Per-request client timeout.'),
      connectTimeoutMs: z.number().int().min(100).default(5000).describe('Connection timeout.'),
      username: z.string().optional().describe('Username for password authentication.'),
      password: z.string().optional().describe('Password for password authentication.'),
    })
    .prefault({}),
});

const gatewaySchema = z.strictObject({
  host: z.string().default('127.0.0.1').describe('Address the WebSocket/HTTP port binds to (0.0.0.0 for all).'),
  port: z.number().int().min(0).max(65535).default(8080).describe('Port shared by every shard thread (SO_REUSEPORT).'),
  shards: z.number().int().min(0).max(256).default(0).describe('Shard threads per node; 0 means one per CPU core.'),
  maxFrameBytes: z.number().int().min(256).max(16 * 1024 * 1024).default(64 * 1024).describe('Largest client frame accepted; bigger frames close the socket with 4505.'),
  maxBodyBytes: z.number().int().min(1).max(16 * 1024 * 1024).default(48 * 1024).describe('Largest message body; bigger ones get an error frame body_too_large.'),
  framesPerSecond: z.number().int().min(1).default(50).describe('Sustained client frames per second per connection (token bucket, burst = 2x); excess gets rate_limited, sustained abuse closes with 4003.'),
  idleTimeoutS: z.number().int().min(8).max(960).default(60).describe('Close a connection silent for this long (uWS sends pings automatically before that).'),
  maxBackpressureBytes: z.number().int().min(1024).default(1024 * 1024).describe('Bytes buffered for a slow reader before it is closed with 4001.'),
  maxConnections: z.number().int().min(1).default(1_000_000).describe('Connections per node; further upgrades are refused with HTTP 503.'),
  drainTimeoutMs: z.number().int().min(100).default(10_000).describe('How long SIGTERM waits for in-flight commits before exiting anyway.'),
});

const authSchema = z.strictObject({
  algorithms: z
    .array(z.enum(['EdDSA', 'ES256', 'HS256'])).min(1)
    .default(['EdDSA', 'ES256', 'HS256'])
    .describe('JWT algorithm allow-list; anything else is rejected.'),
  issuer: z.string().min(1).default('ticks').describe('Required `iss` claim.'),
  audience: z.string().min(1).default('ticks').describe('Required `aud` claim.'),
  hs256Secret: z.string().min(32).optional().describe('Shared secret for HS256 tokens (at least 32 characters).'),
  publicKeys: z
    .array(z.string().min(1))
    .default([])
    .describe('PEM (SPKI) public keys for EdDSA/ES256 tokens; a token verifies if any key of its algorithm accepts it.'),
  deviceClaim: z.string().min(1).default('dev').describe('Claim that names the device (the user is `sub`).'),
  clockToleranceS: z.number().int().min(0).max(300).default(5).describe('Allowed clock skew for exp/nbf.'),
  maxTokenLifetimeS: z.number().int().min(1).max(365 * 86_400).default(30 * 86_400).describe('Longest token lifetime accepted, in seconds (default 30 days): a token must carry iat, not in the future (beyond clockToleranceS), and exp - iat at most this; others are refused (close 4500, HTTP 401 auth.lifetime). It bounds how long a removed device\'s tombstone is needed: tombstones are dropped this plus clockToleranceS after the removal.'),
  devTokens: z
    .boolean()
    .default(false)
    .describe('Local development: when no hs256Secret is set, generate one in <dataDir>/dev-secret so `ticks token` can mint tokens. Never enable in production.'),
  verifyThreads: z.number().int().min(1).max(64).default(1).describe('piscina threads for public-key token verification.'),
});

const actorsSchema = z.strictObject({
  mailboxCapacity: z.number().int().min(16).default(10_000).describe('Messages an actor mailbox holds; a full mailbox rejects new work with an error, never drops silently.'),
  turnBudget: z.number().int().min(1).default(64).describe('Messages an actor processes per turn before yielding to others.'),
  idlePassivateMs: z.number().int().min(1000).default(5 * 60_000).describe('An actor idle this long is passivated (state dropped, reloaded on next use).'),
  maxCommitBatch: z.number().int().min(1).max(1000).default(256).describe('Messages per group commit.'),
  deliveryRetryMs: z.number().int().min(50).default(2000).describe('First retry of an unacknowledged delivery; doubles each time.'),
  deliveryMaxRetries: z.number().int().min(0).default(5).describe('Retries before a device that never acks is disconnected (4001) to resync.'),
  cursorFlushMs: z.number().int().min(1).default(200).describe('Delivered-cursor writes are batched for this long.'),
  syncPageSize: z.number().int().min(1).max(1000).default(200).describe('Messages per sync.batch frame.'),
});

const clusterSchema = z.strictObject({
  redisUrl: z
    .string()
    .regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')
    .optional()
    .describe('Redis of the cluster (directory, bus, session registry, presence), e.g. redis://10.0.0.5:6379. Unset: embedded mode, one node with the in-memory implementations.'),
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{0,64}$/, 'letters, digits, _ . : - (at most 64)')
    .default('ticks:')
    .describe('Prefix of every Redis key and pub/sub channel of this cluster; nodes of one cluster must share it.'),
  leaseMs: z.number().int().min(200).default(10_000).describe('Directory lease of an actor activation; after a crash (kill -9) another node takes its actors over after at most this long.'),
  heartbeatMs: z.number().int().min(50).default(3_000).describe('How often each shard thread renews its leases and session entries; must be well below leaseMs (at most a third).'),
  sessionTtlMs: z.number().int().min(200).default(30_000).describe('Lifetime of a session registry entry (user, device -> node) without a heartbeat.'),
  sendTimeoutMs: z.number().int().min(500).default(15_000).describe('Cluster mode: a send with no answer after about this long (its owner node died) is answered cluster_unavailable so the client retries it (idempotent).'),
  presenceCap: z.number().int().min(1).max(10_000).default(100).describe('Users (presence) plus conversations (typing) one connection may watch at once; more gets the error too_many_watches.'),
  presenceTtlMs: z.number().int().min(200).default(30_000).describe('Online lease of a user in the presence store, renewed by the heartbeat while a device is connected.'),
});

const MiB = 1024 * 1024;

const mediaSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve the media endpoints (upload, signed download URLs; see docs/HTTP.md).'),
  blobStore: z
    .enum(['disk', 's3'])
    .default('disk')
    .describe('Where media bytes live: disk (under media.diskPath, one node) or s3 (an S3-compatible bucket shared by the cluster).'),
  diskPath: z.string().min(1).optional().describe('Directory of the disk blob store and of the embedded media index; default <dataDir>/media.'),
  s3: z
    .object({
      endpoint: z.string().url().optional().describe('Endpoint URL of an S3-compatible server (MinIO, Ceph, s3proxy, ...); unset means AWS S3 in media.s3.region.'),
      region: z.string().min(1).default('us-east-1').describe('S3 region (any value for most S3-compatible servers).'),
      bucket: z
        .string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: lower-case letters, digits, . and -, 3 to 63')
        .default('ticks-media')
        .describe('Bucket of the media blobs.'),
      prefix: z.string().regex(/^[A-Za-z0-9_.\/-]{0,200}$/, 'letters, digits, _ . / -').default('media/').describe('Key prefix of the blobs in the bucket.'),
      accessKeyId: z.string().min(1).optional().describe('Access key id; unset uses the AWS SDK default credential chain.'),
      secretAccessKey: z.string().min(1).optional().describe('Secret access key (with accessKeyId).'),
      forcePathStyle: z.boolean().default(true).describe('Path-style URLs (http://host/bucket/key); most S3-compatible servers need it.'),
      createBucket: z.boolean().default(false).describe('Create the bucket at start when it is missing (development and tests).'),
    })
    .prefault({}),
  maxBytes: z
    .object({
      image: z.number().int().min(1).default(16 * MiB).describe('Largest image upload in bytes (image/*).'),
      video: z.number().int().min(1).default(64 * MiB).describe('Largest video upload in bytes (video/*).'),
      audio: z.number().int().min(1).default(16 * MiB).describe('Largest audio upload in bytes (audio/*).'),
      document: z.number().int().min(1).default(100 * MiB).describe('Largest upload of any other allowed type in bytes.'),
    })
    .prefault({}),
  allowedTypes: z
    .array(z.string().min(1)).min(1)
    .default([
      'image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/heic', 'image/avif',
      'video/mp4', 'video/quicktime', 'video/webm',
      'audio/mpeg', 'audio/mp4', 'audio/x-m4a', 'audio/aac', 'audio/ogg', 'audio/ogg; codecs=opus', 'audio/wav', 'audio/amr',
      'application/pdf',
    ])
    .describe('MIME types accepted, as detected from the content\'s magic bytes (file-type), never from the client. Others get 415.'),
  urlSecret: z
    .string().min(32).optional()
    .describe('HMAC secret of signed download URLs (at least 32 characters; the same on every node). Unset: derived from the HS256 secret (auth.hs256Secret or the dev secret); with neither, download URLs are refused (503).'),
  urlTtlS: z.number().int().min(10).max(7 * 24 * 3600).default(3600).describe('Lifetime of a signed download URL in seconds.'),
  hashInlineMaxBytes: z
    .number().int().min(0).default(MiB)
    .describe('Uploads up to this size are hashed (SHA-256) on the shard thread; larger ones are spooled to a temp file and hashed on a piscina thread, so the shard never stalls.'),
  hashThreads: z.number().int().min(1).max(16).default(1).describe('piscina threads per shard for hashing large uploads.'),
  maxConcurrentUploads: z.number().int().min(1).default(64).describe('Uploads one shard thread accepts at once (each may hold up to hashInlineMaxBytes in memory); more get 503 media.busy with Retry-After.'),
});

const keysSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve the prekey directory endpoints (/keys; see docs/HTTP.md).'),
  maxOneTimePreKeys: z.number().int().min(1).max(100_000).default(1000).describe('One-time prekeys one device may have stored; an upload beyond it gets 409.'),
  maxPerUpload: z.number().int().min(1).max(1000).default(100).describe('One-time prekeys per PUT /keys request.'),
  lowThreshold: z.number().int().min(0).default(10).describe('Below this many one-time prekeys left, the device is told to upload more (low: true in its own answers, and a keys.low frame on its live WebSocket).'),
  fetchPerMinute: z
    .number()
    .int()
    .min(1)
    .default(1000)
    .describe('Prekey bundle requests (GET /keys/:user, GET /keys/:user/:device) one user may make per minute (fixed one-minute windows; cluster-wide with cluster.redisUrl, else per shard thread); more get 429 keys.rate_limited with Retry-After. Joining a large group fetches one bundle set per member, so keep it above groups.maxMembers.'),
});

const pushSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Send content-free push notifications (a wake-up with the unread badge) to users with no online device, through the provider each device registered with.'),
  collapseWindowMs: z.number().int().min(1000).default(10_000).describe('Pushes to one user are collapsed per window of this length: at most one at the first message and one at the window end.'),
  concurrency: z.number().int().min(1).max(256).default(16).describe('Push jobs one shard thread sends at once.'),
  attempts: z.number().int().min(1).max(20).default(5).describe('Tries of a push job; devices that failed transiently are retried with exponential backoff.'),
  backoffMs: z.number().int().min(100).default(2000).describe('First retry delay of a push job; doubles each retry.'),
  timeoutMs: z.number().int().min(500).default(10_000).describe('Timeout of one request to a push provider.'),
  log: z
    .object({
      enabled: z.boolean().default(true).describe('Log provider: devices registered with provider `log` get their pushes written to the log (development).'),
    })
    .prefault({}),
  apns: z
    .object({
      url: z.string().regex(/^https:\/\//, 'an https:// URL').default('https://api.push.apple.com').describe('APNs endpoint (https://api.sandbox.push.apple.com for development builds).'),
      keyFile: z.string().min(1).optional().describe('Path of the APNs token-auth signing key (.p8). APNs is enabled when this is set.'),
      keyId: z.string().regex(/^[A-Z0-9]{10}$/, '10 upper-case letters or digits').optional().describe('Key id of the .p8 key (required with keyFile).'),
      teamId: z.string().regex(/^[A-Z0-9]{10}$/, '10 upper-case letters or digits').optional().describe('Apple developer team id (required with keyFile).'),
      topic: z.string().min(1).optional().describe('apns-topic: the app bundle id (required with keyFile).'),
      pushType: z.enum(['alert', 'background']).default('alert').describe('alert: a visible notification with a localized, content-free text; background: a silent wake-up.'),
      alertLocKey: z.string().min(1).default('TICKS_NEW_MESSAGES').describe('Localization key of the alert text, resolved by the app.'),
      ttlS: z.number().int().min(0).default(86_400).describe('apns-expiration: how long APNs keeps trying an offline device.'),
      tokenRefreshMs: z.number().int().min(20 * 60_000).max(60 * 60_000).default(50 * 60_000).describe('The provider JWT is re-signed after this long (Apple accepts 20 to 60 minutes).'),
    })
    .prefault({}),
  fcm: z
    .object({
      serviceAccountFile: z.string().min(1).optional().describe('Path of the Google service-account key (JSON) with the Firebase messaging role. FCM is enabled when this is set.'),
      baseUrl: z.string().regex(/^https?:\/\//, 'an http(s):// URL').default('https://fcm.googleapis.com').describe('FCM HTTP v1 endpoint.'),
      tokenUrl: z.string().regex(/^https?:\/\//, 'an http(s):// URL').optional().describe('OAuth2 token endpoint; defaults to the service account\'s token_uri.'),
    })
    .prefault({}),
  webpush: z
    .object({
      vapidPublicKey: z.string().min(1).optional().describe('VAPID public key (URL-safe base64). Web Push is enabled when both VAPID keys are set.'),
      vapidPrivateKey: z.string().min(1).optional().describe('VAPID private key (URL-safe base64).'),
      subject: z.string().regex(/^(mailto:|https:\/\/)/, 'a mailto: or https:// URL').default('mailto:ops@example.com').describe('VAPID subject: how the push service reaches the operator.'),
      ttlS: z.number().int().min(0).default(86_400).describe('How long the push service keeps a notification for an offline browser.'),
    })
    .prefault({}),
  webhook: z
    .object({
      url: z.string().regex(/^https?:\/\//, 'an http(s):// URL').optional().describe('Webhook provider: POST each push as JSON here, signed with x-ticks-signature. Enabled when set.'),
      secret: z.string().min(32).optional().describe('HMAC-SHA256 key of the webhook signature (at least 32 characters; required with url).'),
    })
    .prefault({}),
});

const jobsSchema = z.strictObject({
  flushInlineMaxMessages: z.number().int().min(0).default(500).describe('A reconnecting device missing at most this many messages catches up at once; a larger backlog waits for a flush permit.'),
  flushMaxPerWindow: z.number().int().min(1).default(200).describe('Offline flushes (large catch-ups) allowed to start per flushWindowMs, over the whole cluster (embedded: per node).'),
  flushWindowMs: z.number().int().min(10).default(1000).describe('Window of the offline flush rate limit.'),
  flushMaxWaitMs: z.number().int().min(1000).default(30_000).describe('A catch-up that waited this long for its permit is answered with a retryable error instead.'),
});

const groupsSchema = z.strictObject({
  maxMembers: z.number().int().min(2).max(100_000).default(1024).describe('Most members of a group (fan-out on write to every member device); adding more answers group_full. Channels have no limit.'),
  fanoutWindowMs: z.number().int().min(0).max(1000).default(0).describe('A group\'s deliveries go to its members at most once per this many ms: a message after a quiet window goes out at once, later ones within the window are held and go together at its end (one deliver per member and one socket write per device for all of them). Adds at most this much latency, and only to groups busier than one message per window. Measured (bench/RESULTS.md, session 5): 100 ms cut node CPU per delivery to 0.67x for a 1,024-member group at 80 msgs/s (p99 +80 ms); 20 ms made no measurable difference. 0: every group commit is fanned out when it completes.'),
  channelPublishWindowMs: z.number().int().min(0).max(1000).default(0).describe('Live channel posts are held up to this long per shard thread and written together (one socket write per subscriber per window instead of per post batch): fewer writes at high post rates, for that much added latency. 0: posts go out in the event-loop turn they arrive in.'),
});

const retentionSchema = z.strictObject({
  departuresS: z
    .number().int().min(1).max(3650 * 86_400)
    .default(90 * 86_400)
    .describe('Seconds a departure (a user removed from or leaving a group or channel) is kept so that the user\'s devices whose cursor is below it learn the removal through sync (synced.left); default 90 days. After it, a device offline longer than this only sees the conversation gone from its sync. Scylla rows carry it as a TTL fixed when written (a change applies to later departures); embedded rows are swept.'),
});

export const configSchema = z.strictObject({
  nodeId: z
    .string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1 to 64)')
    .optional()
    .describe('Stable name of this node in the cluster; defaults to host name and pid.'),
  log: z
    .object({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info').describe('Minimum log level.'),
    })
    .prefault({}),
  dataDir: z.string().min(1).default('./data').describe('Directory for local state (dev secret, media in embedded mode).'),
  store: storeSchema.prefault({}),
  gateway: gatewaySchema.prefault({}),
  auth: authSchema.prefault({}),
  actors: actorsSchema.prefault({}),
  groups: groupsSchema.prefault({}),
  push: pushSchema.prefault({}),
  jobs: jobsSchema.prefault({}),
  media: mediaSchema.prefault({}),
  keys: keysSchema.prefault({}),
  cluster: clusterSchema.prefault({}),
  retention: retentionSchema.prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type StoreConfig = Config['store'];
export type GatewayConfig = Config['gateway'];
export type AuthConfig = Config['auth'];
export type ActorsConfig = Config['actors'];
export type GroupsConfig = Config['groups'];
export type MediaConfig = Config['media'];
export type KeysConfig = Config['keys'];
export type ClusterConfig = Config['cluster'];
export type PushConfig = Config['push'];
export type JobsConfig = Config['jobs'];
export type RetentionConfig = Config['retention'];
