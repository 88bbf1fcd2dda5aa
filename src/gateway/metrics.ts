import { Counter, Gauge, Histogram } from 'prom-client';
import { CLIENT_FRAME_TYPES, SERVER_FRAME_TYPES } from '../protocol/client-frame-schemas.js';
import { CLOSE } from '../protocol/codes.js';
import { FastHistogram } from '../metrics/fast-histogram.js';
import { registry } from '../metrics/registry.js';

/**
 * Gateway metrics of one shard thread (merged across shards by the main thread). Every label comes
 * from a closed set: frame types of the protocol, the documented close codes, connection results.
 */
const registers = [registry];

export type ConnectionResult =
  | 'opened'
  | 'auth_failed'
  | 'token_expired'
  | 'missing_token'
  | 'bad_version'
  | 'over_capacity'
  | 'not_accepting'
  | 'aborted'
  | 'verify_error'
  | 'device_removed';

export const gatewayMetrics = {
  connections: new Gauge({
    name: 'ticks_gateway_connections',
    help: 'Open authenticated WebSocket sessions.',
    registers,
  }),
  connectionsTotal: new Counter({
    name: 'ticks_gateway_connections_total',
    help: 'Connection attempts (WebSocket upgrades) by result.',
    labelNames: ['result'] as const,
    registers,
  }),
  framesIn: new Counter({
    name: 'ticks_gateway_frames_in_total',
    help: "Client frames received, by frame type ('invalid' for frames that failed to decode or validate).",
    labelNames: ['type'] as const,
    registers,
  }),
  framesOut: new Counter({
    name: 'ticks_gateway_frames_out_total',
    help: 'Server frames written to sockets, by frame type.',
    labelNames: ['type'] as const,
    registers,
  }),
  closes: new Counter({
    name: 'ticks_gateway_closes_total',
    help: "Closed sessions by close code (documented 4xxx codes, 1000, 1001, 1005, 1006, else 'other').",
    labelNames: ['code'] as const,
    registers,
  }),
  rejectedFrames: new Counter({
    name: 'ticks_gateway_rejected_frames_total',
    help: 'Client frames refused by a limit, by reason (rate_limited, text, too_large, invalid).',
    labelNames: ['reason'] as const,
    registers,
  }),
  backpressureBytes: new FastHistogram({
    name: 'ticks_gateway_backpressure_bytes',
    help: 'Bytes buffered for a socket after a send that could not be written at once.',
    buckets: [1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304],
    registers,
  }),
  upgradeDuration: new Histogram({
    name: 'ticks_gateway_upgrade_duration_seconds',
    help: 'Time from upgrade request to answer (token verification included).',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  }),
};

const knownCloseCodes = new Set<number>([...Object.values(CLOSE), 1000, 1001, 1005, 1006]);

/** The `code` label of a close: a closed set. */
export function closeLabel(code: number): string {
  return knownCloseCodes.has(code) ? String(code) : 'other';
}

// Pre-create the label sets, so a scrape shows zeros rather than nothing before the first event.
for (const type of [...CLIENT_FRAME_TYPES, 'invalid']) gatewayMetrics.framesIn.inc({ type }, 0);
for (const type of SERVER_FRAME_TYPES) gatewayMetrics.framesOut.inc({ type }, 0);
gatewayMetrics.connectionsTotal.inc({ result: 'opened' }, 0);
