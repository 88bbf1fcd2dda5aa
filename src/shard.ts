import { MAX_INFLIGHT_REQUESTS } from './protocol/client-frames.js';
import type { MessagePort } from 'node:worker_threads';
import { createShardActors } from './actors/shard-actors.js';
import type { ShardLink } from './actors/shard-link.js';
import { createTokenVerifier } from './auth/token-verifier.js';
import { createTombstones } from './auth/create-tombstones.js';
import { withTombstones } from './auth/tombstones.js';
import { closeDeviceSessions } from './devices-http.js';
import { createShardCluster } from './cluster/create-cluster.js';
import { ClusterRouting } from './cluster/routing.js';
import { ClusterChannels } from './cluster/channel-delivery.js';
import { ClusterPresence } from './cluster/presence-frames.js';
import { ClusterError } from './cluster/errors.js';
import { createPortPresence, createPortSessions, type PresenceChannel } from './cluster/presence/port-presence.js';
import { settingsOf, type VerifyOutcome } from './auth/verify.js';
import { createGateway } from './gateway/gateway.js';
import { createHttpFeatures } from './http-features.js';
import { keysLowNotifier } from './keys/low-signal.js';
import { sendMediaRefs } from './media/send-refs.js';
import { loadUws } from './gateway/uws.js';
import { createLogger } from './lib/log.js';
import { startThreadMetrics, threadMetrics } from './metrics/threads.js';
import { CLOSE } from './protocol/codes.js';
import type { MainToShard, ShardInit, ShardToMain } from './shard-control.js';
import type { SessionRef } from './actors/session.js';
import type { ServerFrame } from './protocol/client-frames.js';
import { createStore } from './store/create-store.js';
import { exactCopy } from './lib/bytes.js';
import { createJobs } from './jobs/create-jobs.js';

/**
 * One shard thread: its own store instance (lmdb allows many threads on one environment; cassandra
 * gets one client per shard), its actors and its gateway on the node's shared port. The logic takes
 * a `Parent` (post + receive) so it runs the same in a worker (src/shard-thread.ts) or in-process.
 */
export interface Parent {
  post(msg: ShardToMain): void;
  onMessage(fn: (msg: MainToShard) => void): void;
}

/** How long a shard waits for the main thread to answer a verify or metrics request. */
const REQUEST_TIMEOUT_MS = 5000;
/** Connection ids of one incarnation start at generation * 2^32 (safe up to 2^21 restarts). */
const CONN_IDS_PER_GENERATION = 2 ** 32;
/**
 * Time between closing sessions (a close frame each) and closing the sockets for good. Clients echo
 * the close frame; a socket closed with that echo still unread is reset, and a reset can destroy the
 * close frame on its way, so the client would see 1006 instead of the documented code.
 */
const CLOSE_GRACE_MS = 250;

export async function runShard(init: ShardInit, parent: Parent): Promise<void> {
  const { config: cfg, index } = init;
  const log = createLogger({ level: cfg.log.level, node: init.nodeId, thread: `shard-${index}` });
  const uws = loadUws();
  startThreadMetrics(String(index));

  let nextReq = 1;
  const waiting = new Map<number, (msg: MainToShard) => void>();
  const request = <T extends MainToShard>(msg: ShardToMain): Promise<T> =>
    new Promise((resolve, reject) => {
      const req = (msg as { req: number }).req;
      const timer = setTimeout(() => {
        waiting.delete(req);
        reject(new Error(`main thread did not answer ${msg.t} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      waiting.set(req, (answer) => {
        clearTimeout(timer);
        resolve(answer as T);
      });
      parent.post(msg);
    });

  // Every verified token is checked against the device tombstones (DELETE /devices/:device): a token
  // issued before its device's removal is refused (4507 / HTTP 401 auth.removed).
  const tombstones = createTombstones(cfg);
  const verify = withTombstones(createTokenVerifier({
    settings: settingsOf(cfg.auth),
    hs256Secret: init.hs256Secret,
    remote: init.publicKeys
      ? async (token): Promise<VerifyOutcome> => {
          const a = await request<Extract<MainToShard, { t: 'verified' }>>({ t: 'verify', req: nextReq++, token });
          if (a.outcome === null) throw new Error(a.error ?? 'verification failed');
          return a.outcome;
        }
      : undefined,
  }), tombstones);

  // Embedded-mode presence goes through the main thread (src/cluster/presence/port-presence.ts).
  let onPresenceFrame: (node: string, bytes: Uint8Array) => void = () => {};
  const presenceChannel: PresenceChannel = {
    call: async (op, args) => {
      let a: Extract<MainToShard, { t: 'presence-result' }>;
      try {
        a = await request<Extract<MainToShard, { t: 'presence-result' }>>({ t: 'presence-call', req: nextReq++, op, args });
      } catch (err) {
        throw new ClusterError('cluster.timeout', (err as Error).message);
      }
      if (a.error !== undefined) throw new ClusterError('cluster.internal', a.error);
      return a.value;
    },
    publish: (node, bytes) => parent.post({ t: 'presence-publish', node, bytes }),
    onFrame: (fn) => {
      onPresenceFrame = fn;
    },
  };
  const store = createStore(cfg.store, cfg.retention);
  await store.open();
  try {
    await tombstones.open();
  } catch (err) {
    await store.close();
    throw err;
  }
  let storeOpen = true;
  // Directory, bus and session registry: Redis when cluster.redisUrl is set, else memory.
  let cluster;
  try {
    cluster = await createShardCluster(cfg.cluster, {
      embeddedPresence: () => createPortPresence(presenceChannel),
      embeddedSessions: () => createPortSessions(presenceChannel),
    });
  } catch (err) {
    await tombstones.close();
    await store.close();
    throw err;
  }
  // Push and offline-flush jobs (src/jobs): BullMQ on the cluster's Redis, else the memory runner.
  let jobs;
  try {
    // A push goes out only when the session registry lists no live device of the user on any node
    // (a user actor only knows the devices of its own node). A lookup failure fails the push job,
    // which is retried with backoff.
    const sessions = cluster.sessions;
    jobs = createJobs({
      config: cfg,
      store,
      log,
      shardCount: init.shardCount,
      name: `${init.nodeId}-${index}`,
      isOnline: async (user) => (await sessions.list(user)).length > 0,
    });
  } catch (err) {
    await cluster.close();
    await tombstones.close();
    await store.close();
    throw err;
  }
  const routing = new ClusterRouting({
    nodeId: init.nodeId,
    shard: index,
    directory: cluster.directory,
    bus: cluster.bus,
    sessions: cluster.sessions,
    heartbeatMs: cfg.cluster.heartbeatMs,
    sessionTtlMs: cfg.cluster.sessionTtlMs,
    singleNode: cluster.impl === 'memory',
    incarnation: init.incarnation,
    // Cluster mode: the fan-out's session lookup decides pushes for users with no device here.
    ...(jobs.push === null || cluster.impl === 'memory' ? {} : { wake: jobs.push }),
    log,
  });
  // Embedded mode: the user actor (which sees every device of the node) decides. Cluster mode: it
  // only asks when its own devices' sockets turned out gone; the routing above decides the rest.
  const push = jobs.push;
  const wake =
    push === null
      ? undefined
      : cluster.impl === 'memory'
        ? push
        : { notify: (user: string, conv: string, seq: number, lost: boolean) => (lost ? push.notify(user, conv, seq) : undefined) };

  // Media and prekey endpoints (docs/HTTP.md): routes mounted now, opened before listening.
  // keys.low frames reach the device's session on any node through the actors' router (bound below).
  const features = createHttpFeatures(cfg, init.hs256Secret, {
    onKeysLow: keysLowNotifier({ sessions: cluster.sessions, push: (s, f) => pushToSession(s, f), threshold: cfg.keys.lowThreshold, log }),
  });
  const gateway = createGateway({
    uws,
    config: cfg.gateway,
    node: init.nodeId,
    shard: index,
    connIdBase: init.generation * CONN_IDS_PER_GENERATION + 1,
    maxConnections: Math.ceil(cfg.gateway.maxConnections / init.shardCount),
    maxInflightRequests: MAX_INFLIGHT_REQUESTS,
    verify,
    clockToleranceS: cfg.auth.clockToleranceS,
    metricsText: async () => {
      const a = await request<Extract<MainToShard, { t: 'metrics-text' }>>({ t: 'metrics-request', req: nextReq++ });
      if (a.text === null) throw new Error(a.error ?? 'metrics unavailable');
      return a.text;
    },
    storeReady: () => storeOpen,
    mountRoutes: (app) =>
      features.mount(app, {
        store,
        verify,
        log,
        devices: {
          tombstones,
          // The router exists once the actors are created (below); routes answer only after listen.
          closeSessions: (user, device) => closeDeviceSessions({ nodeId: init.nodeId, sessions: cluster.sessions, close: (r, c, why) => closeSession(r, c, why) }, user, device),
        },
      }),
    log,
  });

  // The mesh: one MessagePort per peer shard. Frames are copied into an exact-size buffer and that
  // buffer is transferred: the encoder's output is a view into a larger buffer msgpackr keeps
  // encoding into, which structured cloning would copy whole and transferring would detach. The copy
  // must not be `bytes.slice()`: msgpackr returns a Node Buffer, whose slice() is a view of the same
  // memory, so transferring its buffer detached msgpackr's shared one (every encoder of the thread
  // then wrote into, or handed out views of, a detached buffer: garbled frames, "detached
  // ArrayBuffer" store errors). test/unit/shard-link-copy.test.ts.
  const peers = [...init.peers];
  const link: ShardLink = {
    post(shard, bytes) {
      const port = peers[shard];
      if (port === null || port === undefined) return;
      const copy = exactCopy(bytes);
      port.postMessage(copy, [copy.buffer]);
    },
  };
  // Sessions push through the actors' router, which exists once createShardActors returned.
  let pushToSession: (s: SessionRef, f: ServerFrame) => void = () => {};
  let closeSession: (s: SessionRef, code: number, reason: string) => void = () => {};
  const presence = new ClusterPresence({
    nodeId: init.nodeId,
    shard: index,
    presence: cluster.presence,
    sessions: cluster.sessions,
    store,
    push: (s, f) => pushToSession(s, f),
    cap: cfg.cluster.presenceCap,
    onlineTtlMs: cfg.cluster.presenceTtlMs,
    log,
  });
  // Live channel posts: one publish per node with subscribers, then uWS topics (src/cluster/channel-delivery.ts).
  const channels = new ClusterChannels({
    nodeId: init.nodeId,
    shard: index,
    bus: cluster.bus,
    interest: cluster.channels,
    sessions: cluster.sessions,
    store,
    topics: gateway.topics,
    heartbeatMs: cfg.cluster.heartbeatMs,
    ttlMs: cfg.cluster.sessionTtlMs,
    singleNode: cluster.impl === 'memory',
    publishWindowMs: cfg.groups.channelPublishWindowMs,
    log,
  });
  const actors = createShardActors({
    shard: index,
    shardCount: init.shardCount,
    nodeId: init.nodeId,
    link,
    sink: gateway.sink,
    store,
    config: cfg.actors,
    log,
    cluster: routing,
    epochs: routing,
    presence,
    channelFanout: channels,
    maxGroupMembers: cfg.groups.maxMembers,
    groupFanoutWindowMs: cfg.groups.fanoutWindowMs,
    channelSessions: channels,
    ...(cfg.cluster.redisUrl === undefined ? {} : { sendAnswerTimeoutMs: cfg.cluster.sendTimeoutMs }),
    ...(wake === undefined ? {} : { wake }),
    flush: jobs.flush,
    // Media ids in sends: checked and recorded on the node's media index (refused when media is off).
    media: sendMediaRefs(features.mediaIndex),
  });
  pushToSession = (s, f) => void actors.router.push(s, f);
  closeSession = (s, code, reason) => actors.router.close(s, code, reason);
  channels.start(actors.router);
  const attachPeer = (port: MessagePort): void => {
    port.on('message', (bytes: Uint8Array) => actors.onLinkMessage(bytes));
  };
  for (const port of peers) if (port) attachPeer(port);
  gateway.setHandler(actors.handler);

  // A throw that reaches the event loop leaves the shard in an unknown state: close every socket
  // (a worker that ends with open uWS sockets aborts the whole process), then exit so that the
  // supervisor starts a fresh shard. Clients hear 4005 and reconnect.
  let dying = false;
  const die = (err: unknown): void => {
    if (dying) return;
    dying = true;
    log.fatal({ err }, 'shard crashed; closing its sockets and exiting for a restart');
    try {
      // The supervisor stops counting this shard as ready now, not when the thread has exited.
      parent.post({ t: 'dying', index });
      gateway.stopAccepting();
      gateway.closeAll(CLOSE.shardRestarting);
    } finally {
      setTimeout(() => {
        gateway.close();
        process.exit(1);
      }, CLOSE_GRACE_MS);
    }
  };
  process.on('uncaughtException', die);
  process.on('unhandledRejection', die);

  const drain = async (timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    gateway.stopAccepting();
    // Sockets stay open while the actors drain (new sends get shutting_down), so the `sent` answers
    // of commits in flight still reach their senders; only then are sessions closed with 4000.
    // Across shards this is best effort: a commit on another shard that ends after this shard closed
    // its sockets is answered as a duplicate when the client resends (nothing is lost).
    // Take no new conversations; new messages for owned ones are answered cluster_unavailable (the
    // senders retry) while the in-flight commits finish; then the leases go back to the directory
    // so other nodes take over at once.
    routing.beginDrain();
    const timedOut = !(await within(actors.drain(), timeoutMs));
    if (timedOut) log.warn({ timeoutMs }, 'actor drain timed out; closing the store anyway');
    await within(routing.releaseAll(), Math.max(100, deadline - Date.now()));
    gateway.closeAll(CLOSE.draining);
    const closedAtMs = Date.now();
    storeOpen = false;
    // Push jobs read the store: the runner drains them before the store closes.
    await within(jobs.close(), Math.max(100, deadline - Date.now()));
    await within(store.close(), Math.max(100, deadline - Date.now()));
    await within(tombstones.close(), 1000);
    await within(features.close(), 1000);
    await sleep(Math.max(0, closedAtMs + CLOSE_GRACE_MS - Date.now()));
    await within(presence.close(), 1000);
    await within(channels.close(), 1000);
    await within(routing.close(), 1000);
    await within(cluster.close(), 1000);
    gateway.close();
    parent.post({ t: 'drained', timedOut });
  };

  parent.onMessage((msg) => {
    switch (msg.t) {
      case 'peer': {
        // Frames for the new incarnation queue in its port until it listens; sessions whose user
        // actor died with the old one are closed (4005) by the actor layer so that they re-attach.
        peers[msg.peer]?.close();
        peers[msg.peer] = msg.port;
        attachPeer(msg.port);
        actors.shardRestarted(msg.peer);
        return;
      }
      case 'presence-frame':
        onPresenceFrame(msg.node, msg.bytes);
        return;
      case 'verified':
      case 'metrics-text':
      case 'presence-result':
        waiting.get(msg.req)?.(msg);
        waiting.delete(msg.req);
        return;
      case 'collect-metrics':
        void threadMetrics().then((metrics) => parent.post({ t: 'metrics', req: msg.req, metrics }), die);
        return;
      case 'stop-accepting':
        gateway.stopAccepting();
        parent.post({ t: 'stopped-accepting' });
        return;
      case 'drain':
        void drain(msg.timeoutMs).catch(die);
        return;
      case 'test-crash':
        if (init.testHooks) {
          setImmediate(() => {
            throw new Error('test-crash requested');
          });
        }
        return;
      default: {
        const never: never = msg;
        log.error({ msg: never }, 'unknown control message');
      }
    }
  });

  try {
    await routing.start(actors.router);
    await presence.start();
    await features.open();
    await gateway.listen(cfg.gateway.host, init.port);
  } catch (err) {
    gateway.close();
    await features.close();
    await presence.close();
    await channels.close();
    await routing.close();
    await cluster.close();
    await jobs.close();
    await tombstones.close();
    await store.close();
    throw err;
  }
  log.info({ port: init.port }, 'shard accepting');
  parent.post({ t: 'ready', index });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True when `p` settled within `ms` (its rejection counts as settled; it is not rethrown). */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
