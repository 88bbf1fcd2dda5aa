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
});

export type Config = z.infer<typeof configSchema>;
export type StoreConfig = Config['store'];
export type GatewayConfig = Config['gateway'];
export type AuthConfig = Config['auth'];
export type ActorsConfig = Config['actors'];
