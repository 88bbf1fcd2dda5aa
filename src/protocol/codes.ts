/**
 * WebSocket close codes and error-frame codes of the client protocol (docs/PROTOCOL.md has the same
 * tables; test/unit/protocol-docs.test.ts keeps them equal). Pure data, no I/O.
 *
 * Close codes split by range so that a client that does not know a code still does the right thing:
 * - 4000-4499: the connection ended for a reason that passes. Reconnect with backoff and jitter.
 * - 4500-4999: reconnecting as-is fails again (bad credentials, replaced, broken client). Do not
 *   reconnect automatically; fix the cause first (new token, upgrade the client, tell the user).
 * Any other code (1000-3999: transport closes such as 1006 abnormal or 1001 going away) is treated
 * as reconnectable.
 */

export const CLOSE = {
  /** The node is draining (SIGTERM, deploy). Reconnect; the load balancer picks another node. */
  draining: 4000,
  /**
   * The client read too slowly (the outgoing buffer passed gateway.maxBackpressureBytes) or left
   * deliveries unacknowledged past actors.deliveryMaxRetries. It resyncs after reconnecting.
   */
  slowConsumer: 4001,
  /** Nothing was received for gateway.idleTimeoutS. */
  idleTimeout: 4002,
  /**
   * The client kept sending over gateway.framesPerSecond: more than framesPerSecond frames were
   * rejected with rate_limited within one second.
   */
  rateLimited: 4003,
  /** An unexpected server error broke the session. */
  internalError: 4004,
  /** The shard thread holding the socket is restarting (crash or deploy). */
  shardRestarting: 4005,
  /** The token is invalid: signature, algorithm, issuer, audience or claims. */
  badToken: 4500,
  /** The token expired (also sent when it expires during a session). Get a new token, then connect. */
  tokenExpired: 4501,
  /** A newer connection of the same (user, device) took over. Reconnecting would fight it. */
  replaced: 4502,
  /** Undecodable frames, or protocol errors repeated past PROTOCOL_ERROR_LIMIT. */
  protocolViolation: 4503,
  /** The `v` query parameter is missing or names a version this server does not speak. */
  unsupportedVersion: 4504,
  /** A frame exceeded gateway.maxFrameBytes. */
  frameTooLarge: 4505,
  /** No token in the Authorization header or the `token` query parameter. */
  missingToken: 4506,
  /**
   * The device was removed (`DELETE /devices/:device`): its live session is closed, and a token
   * issued before the removal is refused at connect. A token issued after it registers the device again.
   */
  deviceRemoved: 4507,
} as const;

export type CloseName = keyof typeof CLOSE;
export type CloseCode = (typeof CLOSE)[CloseName];

/**
 * Close reasons sent with each code. A WebSocket close reason is at most 123 bytes of UTF-8; these
 * are short ASCII so they always fit.
 */
export const CLOSE_REASONS: { readonly [C in CloseCode]: string } = {
  4000: 'server draining',
  4001: 'slow consumer',
  4002: 'idle timeout',
  4003: 'rate limited',
  4004: 'internal error',
  4005: 'shard restarting',
  4500: 'bad token',
  4501: 'token expired',
  4502: 'replaced by a newer connection',
  4503: 'protocol violation',
  4504: 'unsupported protocol version',
  4505: 'frame too large',
  4506: 'missing token',
  4507: 'device removed',
};

/** True when a client should reconnect (with backoff and jitter) after the server closed with `code`. */
export function isReconnectable(code: number): boolean {
  return !(code >= 4500 && code <= 4999);
}

/**
 * `unknown_type` and `invalid_field` errors tolerated per connection within one minute; the next one
 * closes the connection with `protocolViolation`. A well-behaved client never gets near it, and a
 * client one version ahead can still probe for a frame type this server lacks.
 */
export const PROTOCOL_ERROR_LIMIT = 10;
export const PROTOCOL_ERROR_WINDOW_S = 60;

export interface ErrorCodeInfo {
  /** Whether the client may send the same request again (after backoff) and expect it to work. */
  readonly retry: boolean;
  /** One line for the docs and for logs. */
  readonly description: string;
}

/**
 * Codes carried by `error` frames. Stable strings: clients branch on them, never on `msg`.
 * `retry: true` means the same request (same `cmid` for a send: sends are idempotent) may succeed
 * later; `false` means it will fail the same way until something changes.
 */
export const ERROR_CODES = {
  bad_frame: { retry: false, description: 'The frame is not a msgpack map with a string `t`; the connection is closed with 4503.' },
  unknown_type: { retry: false, description: '`t` names no client frame type of this protocol version.' },
  invalid_field: { retry: false, description: 'A field is missing, unknown, of the wrong type or out of range; `field` names it.' },
  frame_too_large: { retry: false, description: 'The frame exceeds gateway.maxFrameBytes; the connection is closed with 4505.' },
  body_too_large: { retry: false, description: "The send's body exceeds gateway.maxBodyBytes." },
  rate_limited: { retry: true, description: 'Over gateway.framesPerSecond; the frame was not processed. Retry after a backoff.' },
  too_many_inflight: { retry: true, description: 'Too many requests await an answer (or a sync is already running); retry after one is answered.' },
  not_member: { retry: false, description: 'The user is not a member of the conversation.' },
  not_found: { retry: false, description: 'The conversation or the addressed user does not exist.' },
  forbidden: {
    retry: false,
    description: "The user's role does not allow this (a subscriber posting to a channel, a member removing someone, anyone removing an owner), or the conversation's kind has no such operation (membership operations on a direct conversation, conv.join on a group, receipts outside groups).",
  },
  group_full: { retry: false, description: 'The group would exceed groups.maxMembers members; nothing changed.' },
  store_unavailable: { retry: true, description: 'Storage did not answer in time; the request may or may not have taken effect. Retry (sends are idempotent).' },
  internal: { retry: true, description: 'Unexpected server error; retry with backoff.' },
  cluster_unavailable: {
    retry: true,
    description: "The conversation is moving between nodes (drain, crash takeover), its owner did not answer within cluster.sendTimeoutMs, or the cluster's Redis could not be reached; the request may or may not have taken effect. Retry after a backoff (sends are idempotent).",
  },
  too_many_watches: { retry: false, description: 'A presence.sub would watch more than cluster.presenceCap users and conversations on this connection; nothing changed.' },
  shutting_down: { retry: true, description: 'The node is draining and refuses new work; it closes with 4000. Retry after reconnecting.' },
  unsupported_version: { retry: false, description: 'The requested protocol version is not supported; sent before close 4504.' },
  unauthorized: { retry: false, description: 'The token is missing, invalid or expired, or its device was removed after it was issued; sent before close 4500, 4501, 4506 or 4507.' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}
