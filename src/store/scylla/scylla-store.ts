import cassandra from 'cassandra-driver';
import { StoreError } from '../errors.js';
import { instrument, type StoreOp } from '../metrics.js';
import type { ScyllaStoreOptions } from '../options.js';
import type { ConversationWriter, Store } from '../store.js';
import type {
  Conversation,
  CursorEntry,
  CursorUpdate,
  Device,
  Departure,
  Member,
  Page,
  PushProvider,
  Role,
  UserConversation,
} from '../types.js';
import { Conversations, type CreateConversationInput } from './conversations.js';
import { statements } from './cql.js';
import { Cursors } from './cursors.js';
import { Devices } from './devices.js';
import { wrapDriverError } from './errors.js';
import { History } from './history.js';
import { MessageLog, RETIRED_EPOCH, staleEpoch } from './log.js';
import { migrate, validateKeyspace } from './migrations.js';
import { Session } from './session.js';
import { invalid, num, requireId } from './values.js';
import { ScyllaWriter } from './writer.js';

interface Parts {
  session: Session;
  log: MessageLog;
  conversations: Conversations;
  history: History;
  cursors: Cursors;
  devices: Devices;
}

/**
 * The `scylla` engine: cassandra-driver against ScyllaDB in production, Apache Cassandra 5 in tests.
 * Schema and the reasoning behind it: cql.ts (tables, custom timestamps), log.ts and writer.ts
 * (buckets, fencing, idempotency), history.ts (reads, retention).
 */
export class ScyllaStore implements Store {
  readonly engine = 'scylla' as const;
  private parts: Parts | null = null;

  constructor(private readonly opts: ScyllaStoreOptions) {}

  open(): Promise<void> {
    return instrument('scylla', 'open', wrapDriverError, async () => {
      if (this.parts) return;
      const opts = this.opts;
      validateOptions(opts);
      const client = new cassandra.Client({
        contactPoints: opts.contactPoints,
        localDataCenter: opts.localDataCenter,
        ...(opts.username !== undefined ? { credentials: { username: opts.username, password: opts.password ?? '' } } : {}),
        socketOptions: { connectTimeout: opts.connectTimeoutMs, readTimeout: opts.requestTimeoutMs },
        protocolOptions: { maxSchemaAgreementWaitSeconds: 30 },
      });
      const session = new Session(client, statements(opts.keyspace), opts);
      try {
        await client.connect();
        await migrate(session);
      } catch (err) {
        session.closed = true;
        await client.shutdown().catch(() => undefined);
        throw err;
      }
      const log = new MessageLog(session);
      this.parts = {
        session,
        log,
        conversations: new Conversations(session),
        history: new History(session, log),
        cursors: new Cursors(session),
        devices: new Devices(session),
      };
    });
  }

  async close(): Promise<void> {
    const parts = this.parts;
    if (!parts) return;
    this.parts = null;
    parts.session.closed = true; // writers and in-flight requests now fail with store.unavailable
    try {
      await parts.session.client.shutdown();
    } catch (err) {
      throw wrapDriverError(err);
    }
  }

  // ---- conversations and membership

  createConversation(input: CreateConversationInput): Promise<{ created: boolean; conversation: Conversation }> {
    return this.op('create_conversation', (p) => p.conversations.create(input));
  }
  getConversation(id: string): Promise<Conversation | null> {
    return this.op('get_conversation', (p) => p.conversations.get(id));
  }
  updateConversationMeta(id: string, meta: Record<string, string>): Promise<void> {
    return this.op('update_conversation_meta', (p) => p.conversations.updateMeta(id, meta));
  }
  putMember(conversationId: string, userId: string, role: Role, joinedAtMs: number, fromSeq = 0): Promise<void> {
    return this.op('put_member', (p) => p.conversations.putMember(conversationId, userId, role, joinedAtMs, fromSeq));
  }
  removeMember(conversationId: string, userId: string, departure?: { fromSeq: number; leftSeq: number }): Promise<void> {
    return this.op('remove_member', (p) => p.conversations.removeMember(conversationId, userId, departure));
  }
  listDepartures(userId: string): Promise<Departure[]> {
    return this.op('list_departures', (p) => p.conversations.listDepartures(userId));
  }
  getMember(conversationId: string, userId: string): Promise<Member | null> {
    return this.op('get_member', (p) => p.conversations.getMember(conversationId, userId));
  }
  listMembers(conversationId: string, opts?: { afterUserId?: string; limit?: number }): Promise<Member[]> {
    return this.op('list_members', (p) => p.conversations.listMembers(conversationId, opts));
  }
  listUserConversations(userId: string): Promise<UserConversation[]> {
    return this.op('list_user_conversations', (p) => p.conversations.listForUser(userId));
  }

  // ---- message log

  /**
   * 1. Raise the conversation epoch by LWT (`IF epoch < e`); a higher one is stale_epoch, equal is a
   *    re-open. From here on, a diagnosis of any rejected older batch reports stale_epoch.
   * 2. Walk to the authoritative head from the hint, raising each bucket to `e` BEFORE reading it
   *    (log.ts `scan`), ending on the bucket the next seq goes to, which is raised as well.
   * 3. Raise the hint if the walk found commits it did not cover.
   */
  openWriter(conversationId: string, epoch: number): Promise<ConversationWriter> {
    return this.op('open_writer', async (p) => {
      requireId('conversationId', conversationId);
      if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch >= RETIRED_EPOCH) {
        throw invalid(`epoch must be an integer in [0, ${RETIRED_EPOCH}), got ${String(epoch)}`);
      }
      const s = p.session;
      const rs = await s.lwt(s.cql.raiseConversationEpoch, [epoch, conversationId, epoch]);
      if (!rs.wasApplied()) {
        const current = num(rs.first()?.get('epoch'));
        if (current === null) throw new StoreError('store.not_found', `conversation ${conversationId} does not exist`);
        if (current > epoch) throw staleEpoch(conversationId, epoch);
      }
      const { hint, retainedFrom } = await p.log.pointers(conversationId);
      const found = await p.log.scan(conversationId, Math.max(hint, retainedFrom - 1), epoch, true);
      const writer = new ScyllaWriter(s, p.log, conversationId, epoch, { ...found, hint });
      await writer.publishHead();
      return writer;
    });
  }

  readForward(conversationId: string, afterSeq: number, limit: number): Promise<Page> {
    return this.op('read_forward', (p) => p.history.readForward(conversationId, afterSeq, limit));
  }
  readBackward(conversationId: string, beforeSeq: number, limit: number): Promise<Page> {
    return this.op('read_backward', (p) => p.history.readBackward(conversationId, beforeSeq, limit));
  }
  head(conversationId: string): Promise<number> {
    return this.op('head', (p) => p.history.head(conversationId));
  }
  trimExpired(conversationId: string, olderThanMs: number): Promise<number> {
    return this.op('trim_expired', (p) => p.history.trimExpired(conversationId, olderThanMs));
  }
  retainedFrom(conversationId: string): Promise<number> {
    return this.op('retained_from', (p) => p.history.retainedFrom(conversationId));
  }

  // ---- cursors

  advanceDelivered(updates: CursorUpdate[]): Promise<void> {
    return this.op('advance_delivered', (p) => p.cursors.advanceDelivered(updates));
  }
  getDelivered(userId: string, deviceId: string): Promise<CursorEntry[]> {
    return this.op('get_delivered', (p) => p.cursors.getDelivered(userId, deviceId));
  }
  advanceRead(userId: string, conversationId: string, seq: number): Promise<void> {
    return this.op('advance_read', (p) => p.cursors.advanceRead(userId, conversationId, seq));
  }
  getRead(userId: string): Promise<CursorEntry[]> {
    return this.op('get_read', (p) => p.cursors.getRead(userId));
  }

  // ---- devices

  putDevice(device: Omit<Device, 'pushProvider' | 'pushToken'>): Promise<void> {
    return this.op('put_device', (p) => p.devices.put(device));
  }
  setPushToken(userId: string, deviceId: string, provider: PushProvider | null, token: string | null): Promise<void> {
    return this.op('set_push_token', (p) => p.devices.setPushToken(userId, deviceId, provider, token));
  }
  listDevices(userId: string): Promise<Device[]> {
    return this.op('list_devices', (p) => p.devices.list(userId));
  }
  removeDevice(userId: string, deviceId: string): Promise<void> {
    return this.op('remove_device', (p) => p.devices.remove(userId, deviceId));
  }

  private op<T>(op: StoreOp, fn: (parts: Parts) => Promise<T>): Promise<T> {
    return instrument('scylla', op, wrapDriverError, async () => {
      const parts = this.parts;
      if (!parts) throw new StoreError('store.unavailable', 'scylla store is not open');
      return fn(parts);
    });
  }
}

function validateOptions(opts: ScyllaStoreOptions): void {
  validateKeyspace(opts.keyspace, opts.replication);
  if (!Number.isSafeInteger(opts.bucketSize) || opts.bucketSize < 1) throw invalid(`store.bucketSize must be a positive integer, got ${opts.bucketSize}`);
  if (!(opts.idempotencyTtlMs > 0)) throw invalid(`store.idempotencyTtlMs must be positive, got ${opts.idempotencyTtlMs}`);
  if (!Array.isArray(opts.contactPoints) || opts.contactPoints.length === 0) throw invalid('store.contactPoints must list at least one host');
}
