import type { ChannelTopics } from '../actors/channel-fanout.js';
import type { ConnectionSink, SessionHandler } from '../actors/session.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../lib/log.js';
import { PROTOCOL_VERSION, type ClientFrame, type HelloFrame, type ServerFrame } from '../protocol/client-frames.js';
import { CLOSE_REASONS, type CloseCode } from '../protocol/codes.js';
import { ConnectionTable, endSocket, type ConnState } from './connections.js';
import { mountHttp } from './http.js';
import { createApp, type Uws, type UwsApp } from './uws.js';
import { socketBehavior } from './socket.js';
import { createTopics } from './topics.js';

/**
 * The gateway of one shard thread: a uWS App on the node's shared port (SO_REUSEPORT spreads
 * connections over shards), the `/ws` upgrade with authentication, the per-connection limits
 * (src/gateway/socket.ts) and the HTTP endpoints (src/gateway/http.ts).
 *
 * Upgrade: `GET /ws?v=1` with the token in `Authorization: Bearer` or the `token` query parameter.
 * A refused connection (bad version, missing, invalid or expired token) still completes the
 * upgrade, so that a browser, which cannot read an HTTP error from a failed WebSocket, sees an
 * `error` frame and a documented close code. Only capacity and drain answer with a plain HTTP 503.
 */
export interface GatewayOptions {
  uws: Uws;
  config: GatewayConfig;
  node: string;
  shard: number;
  /** First connection id of this shard incarnation: ids never repeat across shard restarts. */
  connIdBase: number;
  /** This shard's share of gateway.maxConnections. */
  maxConnections: number;
  maxInflightRequests: number;
  verify: TokenVerifier;
  clockToleranceS: number;
  /** The merged /metrics text of every thread of the node. */
  metricsText: () => Promise<string>;
  /** True while the store is open; /readyz also needs the gateway to be accepting. */
  storeReady: () => boolean;
  /** Mounts further HTTP routes (media, prekeys: src/http-features.ts) on the shard's app. */
  mountRoutes?: (app: UwsApp) => void;
  log: Logger;
  now?: () => number;
}

export interface Gateway {
  readonly sink: ConnectionSink<ServerFrame>;
  /** The uWS topics of this shard's sockets (live channel delivery, src/gateway/topics.ts). */
  readonly topics: ChannelTopics;
  /** The actor layer's handler; set before `listen`. */
  setHandler(handler: SessionHandler<ClientFrame>): void;
  /** Listens on the shared port; rejects when the port cannot be bound. */
  listen(host: string, port: number): Promise<void>;
  /** Closes the listen socket; new upgrades are refused, open sessions stay. Idempotent. */
  stopAccepting(): void;
  readonly accepting: boolean;
  /** Closes every session with `code` (drain: 4000). */
  closeAll(code: CloseCode): void;
  /** Closes every uWS socket (listen, sessions, HTTP). Required before the thread may end. */
  close(): void;
  readonly connections: number;
}

/** How often sessions are checked for an expired token (they close with 4501 within this much). */
const EXPIRY_SWEEP_MS = 5000;

export function createGateway(o: GatewayOptions): Gateway {
  const app: UwsApp = createApp(o.uws);
  const table = new ConnectionTable(o.config.maxBackpressureBytes);
  const now = o.now ?? Date.now;
  let handler: SessionHandler<ClientFrame> | null = null;
  let listenSocket: unknown = null;
  let accepting = false;
  let nextConnId = o.connIdBase;

  const hello = (user: string, device: string): HelloFrame => ({
    t: 'hello',
    v: PROTOCOL_VERSION,
    user,
    device,
    node: o.node,
    limits: {
      maxFrameBytes: o.config.maxFrameBytes,
      maxBodyBytes: o.config.maxBodyBytes,
      framesPerSecond: o.config.framesPerSecond,
      idleTimeoutS: o.config.idleTimeoutS,
      maxInflightRequests: o.maxInflightRequests,
    },
  });

  const behavior = socketBehavior({
    uws: o.uws,
    config: o.config,
    table,
    now,
    log: o.log,
    accepting: () => accepting && handler !== null,
    hasCapacity: () => table.size + behavior.unauthenticated.size < o.maxConnections,
    verify: o.verify,
    clockToleranceS: o.clockToleranceS,
    newSession: (user, device) => ({ node: o.node, shard: o.shard, connId: nextConnId++, user, device }),
    hello,
    handler: () => handler!,
  });
  app.ws<ConnState>('/ws', behavior);
  const idleTimeoutMs = o.config.idleTimeoutS * 1000;
  const expirySweep = setInterval(() => {
    const t = now();
    table.expire(t);
    table.idle(t, idleTimeoutMs);
  }, Math.min(EXPIRY_SWEEP_MS, idleTimeoutMs / 4));
  expirySweep.unref();
  o.mountRoutes?.(app);
  mountHttp(app, { metricsText: o.metricsText, ready: () => accepting && o.storeReady(), log: o.log });

  return {
    sink: table,
    topics: createTopics(app, table),
    setHandler(h) {
      handler = h;
    },
    listen(host, port) {
      return new Promise((resolve, reject) => {
        app.listen(host, port, (socket) => {
          if (!socket) {
            reject(new Error(`shard ${o.shard}: cannot listen on ${host}:${port} (in use by another process, or not an address of this host)`));
            return;
          }
          listenSocket = socket;
          accepting = true;
          resolve();
        });
      });
    },
    stopAccepting() {
      accepting = false;
      if (listenSocket !== null) {
        o.uws.us_listen_socket_close(listenSocket as never);
        listenSocket = null;
      }
    },
    get accepting() {
      return accepting;
    },
    closeAll(code) {
      for (const ws of [...behavior.unauthenticated]) endSocket(ws, code, CLOSE_REASONS[code]);
      table.closeAll(code);
    },
    close() {
      clearInterval(expirySweep);
      accepting = false;
      listenSocket = null;
      app.close();
    },
    get connections() {
      return table.size;
    },
  };
}

