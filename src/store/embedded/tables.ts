/**
 * Opens the lmdb environment and its named tables, and defines the context every engine operation
 * runs with.
 */
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { TABLES } from './keys.js';
import type {
  ConversationRow,
  DepartureRow,
  DeviceRow,
  IdempotencyRow,
  LogState,
  MemberRow,
  MessageRow,
  UserConversationRow,
} from './records.js';

export interface Tables {
  readonly root: RootDatabase;
  readonly meta: Database<unknown, string>;
  readonly conversations: Database<ConversationRow, string>;
  readonly logs: Database<LogState, string>;
  readonly members: Database<MemberRow, Key>;
  readonly userConversations: Database<UserConversationRow, Key>;
  readonly departures: Database<DepartureRow, Key>;
  readonly departuresExpiry: Database<1, Key>;
  readonly messages: Database<MessageRow, Key>;
  readonly idempotency: Database<IdempotencyRow, Key>;
  readonly idempotencyExpiry: Database<1, Key>;
  readonly delivered: Database<number, Key>;
  readonly read: Database<number, Key>;
  readonly devices: Database<DeviceRow, Key>;
}

/** What operations need besides the tables; fixed for the life of one open store. */
export interface EngineContext {
  readonly tables: Tables;
  readonly bucketSize: number;
  readonly idempotencyTtlMs: number;
  /** How long a departure is kept (its row's expiresAtMs is written from it). */
  readonly departuresRetentionMs: number;
  readonly now: () => number;
}

export function openTables(path: string): Tables {
  const root = open({
    path,
    // Durability: with lmdb-js's default overlappingSync (on for Linux), a commit's promise resolves
    // when the commit is visible, before it is flushed. Turned off, every commit fsyncs before its
    // promise resolves, which is what "resolved means durable" requires. Throughput comes from lmdb
    // batching all transactions queued in one event turn into a single synced commit.
    overlappingSync: false,
    noSync: false,
    noMetaSync: false,
    maxDbs: 32,
    // Plain msgpack maps: each value is self-describing, with no shared record structures stored
    // beside the data that a future version would have to keep compatible.
    useRecords: false,
  } as Parameters<typeof open>[0] & { useRecords: boolean });
  try {
    const table = <V>(name: string): Database<V, Key> => root.openDB<V, Key>({ name });
    return {
      root,
      meta: table<unknown>(TABLES.meta) as Database<unknown, string>,
      conversations: table<ConversationRow>(TABLES.conversations) as Database<ConversationRow, string>,
      logs: table<LogState>(TABLES.logs) as Database<LogState, string>,
      members: table<MemberRow>(TABLES.members),
      userConversations: table<UserConversationRow>(TABLES.userConversations),
      departures: table<DepartureRow>(TABLES.departures),
      departuresExpiry: table<1>(TABLES.departuresExpiry),
      messages: table<MessageRow>(TABLES.messages),
      idempotency: table<IdempotencyRow>(TABLES.idempotency),
      idempotencyExpiry: table<1>(TABLES.idempotencyExpiry),
      delivered: table<number>(TABLES.delivered),
      read: table<number>(TABLES.read),
      devices: table<DeviceRow>(TABLES.devices),
    };
  } catch (err) {
    void root.close().catch(() => undefined);
    throw err;
  }
}
