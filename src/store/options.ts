/**
 * Options shared by both store engines (the validated `store` section of the node config).
 */
export interface StoreCommonOptions {
  /** Messages per (conversation, bucket) partition. Buckets keep partitions bounded. */
  bucketSize: number;
  /** How long an idempotency record (conversation, senderDevice, clientMsgId) is kept. */
  idempotencyTtlMs: number;
  /**
   * How long a departure (Store.removeMember with `departure`) is kept, in seconds; fixed per row
   * when it is written (scylla: its TTL). Default DEFAULT_DEPARTURES_RETENTION_S (config
   * `retention.departuresS`).
   */
  departuresRetentionS?: number;
}

/** 90 days: the default of `retention.departuresS`. */
export const DEFAULT_DEPARTURES_RETENTION_S = 90 * 86_400;

export interface EmbeddedStoreOptions extends StoreCommonOptions {
  /** Directory of the lmdb environment; created when missing. */
  path: string;
  /**
   * `engine` (default): appends of all conversations share engine-wide group commits (one
   * transaction and fsync for many conversations). `writer`: group commit per conversation writer.
   */
  groupCommit?: 'engine' | 'writer';
}

export type Consistency = 'one' | 'two' | 'three' | 'quorum' | 'all' | 'localQuorum' | 'eachQuorum' | 'localOne';
export type SerialConsistency = 'serial' | 'localSerial';

export interface ScyllaStoreOptions extends StoreCommonOptions {
  contactPoints: string[];
  localDataCenter: string;
  keyspace: string;
  /** Replication map for CREATE KEYSPACE, e.g. { class: 'NetworkTopologyStrategy', datacenter1: '3' }. */
  replication: Record<string, string>;
  readConsistency: Consistency;
  writeConsistency: Consistency;
  serialConsistency: SerialConsistency;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  username?: string;
  password?: string;
}
