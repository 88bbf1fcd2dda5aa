import type { ChannelTopics } from '../actors/channel-fanout.js';
import type { SessionRef } from '../actors/session.js';
import type { ConnectionTable } from './connections.js';
import { gatewayMetrics } from './metrics.js';
import type { UwsApp } from './uws.js';

/**
 * uWS topics of one shard (channel delivery, src/actors/channel-fanout.ts): `publish` hands one
 * encoded frame to uWS, which writes it to every subscribed socket of the thread, so a channel post
 * is encoded once per thread whatever its number of subscribers. Subscriptions are per socket and
 * end with it. A socket over gateway.maxBackpressureBytes is skipped by uWS's publish; the
 * connection table's sweep closes such a socket with 4001 (src/gateway/connections.ts).
 */
export function createTopics(app: UwsApp, table: ConnectionTable): ChannelTopics {
  return {
    subscribe(session: SessionRef, topic: string): boolean {
      const ws = table.find(session);
      return ws?.subscribe !== undefined && (ws.subscribe(topic) || true);
    },
    unsubscribe(session: SessionRef, topic: string): boolean {
      const ws = table.find(session);
      return ws?.unsubscribe !== undefined && ws.unsubscribe(topic);
    },
    publish(topic: string, bytes: Uint8Array, except?: SessionRef): void {
      const n = app.numSubscribers(topic);
      if (n === 0) return;
      // A socket's own publish skips that socket (uWS): the sending device does not get its post back.
      const ws = except === undefined ? undefined : table.find(except);
      if (ws?.publish !== undefined) {
        ws.publish(topic, bytes, true, false);
        gatewayMetrics.framesOut.inc({ type: 'msg' }, n - 1);
      } else {
        app.publish(topic, bytes, true, false);
        gatewayMetrics.framesOut.inc({ type: 'msg' }, n);
      }
    },
    subscribers(topic: string): number {
      return app.numSubscribers(topic);
    },
  };
}
