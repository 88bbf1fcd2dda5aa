/**
 * The body of a bench/fanout message (100 bytes): `TKFO`, the run tag (u32 LE at 4), the message
 * index (u32 LE at 8) and its scheduled send time in epoch µs (f64 LE at 16); the rest is zeros.
 * Receivers find it in a raw `msg` frame by searching for the first 8 bytes.
 */
import { performance } from 'node:perf_hooks';

export const MAGIC = Buffer.from('TKFO', 'latin1');

/** Epoch µs from the monotonic clock: comparable across processes on one machine. */
export const epochUs = (): number => (performance.timeOrigin + performance.now()) * 1000;
