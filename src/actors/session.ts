/**
 * The boundary between the gateway (sockets) and the actor layer (state). The gateway owns sockets on
 * its shard thread; actors may live on any shard. Neither side imports the other's implementation:
 * the shard composition (src/shard.ts) wires a SessionHandler (actors) to a ConnectionSink (gateway).
 */

/** Where a live connection is: the shard thread that owns its socket and a per-shard connection id. */
export interface SessionRef {
  /** Node that holds the socket (the local node id in single-node mode). */
  node: string;
  shard: number;
  connId: number;
  user: string;
  device: string;
}

/**
 * Implemented by the gateway on each shard; used by the actor layer (through its router, which
 * forwards to the owning shard when the socket is elsewhere).
 *
 * - `push` writes one server frame to the socket. It returns 'sent' | 'buffered' when the frame was
 *   written or queued under the backpressure limit, 'closed' when the connection no longer exists
 *   (the caller keeps its delivery pending; the device will sync), and 'overflow' when the
 *   backpressure limit was crossed, in which case the gateway has already closed the socket with the
 *   slow-consumer code. Nothing is dropped silently: every outcome is reported.
 * - `close` closes with a documented close code and a short reason. Idempotent.
 * - `batch` (optional) runs `fn` and writes what it pushed when it returns, per connection in one
 *   write, in push order. Pushes inside answer at once as above; one that was 'sent' may still end
 *   in a slow-consumer close when the write finds the buffer over the limit, and then the session
 *   closes (`closed` reaches the handler) like any other closed connection.
 */
export type PushResult = 'sent' | 'buffered' | 'closed' | 'overflow';

export interface ConnectionSink<ServerFrame> {
  push(conn: SessionRef, frame: ServerFrame): PushResult;
  close(conn: SessionRef, code: number, reason: string): void;
  batch?(fn: () => void): void;
}

/**
 * Implemented by the actor layer; called by the gateway on the shard that owns the socket, on that
 * shard's thread, in socket order.
 * - `opened` after authentication, before any frame of the session.
 * - `frame` for each validated client frame (the gateway has already rejected undecodable ones).
 * - `closed` exactly once per opened session, whatever the reason.
 */
export interface SessionHandler<ClientFrame> {
  opened(session: SessionRef): void;
  frame(session: SessionRef, frame: ClientFrame): void;
  closed(session: SessionRef, code: number): void;
  /**
   * Drain: stop taking new sends, finish in-flight group commits and cursor flushes, resolve when
   * nothing acknowledged is pending. The gateway closes sockets with 4000 before or after, as the
   * shard composition decides.
   */
  drain(): Promise<void>;
}
